"""PostgreSQL access shared by the stages: connections, the warehouse bootstrap and the run audit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

import psycopg
from psycopg import sql

from weatherpipe.errors import ServiceUnavailable
from weatherpipe.results import StageResult
from weatherpipe.settings import PostgresSettings, Settings


@contextmanager
def connect(pg: PostgresSettings, database: str | None = None, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """A connection, or a ``ServiceUnavailable`` naming the server (never the password)."""
    try:
        conn = psycopg.connect(pg.conninfo(database), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ServiceUnavailable(
            f"PostgreSQL is not reachable at {pg.safe_url(database)}: {first}",
            hint="start it (`weatherpipe stack up`) or set WEATHERPIPE_POSTGRES__HOST/PORT",
        ) from None
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def ping(pg: PostgresSettings, database: str | None = None) -> bool:
    try:
        with connect(pg, database) as conn:
            conn.execute("select 1")
        return True
    except ServiceUnavailable:
        return False


def ensure_warehouse(settings: Settings) -> None:
    """Create the warehouse database, its schemas and the ops tables if missing (idempotent)."""
    pg = settings.postgres
    with connect(pg, pg.maintenance_database, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (pg.database,)).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(pg.database)))
            except psycopg.errors.DuplicateDatabase:
                pass
    ddl = resources.files("weatherpipe").joinpath("sql/ops.sql").read_text()
    with connect(pg) as conn:
        conn.execute("select pg_advisory_xact_lock(hashtext('weatherpipe.bootstrap'))")
        conn.execute(
            sql.SQL(ddl).format(ops=sql.Identifier(pg.ops_schema), staging=sql.Identifier(pg.staging_schema))
        )


def record_result(settings: Settings, result: StageResult) -> None:
    """Upsert the stage result into ``ops.pipeline_runs`` (a rerun of the same run/stage replaces it)."""
    pg = settings.postgres
    query = sql.SQL(
        """insert into {t} (run_id, stage, status, rows_in, rows_out, rows_rejected, object_count, offsets,
               interval_start, interval_end, started_at, finished_at, duration_s, details, error)
           values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           on conflict (run_id, stage) do update set
               status = excluded.status, rows_in = excluded.rows_in, rows_out = excluded.rows_out,
               rows_rejected = excluded.rows_rejected, object_count = excluded.object_count,
               offsets = excluded.offsets, interval_start = excluded.interval_start,
               interval_end = excluded.interval_end, started_at = excluded.started_at,
               finished_at = excluded.finished_at, duration_s = excluded.duration_s,
               details = excluded.details, error = excluded.error, recorded_at = now()"""
    ).format(t=sql.Identifier(pg.ops_schema, "pipeline_runs"))
    with connect(pg) as conn:
        conn.execute(
            query,
            (
                result.run_id, result.stage, result.status, result.rows_in, result.rows_out,
                result.rows_rejected, len(result.objects), json.dumps(result.offsets, default=str),
                result.interval_start, result.interval_end, result.started_at, result.finished_at,
                result.duration_s, json.dumps(result.details, default=str), result.error,
            ),
        )
