"""Processes of the local stack: what a service's status is, whether a pid is still the process it was, waiting
for health, stopping a process group, the Java Spark needs. The ground floor of ``stack`` and ``private_pg`` (which
both use it), and of a Spark client, which needs none of the stack's services."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from weatherpipe.errors import ConfigError, ServiceUnavailable


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


def java_check() -> str:
    """The Java version Spark will use, or a ConfigError telling what to install."""
    java = (
        shutil.which("java", path=os.path.join(os.environ["JAVA_HOME"], "bin"))
        if os.environ.get("JAVA_HOME")
        else shutil.which("java")
    )
    hint = "install Java 17 or newer (Debian/Ubuntu: apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
    if java is None:
        raise ConfigError("Java is not installed: Spark needs Java 17+", hint=hint)
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    try:
        version = out.split('"')[1]
        major = int(version.split(".")[0])
    except (IndexError, ValueError):
        raise ConfigError(f"cannot read the Java version from `{java} -version`", hint=hint) from None
    if major < 17:
        raise ConfigError(f"Java {version} is too old: Spark 4 needs Java 17+", hint=hint)
    return version
