"""Spark from the pyspark wheel: a Spark Connect server, and optionally a standalone master and worker."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

from weatherpipe.errors import ServiceUnavailable
from weatherpipe.proc import ServiceStatus, cmdline, java_check, port_open
from weatherpipe.settings import Settings
from weatherpipe.stack.base import Service

log = logging.getLogger(__name__)


def spark_home() -> Path:
    import pyspark  # noqa: PLC0415 - pyspark (~0.3 s) only when a Spark service starts

    return Path(pyspark.__file__).resolve().parent


def executor_python(settings: Settings) -> Path:
    """The Python of the Spark processes the stack starts: this environment's third-party packages (pyspark,
    pyarrow, psycopg) and nothing of ours — a venv whose only path entry is this one's site-packages, so the
    editable install of the project (a ``.pth`` there) is not processed."""
    if settings.spark.executor_python:
        return settings.spark.executor_python
    env = settings.state_dir / "spark" / "executor-python"
    python = env / "bin" / "python"
    pth = env / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" / "deps.pth"
    deps = sysconfig.get_paths()["purelib"] + "\n"
    if python.exists() and pth.exists() and pth.read_text() == deps:
        return python
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", "--clear", str(env)], check=True, capture_output=True)
    pth.write_text(deps)
    return python


def _get_json(url: str, timeout: float = 2.0) -> object:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - a loopback http:// URL
            return json.load(resp)
    except (OSError, ValueError):
        return None


class _SparkProcess(Service):
    """A JVM from the pyspark wheel: its own environment (no PYTHONPATH of ours), logs under the state folder."""

    def env(self) -> dict[str, str]:
        spark = self.settings.spark
        inherited = {"PYTHONPATH", "SPARK_CONF_DIR", "SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED"}
        env = {k: v for k, v in os.environ.items() if k not in inherited}
        env.update(
            SPARK_HOME=str(spark_home()),
            PYSPARK_PYTHON=str(executor_python(self.settings)),
            SPARK_LOCAL_IP=spark.bind_address,
            SPARK_LOG_DIR=str(self.dir / "logs"),
        )
        env.pop("PYSPARK_DRIVER_PYTHON", None)
        return env

    def spark_bin(self, name: str) -> str:
        java_check()
        return str(spark_home() / "bin" / name)


class SparkMasterService(_SparkProcess):
    """A standalone Spark master (``spark.cluster``); its state as JSON at ``/json/`` on its UI port."""

    name = "spark-master"
    marker = "deploy.master.Master"

    def port(self) -> tuple[str, int]:
        return self.settings.spark.bind_address, self.settings.spark.master_port

    @property
    def url(self) -> str:  # type: ignore[override]
        return self.settings.spark.master_url

    @property
    def json_url(self) -> str:
        return f"http://{self.settings.spark.bind_address}:{self.settings.spark.master_ui_port}/json/"

    def state(self) -> dict[str, object]:
        state = _get_json(self.json_url)
        return state if isinstance(state, dict) else {}

    def command(self) -> list[str]:
        spark = self.settings.spark
        return [
            self.spark_bin("spark-class"),
            "org.apache.spark.deploy.master.Master",
            "--host",
            spark.bind_address,
            "--port",
            str(spark.master_port),
            "--webui-port",
            str(spark.master_ui_port),
        ]

    def healthy(self) -> bool:
        return self.state().get("status") == "ALIVE"


class SparkWorkerService(_SparkProcess):
    """A standalone worker registered with the master; executors run in their own JVMs under its work dir."""

    name = "spark-worker"
    marker = "deploy.worker.Worker"

    def port(self) -> tuple[str, int]:
        return self.settings.spark.bind_address, self.settings.spark.master_ui_port + 1

    @property
    def url(self) -> str:  # type: ignore[override]
        host, port = self.port()
        return f"http://{host}:{port}"

    def command(self) -> list[str]:
        spark = self.settings.spark
        work = self.dir / "spark" / "worker"
        work.mkdir(parents=True, exist_ok=True)
        return [
            self.spark_bin("spark-class"),
            "org.apache.spark.deploy.worker.Worker",
            "--host",
            spark.bind_address,
            "--cores",
            str(spark.worker_cores),
            "--memory",
            spark.worker_memory,
            "--work-dir",
            str(work),
            "--webui-port",
            str(self.port()[1]),
            spark.master_url,
        ]

    def healthy(self) -> bool:
        workers = SparkMasterService(self.settings).state().get("workers") or []
        mine = f":{self.port()[1]}"
        return any(
            isinstance(w, dict) and w.get("state") == "ALIVE" and str(w.get("webuiaddress", "")).endswith(mine)
            for w in workers
        )


class SparkConnectService(_SparkProcess):
    """The Spark Connect server Silver talks to, submitting to ``local[N]`` or to the stack's standalone master."""

    name = "spark-connect"
    marker = "SparkConnectServer"

    def port(self) -> tuple[str, int]:
        return self.settings.spark.remote_host_port

    @property
    def url(self) -> str:  # type: ignore[override]
        return self.settings.spark.remote

    def command(self) -> list[str]:
        spark = self.settings.spark
        host, port = self.port()
        conf = {
            "spark.connect.grpc.binding.address": host,
            "spark.connect.grpc.binding.port": str(port),
            "spark.driver.host": spark.driver_host,
            "spark.driver.bindAddress": spark.bind_address,
            "spark.ui.port": str(spark.connect_ui_port),
            "spark.ui.showConsoleProgress": "false",
            "spark.pyspark.python": str(executor_python(self.settings)),
            "spark.python.worker.reuse": "true",
            "spark.sql.session.timeZone": "UTC",
            "spark.local.dir": str(self.dir / "spark" / "tmp"),
            "spark.log.level": "WARN",
        }
        if spark.cluster:
            conf["spark.cores.max"] = str(spark.worker_cores)
        (self.dir / "spark" / "tmp").mkdir(parents=True, exist_ok=True)
        return [
            self.spark_bin("spark-submit"),
            "--class",
            "org.apache.spark.sql.connect.service.SparkConnectServer",
            "--name",
            "weatherpipe-connect",
            "--master",
            spark.master_url,
            "--driver-memory",
            spark.driver_memory,
            *[arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")],
        ]

    def healthy(self) -> bool:
        return port_open(*self.port())

    def up(self) -> ServiceStatus:
        host, _ = self.port()
        if host not in {"127.0.0.1", "localhost", "::1"} and not self.healthy():
            raise ServiceUnavailable(
                f"the Spark Connect server at {self.url} is not reachable (the stack starts one on loopback only)",
                hint="start it, fix WEATHERPIPE_SPARK__REMOTE, or set WEATHERPIPE_SPARK__MODE=local",
            )
        pid = self.pid()
        if pid is not None and f"--master {self.settings.spark.master_url} " not in cmdline(pid):
            log.info("restarting %s to submit to %s", self.name, self.settings.spark.master_url)
            self.down()
        status = super().up()
        status.detail = f"master {self.settings.spark.master_url}"
        return status

    def app_id(self, wait_s: float = 60.0) -> str | None:
        """The Spark application id of the server's driver (from its REST API), or ``None`` after ``wait_s``. The
        REST API's first answer waits for its web framework to start, which takes seconds on a small machine: the
        id is asked for again until it comes or the time is up."""
        url = f"http://{self.settings.spark.bind_address}:{self.settings.spark.connect_ui_port}/api/v1/applications"
        deadline = time.monotonic() + wait_s
        while True:
            apps = _get_json(url, timeout=10.0)
            if isinstance(apps, list) and apps:
                return str(apps[0]["id"])
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.5)


def spark_services(settings: Settings, *, every: bool = False) -> list[Service]:
    """The Spark processes the settings ask for (``every``: all the stack may have started, to stop them)."""
    spark = settings.spark
    found: list[Service] = []
    if every or spark.cluster:
        found += [SparkMasterService(settings), SparkWorkerService(settings)]
    if every or spark.mode == "connect":
        found.append(SparkConnectService(settings))
    return found
