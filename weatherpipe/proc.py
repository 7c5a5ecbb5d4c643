"""Processes of the local stack: what a service's status is, whether a pid is still the process it was, waiting
for health, stopping a process group. The ground floor of ``stack`` and ``private_pg`` (which both use it)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from weatherpipe.errors import ServiceUnavailable


@dataclass
class ServiceStatus:
    name: str
    state: str  # "started", "reused", "external", "stopped", "down"
    url: str
    pid: int | None = None
    detail: str = ""


def host_port(address: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    return parts.hostname or "127.0.0.1", parts.port or default_port


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int, marker: str) -> bool:
    """True when ``pid`` runs and its command line contains ``marker`` (guards against pid reuse)."""
    line = cmdline(pid)
    if not line:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass
    return marker in line


def wait_healthy(check: Callable[[], bool], timeout: float, what: str, logfile: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    tail = ""
    if logfile and logfile.exists():
        tail = " | log: " + " ".join(logfile.read_text(errors="replace").strip().splitlines()[-3:])
    raise ServiceUnavailable(f"{what} did not become healthy within {timeout:.0f}s{tail}")


def terminate(pid: int, grace_s: float = 10.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        # reap if it is our child (tests start the stack in-process)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
