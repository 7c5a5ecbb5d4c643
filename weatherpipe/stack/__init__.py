"""A local stack of real services without Docker: Tansu (Kafka protocol), SeaweedFS (S3), PostgreSQL and Spark.

Spark is a Spark Connect server started from the pyspark wheel (Silver connects to it); with ``spark.cluster`` a
standalone master and a worker (separate JVMs, the same wheel) run beside it and the Connect server submits there.
Every Spark process runs our jobs' Python tasks with an interpreter that sees third-party packages but none of
ours (``executor_python``): the code must travel as Spark Connect artifacts, as it would to another host.

One module per service (``broker``, ``object_store``, ``warehouse``, ``spark``) on a shared ``base``.

Every service binds to loopback on the ports in the settings; pids, logs and data live under the state folder
(``.stack/`` by default, git-ignored). ``up`` is idempotent — a healthy service is reused, whether this stack
started it or not — and ``down`` stops only the processes whose pid files ``up`` wrote.
"""

from __future__ import annotations

from weatherpipe.proc import ServiceStatus, java_check
from weatherpipe.settings import Settings
from weatherpipe.stack.base import Service
from weatherpipe.stack.broker import KafkaService
from weatherpipe.stack.object_store import S3Service
from weatherpipe.stack.spark import (
    SparkConnectService,
    SparkMasterService,
    SparkWorkerService,
    executor_python,
    spark_home,
    spark_services,
)
from weatherpipe.stack.warehouse import PostgresService

__all__ = [
    "KafkaService",
    "PostgresService",
    "S3Service",
    "Service",
    "ServiceStatus",
    "SparkConnectService",
    "SparkMasterService",
    "SparkWorkerService",
    "down",
    "executor_python",
    "java_check",
    "services",
    "spark_home",
    "spark_services",
    "status",
    "up",
]


def services(settings: Settings, *, every: bool = False) -> list[Service]:
    """In start order: the broker keeps its data in the S3 store, so S3 comes up before it (and stops after);
    the Spark master before its worker, both before the Connect server that submits to them."""
    return [
        PostgresService(settings),
        S3Service(settings),
        KafkaService(settings),
        *spark_services(settings, every=every),
    ]


def up(settings: Settings) -> list[ServiceStatus]:
    statuses = [svc.up() for svc in services(settings)]
    if settings.spark.mode == "local":
        statuses.append(ServiceStatus("spark", "local", settings.spark.master, detail=f"java {java_check()}"))
    return statuses


def down(settings: Settings) -> list[ServiceStatus]:
    return [svc.down() for svc in reversed(services(settings, every=True))]


def status(settings: Settings) -> list[ServiceStatus]:
    return [svc.status() for svc in services(settings)]
