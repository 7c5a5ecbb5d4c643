"""The Silver job killed mid-write — its client, or the Spark Connect server under it — leaves the target as it
was; the next run completes."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from spark_jobs import silver
from spark_jobs.pg_writer import LOAD_PREFIX
from tests.support import (
    ROOT,
    blocked_by,
    in_thread,
    ingest_twice_to_bronze,
    private_spark,
    query,
    spark_running,
    wait_for,
)
from weatherpipe import db
from weatherpipe.errors import ServiceUnavailable
from weatherpipe.settings import Settings

pytestmark = [pytest.mark.spark, pytest.mark.slow]
START = dt.datetime(2013, 2, 11, tzinfo=dt.UTC)
END = dt.datetime(2013, 2, 14, tzinfo=dt.UTC)


def test_killed_mid_write_leaves_target_untouched(settings: Settings, spark) -> None:
    """SIGKILL the job (driver and its Python workers) once every task has COPYed its load table and the merge has
    begun. A share lock on the target holds the merge at that point, so the kill lands there on any machine."""
    loaded = ingest_twice_to_bronze(settings, START, END)
    silver.ensure_staging(settings)
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
            [sys.executable, "-m", "spark_jobs.silver"],
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

    result = silver.run(settings, spark=spark)  # sweeps the orphans, then completes
    assert result.rows_out == loaded - 1
    leftovers = query(
        settings,
        "select count(*) from pg_tables where schemaname = %s and starts_with(tablename, %s)",
        (settings.postgres.staging_schema, LOAD_PREFIX),
    )
    assert leftovers == [(0,)]


def load_tables(settings: Settings) -> int:
    return query(
        settings,
        "select count(*) from pg_tables where schemaname = %s and starts_with(tablename, %s)",
        (settings.postgres.staging_schema, LOAD_PREFIX),
    )[0][0]


def test_connect_server_killed_mid_job_is_transient_and_the_next_run_completes(
    settings: Settings, tmp_path: Path
) -> None:
    """SIGKILL a Spark Connect server (a private one) while the job's tasks are writing their load tables — held
    there by an exclusive lock on the quarantine table, whose shape the quarantine load tables copy (the
    observations' load tables are written by then). The run fails as a transient outage
    (one ServiceUnavailable, no gRPC traceback); nothing reached the target or the manifest; once the server is
    back, the next run completes exactly once."""
    own = private_spark(settings, tmp_path / "stack", cluster=False)
    with spark_running(own) as (server,):
        loaded = ingest_twice_to_bronze(settings, START, END)
        silver.ensure_staging(settings)
        quarantine = f'"{settings.postgres.staging_schema}".weather_quarantine'
        with psycopg.connect(settings.postgres.conninfo()) as blocker:
            blocker.execute(f"lock table {quarantine} in access exclusive mode")
            thread, out = in_thread(lambda: silver.run(own))
            wait_for(
                lambda: blocked_by(settings, blocker, f"%{LOAD_PREFIX}%") or not thread.is_alive(),
                what="a task waited to create its load table",
            )
            assert thread.is_alive(), out
            os.killpg(server.pid(), signal.SIGKILL)
            thread.join()
            # the killed tasks' sessions would linger until TCP keepalive noticed; end them as that would
            with db.connect(settings.postgres.admin, autocommit=True) as admin:
                admin.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity where %s = any(pg_blocking_pids(pid))",
                    (blocker.info.backend_pid,),
                )
            blocker.rollback()
        error = out.get("error")
        assert isinstance(error, ServiceUnavailable), repr(error)
        assert "Spark Connect server" in str(error) and error.transient
        assert query(settings, "select count(*) from {s}.weather_observations")[0][0] == 0
        assert query(settings, "select count(*) from {o}.bronze_manifest where silver_processed_at is not null") == [
            (0,)
        ]

        server.up()  # back (a new JVM: the dead one's sessions are gone)
        result = silver.run(own)
        assert result.rows_out == loaded - 1
        assert load_tables(settings) == 0
