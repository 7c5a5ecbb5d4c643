"""Silver's Spark session: a thin Spark Connect client (default) or an in-process local Spark.

Connect (``spark.mode = connect``): the Spark Connect server at ``spark.remote`` owns the JVM — the local stack
starts one, alone or in front of a standalone master and worker — so a run pays for a gRPC channel, not a JVM.
Our code reaches the server's Python workers the way it must reach another host: as a Spark Connect artifact
(``code_artifact``: a zip of ``spark_jobs`` and ``weatherpipe``), never through a shared Python path. The server's
Python needs only third-party packages (pyspark, pyarrow, psycopg).

Local (``spark.mode = local``): a JVM started in this process; no server, no jars fetched.

Invariant: a Connect server that is down or dies mid-job surfaces as one ``ServiceUnavailable`` (transient), after
a bounded retry — never a ten-minute hang or a gRPC traceback.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import io
import os
import sys
import tempfile
import uuid
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from weatherpipe.errors import ServiceUnavailable
from weatherpipe.proc import java_check  # not weatherpipe.stack: a client needs none of its services
from weatherpipe.settings import ROOT, Settings

# the packages an executor imports (data source, COPY writer); nothing else of ours runs there
SHIPPED_PACKAGES = ("spark_jobs", "weatherpipe")
SESSION_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.ansi.enabled": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}


def spark_session(settings: Settings, app_name: str = "weatherpipe", extra_conf: dict[str, str] | None = None) -> Any:
    if settings.spark.mode == "connect":
        return connect_session(settings)
    return local_session(settings, app_name, extra_conf)


def connect_session(settings: Settings) -> Any:
    """A client of the configured Connect server on the shared session of this code version, with the code shipped.

    Every process (each Airflow task, each CLI run) joins the same server-side session (``session_url``): its
    Python workers, which have our artifact on their path, stay warm between hourly runs instead of starting for
    each. Clients never stop that session (``release`` closes only their channel); the server drops it when idle.
    (A new client object each time: the builder's ``getOrCreate`` would hand back a client of another server.)"""
    # imported here: Connect's modules need grpc at import, and a local-mode process never loads them
    from pyspark.sql.connect.client.retries import DefaultPolicy  # noqa: PLC0415
    from pyspark.sql.connect.session import SparkSession  # noqa: PLC0415

    conf = {**SESSION_CONF, "spark.sql.shuffle.partitions": str(settings.spark.shuffle_partitions)}
    # what pyspark's own builder sets for a remote session: DataFrame functions then build Connect plans (for the
    # rest of the process, so a process is either a Connect client or a local Spark, not both)
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
    # pyspark warns when it gives up retrying; the outage is reported once, as our error
    warnings.filterwarnings("ignore", message=r"\[RETRIES_EXCEEDED\]", category=UserWarning)
    artifact = code_artifact()
    spark = SparkSession.builder.remote(session_url(settings.spark.remote, artifact)).create()  # no RPC yet
    # pyspark's default retries UNAVAILABLE for about ten minutes; a stopped server should fail within seconds
    spark.client.set_retry_policies([DefaultPolicy(max_retries=5, initial_backoff=200, max_backoff=4000)])
    try:
        with spark_errors(settings):
            for key, value in conf.items():  # the first RPC tells whether the server is there
                spark.conf.set(key, value)
            ship_code(spark, artifact)
    except BaseException:
        release(spark)  # or its exit hooks would retry against a server that is not there
        raise
    return spark


def session_url(remote: str, artifact: Path) -> str:
    """``remote`` with the shared session of this code version and user (unless the URL names a session)."""
    if "session_id=" in remote:
        return remote
    name = f"weatherpipe:{getpass.getuser()}:{artifact.stem}"
    session = uuid.uuid5(uuid.NAMESPACE_URL, name)
    return f"{remote};session_id={session}" if "/;" in remote else f"{remote.rstrip('/')}/;session_id={session}"


def release(spark: Any) -> None:
    """Close this client's channel now, without retrying. A Connect session is shared (never stopped here: other
    processes may be using it); a local one is left to its process."""
    if not hasattr(spark, "client"):
        return
    with contextlib.suppress(Exception):
        spark.client.set_retry_policies([])
        spark.client.close()


def ship_code(spark: Any, artifact: Path | None = None) -> None:
    """Upload our packages to the session (again: a restarted server forgets what it had; re-adding the same
    content is accepted, and costs one small upload)."""
    spark.addArtifacts(str(artifact or code_artifact()), pyfile=True)


def code_artifact() -> Path:
    """A zip of the shipped packages, named by its content (so the shared session changes with the code)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for package in SHIPPED_PACKAGES:
            for path in sorted((ROOT / package).rglob("*")):
                if path.suffix in {".py", ".sql"} and "__pycache__" not in path.parts:
                    info = zipfile.ZipInfo(path.relative_to(ROOT).as_posix(), date_time=(2020, 1, 1, 0, 0, 0))
                    zf.writestr(info, path.read_bytes())
    data = buf.getvalue()
    folder = Path(tempfile.gettempdir()) / f"weatherpipe-artifacts-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    target = folder / f"weatherpipe_code_{hashlib.sha256(data).hexdigest()[:16]}.zip"
    if not target.exists():
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
    return target


@contextmanager
def spark_errors(settings: Settings) -> Iterator[None]:
    """A Connect server that cannot be reached, or died and forgot our session, is a transient outage."""
    try:
        yield
    except Exception as exc:
        if settings.spark.mode == "connect" and _connect_outage(exc):
            raise ServiceUnavailable(
                f"the Spark Connect server at {settings.spark.remote} is unreachable or restarted mid-job",
                hint="`weatherpipe stack up` starts it; or set WEATHERPIPE_SPARK__MODE=local to run Spark in-process",
            ) from None
        raise


_OUTAGE_MARKERS = ("SESSION_NOT_FOUND", "SESSION_CLOSED", "OPERATION_NOT_FOUND", "failed to connect", "Socket closed")


def _connect_outage(exc: BaseException) -> bool:
    import grpc  # noqa: PLC0415 - only a Connect client has grpc loaded
    from pyspark.errors.exceptions.connect import SparkConnectGrpcException  # noqa: PLC0415

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # the gRPC error may be the cause of a wrapper
        seen.add(id(current))
        if isinstance(current, grpc.RpcError) and current.code() in {  # type: ignore[attr-defined]
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.CANCELLED,
        }:
            return True
        if isinstance(current, SparkConnectGrpcException):
            if current.getGrpcStatusCode() == grpc.StatusCode.UNAVAILABLE:
                return True
            if any(marker in str(current) for marker in _OUTAGE_MARKERS):
                return True
        current = current.__cause__ or current.__context__
    return False


def local_session(settings: Settings, app_name: str = "weatherpipe", extra_conf: dict[str, str] | None = None) -> Any:
    """An in-process Spark: no server needed, a JVM per process."""
    os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)  # inherited from a Connect client that started this process
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession  # noqa: PLC0415 - see connect_session

    java_check()
    spark_conf = settings.spark
    builder = (
        SparkSession.builder.master(spark_conf.master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", spark_conf.driver_memory)
        .config("spark.sql.shuffle.partitions", str(spark_conf.shuffle_partitions))
        .config("spark.driver.bindAddress", spark_conf.bind_address)
        .config("spark.driver.host", spark_conf.driver_host)
        .config("spark.python.worker.reuse", "true")
    )
    for key, value in {**SESSION_CONF, **(extra_conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
