"""Spark Connect: one hourly interval (3 bronze objects) run as the Airflow task runs it — a fresh process each
time — in local mode (a JVM started per run) vs. through the stack's Spark Connect server. Median of 3 each,
alternated. (The replay year on a standalone cluster is in ``bench_silver``.)"""

from __future__ import annotations

import datetime as dt
import statistics

from bench.bench_silver import cli_silver
from bench.common import BenchRow, isolated
from ingestion import bronze, ingest


def run() -> list[BenchRow]:
    with isolated("spark") as settings:
        hour = dt.datetime(2013, 1, 4, 5, tzinfo=dt.UTC)
        end = hour + dt.timedelta(hours=1)
        ingest.run(settings, source="replay", city_ids=["nyc-jfk", "nyc-lga", "nyc-ewr"], start=hour, end=end)
        objects = bronze.run(settings).objects
        cli_silver(settings, "connect", hour, end)  # the first run of a code version ships it to the server
        local, connect = [], []
        for _ in range(3):
            local.append(cli_silver(settings, "local", hour, end))
            connect.append(cli_silver(settings, "connect", hour, end))
    ours, reference = statistics.median(connect), statistics.median(local)
    return [
        BenchRow(
            "silver",
            f"one hourly interval ({len(objects)} objects): Connect vs local, per run (s)",
            ours,
            reference,
            reference / ours,
            ">= 5",
            "a fresh process per run, as an Airflow task; median of 3",
        )
    ]
