"""The Silver job killed mid-write leaves the target as it was; the next run completes."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys

import psycopg
import pytest

from spark_jobs import silver_job
from spark_jobs.pg_writer import LOAD_PREFIX
from tests.support import ROOT, blocked_by, ingest_twice_to_bronze, query, wait_for
from weatherpipe.settings import Settings

pytestmark = [pytest.mark.spark, pytest.mark.slow]
START = dt.datetime(2013, 2, 11, tzinfo=dt.UTC)
END = dt.datetime(2013, 2, 14, tzinfo=dt.UTC)


def test_killed_mid_write_leaves_target_untouched(settings: Settings, spark) -> None:
    """SIGKILL the job (driver and its Python workers) once every task has COPYed its load table and the merge has
    begun. A share lock on the target holds the merge at that point, so the kill lands there on any machine."""
    loaded = ingest_twice_to_bronze(settings, START, END)
    silver_job.ensure_staging(settings)
    env = {
        **os.environ,
        "WEATHERPIPE_KAFKA__TOPIC": settings.kafka.topic,
        "WEATHERPIPE_POSTGRES__STAGING_SCHEMA": settings.postgres.staging_schema,
        "WEATHERPIPE_POSTGRES__OPS_SCHEMA": settings.postgres.ops_schema,
        "WEATHERPIPE_LOG_FORMAT": "json",
    }
    target = f'"{settings.postgres.staging_schema}".weather_observations'
    with psycopg.connect(settings.postgres.conninfo()) as blocker:
        blocker.execute(f"lock table {target} in share mode")  # reads and the COPYs go on; the merge waits
        proc = subprocess.Popen(
            [sys.executable, "-m", "spark_jobs.silver_job"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            merging = f"%{settings.postgres.staging_schema}%"
            wait_for(lambda: blocked_by(settings, blocker, merging) or proc.poll() is not None, what="the merge began")
            assert proc.poll() is None, f"the job ended ({proc.returncode}) before its merge could be held"
            orphans = query(
                settings,
                "select count(*) from pg_tables where schemaname = %s and starts_with(tablename, %s)",
                (settings.postgres.staging_schema, LOAD_PREFIX),
            )[0][0]
            assert orphans > 0  # the kill lands after the load tables were written
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        blocker.rollback()
    assert query(settings, "select count(*) from {s}.weather_observations")[0][0] == 0
    assert query(settings, "select count(*) from {o}.bronze_manifest where silver_processed_at is not null") == [(0,)]

    result = silver_job.run(settings, spark=spark)  # sweeps the orphans, then completes
    assert result.rows_out == loaded - 1
    leftovers = query(
        settings,
        "select count(*) from pg_tables where schemaname = %s and starts_with(tablename, %s)",
        (settings.postgres.staging_schema, LOAD_PREFIX),
    )
    assert leftovers == [(0,)]
