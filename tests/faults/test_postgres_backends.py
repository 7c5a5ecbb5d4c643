"""PostgreSQL ends our connections mid-transaction: a transient error, nothing half-written, the next run completes."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import psycopg
import pytest

from ingestion import bronze
from spark_jobs import silver
from spark_jobs.pg_writer import LOAD_PREFIX
from tests.support import NYC, derive, in_thread
from weatherpipe import db, gold
from weatherpipe.errors import ServiceUnavailable
from weatherpipe.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.spark]


START = dt.datetime(2013, 3, 4, tzinfo=dt.UTC)


def _terminate_lock_waiters(pg: Any, blocker: Any, *, timeout_s: float, like: str, settle_s: float = 0.0) -> list[int]:
    """Wait until backends of ours are blocked on a lock held by ``blocker`` with a query matching ``like``, then
    terminate them, and any more that queue up within ``settle_s``. Polled from an autocommit connection: inside a
    transaction pg_stat_activity is a snapshot and never changes."""
    blocker_pid = blocker.info.backend_pid
    killed: list[int] = []
    deadline = time.monotonic() + timeout_s
    with db.connect(pg.admin, autocommit=True) as watch:  # sees and may end every role's backends
        while time.monotonic() < deadline:
            pids = [
                pid
                for (pid,) in watch.execute(
                    "select pid from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'"
                    " and %s = any(pg_blocking_pids(pid)) and query ilike %s",
                    (blocker_pid, like),
                ).fetchall()
            ]
            for pid in pids:
                watch.execute("select pg_terminate_backend(%s)", (pid,))
            if pids and not killed:
                deadline = time.monotonic() + settle_s
            killed += pids
            time.sleep(0.05)
    assert killed, f"no backend blocked on {like!r} within {timeout_s:.0f}s"
    return killed


def test_silver_merge_survives_a_terminated_backend(settings: Settings, spark) -> None:
    """PostgreSQL kills the Silver job's connection in the middle of its merge: a clear transient error, staging
    and the manifest untouched (one transaction), and the next run loads everything."""
    from ingestion import ingest

    ingest.run(settings, source="replay", city_ids=NYC, start=START, end=START + dt.timedelta(days=1))
    drained = bronze.run(settings)
    silver.ensure_staging(settings)
    pg = settings.postgres
    staging = f'"{pg.staging_schema}"."weather_observations"'
    with psycopg.connect(pg.conninfo()) as blocker:  # writes wait for it; reads and the COPYs go on
        blocker.execute(f"lock table {staging} in share mode")
        thread, out = in_thread(lambda: silver.run(settings, spark=spark))
        killed = _terminate_lock_waiters(pg, blocker, timeout_s=180, like=f"insert into {staging}%")
        blocker.rollback()
        thread.join(timeout=120)
    assert killed and isinstance(out.get("error"), ServiceUnavailable), out
    assert out["error"].transient and "failed mid-transaction (rolled back)" in str(out["error"])
    assert "Traceback" not in str(out["error"]) and pg.safe_url() in str(out["error"])
    with db.connect(pg) as conn:
        assert conn.execute(f"select count(*) from {staging}").fetchone()[0] == 0
        assert conn.execute(
            f'select count(*) from "{pg.ops_schema}".bronze_manifest where silver_processed_at is not null'
        ).fetchone() == (0,)
        status = conn.execute(
            f"select status from \"{pg.ops_schema}\".pipeline_runs where stage = 'silver' order by finished_at"
        ).fetchall()
    assert status == [("failed",)]
    again = silver.run(settings, spark=spark)
    assert again.status == "success" and again.rows_out == drained.rows_out
    with db.connect(pg) as conn:
        assert conn.execute(f"select count(*) from {staging}").fetchone()[0] == drained.rows_out
        leftovers = conn.execute(
            "select count(*) from pg_tables where schemaname = %s and starts_with(tablename, %s)",
            (pg.staging_schema, LOAD_PREFIX),
        ).fetchone()[0]
    assert leftovers == 0


def test_dbt_build_survives_terminated_backends(settings: Settings, spark) -> None:
    """PostgreSQL kills dbt's connections during an incremental `dbt build`: a clear transient error, the marts
    as they were (no partial Gold), and the next build completes and equals a full refresh."""
    from ingestion import ingest
    from tests.support import marts_hash

    warehouse = derive(settings, dbt={"schema_prefix": f"r{settings.postgres.staging_schema[-8:]}_"})
    try:
        for day in range(2):
            start = START + dt.timedelta(days=day)
            ingest.run(warehouse, source="replay", city_ids=NYC, start=start, end=start + dt.timedelta(days=1))
            bronze.run(warehouse)
            silver.run(warehouse, spark=spark)
            if day == 0:
                gold.run(warehouse)
                before = marts_hash(warehouse)
        pg = warehouse.postgres
        staging = f'"{pg.staging_schema}".weather_observations'
        with psycopg.connect(pg.conninfo()) as blocker:  # every reader of Silver's table waits
            blocker.execute(f"lock table {staging} in access exclusive mode")
            thread, out = in_thread(lambda: gold.run(warehouse))
            # dbt's threads may queue up behind the same lock one after another: end them all
            killed = _terminate_lock_waiters(pg, blocker, timeout_s=120, like=f"%{pg.staging_schema}%", settle_s=1)
            blocker.rollback()
            thread.join(timeout=300)
        error = out.get("error")
        assert killed and isinstance(error, ServiceUnavailable), out
        assert error.transient and str(error).startswith("dbt build lost its PostgreSQL connection")
        assert marts_hash(warehouse) == before  # nothing downstream of the failed model was built
        after = gold.run(warehouse)
        assert after.status == "success"
        incremental = marts_hash(warehouse)
        assert incremental != before
        gold.run(warehouse, full_refresh=True)
        assert marts_hash(warehouse) == incremental
    finally:
        db.drop_schemas(settings.postgres, warehouse.dbt.schema_prefix)
