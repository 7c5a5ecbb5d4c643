"""A private PostgreSQL server for machines without one, from the binaries in the PyPI package ``pgserver``.

It listens on the configured host and port (so the settings do not change), keeps its data under the stack's
state folder, and trusts local connections. PostgreSQL refuses to run as root: when we are root the server runs
as a dedicated system user, ``weatherpipe-pg``, created on first use.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from weatherpipe import db
from weatherpipe.errors import ConfigError, ServiceUnavailable
from weatherpipe.proc import ServiceStatus, alive, wait_healthy
from weatherpipe.settings import Settings

SYSTEM_USER = "weatherpipe-pg"


def _bin_dir() -> Path:
    """The server binaries inside the installed ``pgserver`` wheel (found without importing the package)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "no PostgreSQL server answers and the package `pgserver` (a private server) is not installed",
            hint="pip install pgserver, or point WEATHERPIPE_POSTGRES__HOST/PORT at a running server",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class PrivatePostgres:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pgdata = settings.state_dir / "pg-data"
        self.logfile = settings.state_dir / "logs" / "postgres.log"
        self.pidfile = settings.state_dir / "pids" / "postgres.pid"

    def _as_owner(self, cmd: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return cmd
        return ["runuser", "-u", SYSTEM_USER, "--", *cmd]

    def _prepare_root(self, bindir: Path) -> None:
        """Create the system user and let it reach the data folder and the binaries."""
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
                check=True,
                capture_output=True,
            )
        entry = pwd.getpwnam(SYSTEM_USER)
        for folder in (self.pgdata, self.logfile.parent):
            for parent in reversed(folder.parents):  # traverse only; the folders themselves are the user's own
                if parent.exists():
                    parent.chmod(parent.stat().st_mode | 0o011)
        for target in (self.pgdata, self.logfile.parent):
            os.chown(target, entry.pw_uid, entry.pw_gid)
        for parent in [*reversed(bindir.parents)]:
            parent.chmod(parent.stat().st_mode | 0o011)

    def running(self) -> bool:
        """The postmaster named by its pid file is alive (a killed one may linger as a zombie: not running)."""
        postmaster = self.pgdata / "postmaster.pid"
        try:
            pid = int(postmaster.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return False
        return alive(pid, "postgres")

    def _wait_until_reaped(self) -> None:
        """After a crash (SIGKILL) the postmaster's pid lingers as a zombie until it is reaped, and PostgreSQL
        refuses to start while its lock file names a pid that exists: wait for it to go."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        wait_healthy(
            lambda: not Path(f"/proc/{pid}").exists(), self.settings.stack.startup_timeout_s, "the killed server"
        )

    def up(self) -> object:
        pg = self.settings.postgres
        bindir = _bin_dir()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._prepare_root(bindir)
        if not (self.pgdata / "PG_VERSION").exists():
            subprocess.run(
                self._as_owner(
                    [
                        str(bindir / "initdb"),
                        "-D",
                        str(self.pgdata),
                        "-U",
                        pg.admin_user,
                        "--auth=trust",
                        "--encoding=UTF8",
                        "--no-sync",
                    ]
                ),
                check=True,
                capture_output=True,
            )
        if not self.running():
            self._wait_until_reaped()
            options = f"-h {pg.host} -p {pg.port} -k {self.pgdata}"
            proc = subprocess.run(
                self._as_owner(
                    [
                        str(bindir / "pg_ctl"),
                        "-D",
                        str(self.pgdata),
                        "-l",
                        str(self.logfile),
                        "-o",
                        options,
                        "-w",
                        "-t",
                        str(int(self.settings.stack.startup_timeout_s)),
                        "start",
                    ]
                ),
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise ServiceUnavailable(f"the private PostgreSQL did not start: {proc.stderr.strip()[-300:]}")
        pid = int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        self.pidfile.write_text(str(pid))
        db.provision(self.settings)
        return ServiceStatus("postgres", "started", pg.safe_url(), pid, detail="private server (pgserver)")

    def down(self) -> object:
        bindir = _bin_dir()
        pid = None
        if self.running():
            pid = int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
            subprocess.run(
                self._as_owner([str(bindir / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop"]),
                capture_output=True,
                check=False,
            )
        self.pidfile.unlink(missing_ok=True)
        return ServiceStatus("postgres", "stopped", self.settings.postgres.safe_url(), pid)

    def destroy(self) -> None:
        self.down()
        shutil.rmtree(self.pgdata, ignore_errors=True)
