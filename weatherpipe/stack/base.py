"""What every service of the stack shares: a process found again by its pid file, started once, health-checked;
and the Java check Spark needs.
"""

from __future__ import annotations

import logging
import os
import subprocess

from weatherpipe.errors import ServiceUnavailable, TerminalError
from weatherpipe.proc import ServiceStatus, alive, port_open, terminate, wait_healthy
from weatherpipe.settings import Settings

log = logging.getLogger(__name__)


class Service:
    """A process this stack may start, identified by a pid file under the state folder."""

    name = "service"
    marker = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.state_dir
        self.pidfile = self.dir / "pids" / f"{self.name}.pid"
        self.logfile = self.dir / "logs" / f"{self.name}.log"

    # -- to implement -------------------------------------------------------------------------------------
    url: str = ""

    def healthy(self) -> bool:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def after_start(self) -> None:
        """Provisioning once healthy (buckets, databases)."""

    def port(self) -> tuple[str, int]:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------------------
    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if alive(pid, self.marker) else None

    def up(self) -> ServiceStatus:
        pid = self.pid()
        if self.healthy():
            self.after_start()
            return ServiceStatus(self.name, "reused" if pid else "external", self.url, pid)
        host, port = self.port()
        if pid is None and port_open(host, port):
            raise ServiceUnavailable(
                f"{self.name}: port {host}:{port} is taken by a process that is not a healthy {self.name}",
                hint=f"stop it or choose another port in the settings ({self.name} section)",
            )
        if pid is None:
            pid = self._spawn()
        wait_healthy(self.healthy, self.settings.stack.startup_timeout_s, f"{self.name} at {self.url}", self.logfile)
        self.after_start()
        return ServiceStatus(self.name, "started", self.url, pid)

    def _spawn(self) -> int:
        try:
            cmd = self.command()  # may write config files under the state folder (the S3 store's identities)
            for sub in ("pids", "logs"):
                (self.dir / sub).mkdir(parents=True, exist_ok=True)
            out = self.logfile.open("ab")
        except OSError as exc:
            raise self._state_folder_error(exc) from None
        with out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.dir,
                env=self.env(),
            )
        try:
            self.pidfile.write_text(str(proc.pid))
        except OSError as exc:  # a service nobody could find again must not outlive this call
            terminate(proc.pid)
            proc.wait()
            raise self._state_folder_error(exc) from None
        log.info("started %s", self.name, extra={"pid": proc.pid, "url": self.url})
        return proc.pid

    def _state_folder_error(self, exc: OSError) -> TerminalError:
        """Full disk, read-only mount, no permission: one line naming the file and the cause."""
        return TerminalError(
            f"cannot write the stack's state folder ({exc.filename or self.dir}): {exc.strerror or exc}",
            hint="free space there or point WEATHERPIPE_STACK__STATE_DIR at a writable folder",
        )

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def down(self) -> ServiceStatus:
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return ServiceStatus(self.name, "down", self.url, detail="not started by this stack")
        terminate(pid)
        self.pidfile.unlink(missing_ok=True)
        return ServiceStatus(self.name, "stopped", self.url, pid)

    def status(self) -> ServiceStatus:
        pid = self.pid()
        if self.healthy():
            return ServiceStatus(self.name, "running" if pid else "external", self.url, pid)
        return ServiceStatus(self.name, "unhealthy" if pid else "down", self.url, pid)
