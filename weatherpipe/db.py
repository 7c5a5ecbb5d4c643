"""PostgreSQL access shared by the stages: connections, the warehouse bootstrap and the run audit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib import resources

import psycopg
from psycopg import sql

from weatherpipe.errors import ServiceUnavailable
from weatherpipe.settings import PostgresSettings, Settings


@contextmanager
def connect(
    pg: PostgresSettings, database: str | None = None, *, autocommit: bool = False
) -> Iterator[psycopg.Connection]:
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
    except psycopg.OperationalError as exc:  # lost mid-use: server stopped, backend terminated, timeouts
        raise ServiceUnavailable(
            f"PostgreSQL at {pg.safe_url(database)} failed mid-transaction (rolled back): {_first_line(exc)}",
            hint="a later run redoes the work",
        ) from None
    finally:
        conn.close()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def ping(pg: PostgresSettings, database: str | None = None) -> bool:
    try:
        with connect(pg, database) as conn:
            conn.execute("select 1")
        return True
    except ServiceUnavailable:
        return False


_BOOTSTRAPPED: set[tuple[str, int, str, str, str]] = set()


def ensure_warehouse(settings: Settings, *, once: bool = False) -> None:
    """Create the warehouse database, its schemas and the ops tables if missing (idempotent). With ``once``,
    skip the work if this process already did it for the same server, database and schemas."""
    pg = settings.postgres
    key = (pg.host, pg.port, pg.database, pg.ops_schema, pg.staging_schema)
    if once and key in _BOOTSTRAPPED:
        return
    with connect(pg, pg.maintenance_database, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (pg.database,)).fetchone()
        if not exists:
            with suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(pg.database)))
    ddl = resources.files("weatherpipe").joinpath("sql/ops.sql").read_text()
    with connect(pg) as conn:
        conn.execute("select pg_advisory_xact_lock(hashtext('weatherpipe.bootstrap'))")
        conn.execute(sql.SQL(ddl).format(ops=sql.Identifier(pg.ops_schema), staging=sql.Identifier(pg.staging_schema)))


def drop_schemas(pg: PostgresSettings, prefix: str) -> list[str]:
    """Drop every schema whose name starts with ``prefix`` (LIKE wildcards in it are escaped); returns them."""
    pattern = prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"
    with connect(pg) as conn:
        names = [r[0] for r in conn.execute("select nspname from pg_namespace where nspname like %s", (pattern,))]
        for name in names:
            conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(name)))
    return names
