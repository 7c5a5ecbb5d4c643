"""Airflow imports this module in each of its processes (``weatherpipe airflow`` and the compose image put this folder
on its path). In the scheduler only, it imports what the project's tasks import when they start.

Why: the LocalExecutor's workers are forked from the scheduler, and each task process is forked from a worker, so a
module imported here is already in memory in every task. Each task parses its DAG file (Cosmos, our settings) and runs
its stage (dbt for Gold's build, the Kafka and S3 clients for ingest and bronze). Without this, every task paid for
those imports again: about 0.5 s of each model task, and the 3 s dbt import of the build, on the 2-core machine.

Nothing here starts a thread, a connection or a JVM, so forking after it is safe. Spark Connect's gRPC client is not
imported: gRPC is not fork-safe once used. A module that fails to import is logged and skipped: the task then imports
it itself, as it would without this file.
"""

from __future__ import annotations

import importlib
import logging
import sys

PRELOAD = (
    "airflow.timetables.interval",
    "cosmos",
    "cosmos.operators.watcher",
    "dbt.cli.main",
    "dbt.adapters.postgres",
    "weatherpipe.airflow_tasks",
    "weatherpipe.gold",
    "ingestion.ingest",
    "ingestion.bronze",
    "spark_jobs.silver",
)


def preload(modules: tuple[str, ...] = PRELOAD) -> None:
    """Import ``modules``; one that fails is logged, not raised."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a failed preload must never stop the scheduler
            logging.getLogger(__name__).warning("preload of %s skipped: %s", name, exc)


if sys.argv[1:2] == ["scheduler"]:
    preload()
