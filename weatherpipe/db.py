"""PostgreSQL access shared by the stages: connections, the warehouse bootstrap and the run audit."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib import resources

import psycopg
from psycopg import sql
from pydantic import SecretStr

from weatherpipe.errors import ConfigError, ServiceUnavailable
from weatherpipe.settings import PostgresSettings, Settings

# libpq's words for a login the server refused: a configuration problem, not an outage
_LOGIN_REFUSED = ("does not exist", "authentication failed", "no pg_hba.conf entry", "permission denied")


def open_connection(
    pg: PostgresSettings, database: str | None = None, *, autocommit: bool = False
) -> psycopg.Connection:
    """A connection the caller closes, or a ``ServiceUnavailable``/``ConfigError`` naming the server (never the
    password). Prefer ``connect``; this is for a connection kept across many short transactions."""
    try:
        return psycopg.connect(pg.conninfo(database), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        if any(sign in first for sign in _LOGIN_REFUSED):
            raise ConfigError(
                f"PostgreSQL at {pg.safe_url(database)} refused the login {pg.user!r}: {first}",
                hint="run `weatherpipe db setup` with the admin login, or check WEATHERPIPE_POSTGRES__* settings",
            ) from None
        raise ServiceUnavailable(
            f"PostgreSQL is not reachable at {pg.safe_url(database)}: {first}",
            hint="start it (`weatherpipe stack up`) or set WEATHERPIPE_POSTGRES__HOST/PORT",
        ) from None


def lost(pg: PostgresSettings, exc: psycopg.OperationalError, database: str | None = None) -> ServiceUnavailable:
    """The error for a connection lost mid-use: server stopped, backend terminated, timeouts."""
    return ServiceUnavailable(
        f"PostgreSQL at {pg.safe_url(database)} failed mid-transaction (rolled back): {_first_line(exc)}",
        hint="a later run redoes the work",
    )


@contextmanager
def connect(
    pg: PostgresSettings, database: str | None = None, *, autocommit: bool = False
) -> Iterator[psycopg.Connection]:
    """A connection for one block (committed at its end), or a ``ServiceUnavailable`` naming the server."""
    conn = open_connection(pg, database, autocommit=autocommit)
    try:
        with conn:
            yield conn
    except psycopg.OperationalError as exc:
        raise lost(pg, exc, database) from None
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


_READY: set[tuple[str, int, str, str, str]] = set()
_ROLE_ATTRS = "login nosuperuser nocreatedb nocreaterole noinherit noreplication nobypassrls"


def provision(settings: Settings) -> None:
    """As the admin login, make the warehouse ready for least-privilege runs (idempotent, safe to repeat):
    the database; the loader, transformer and BI roles as plain logins (passwords stored as SCRAM verifiers);
    the ops and staging schemas owned by the loader, with their tables; read access to staging for the transformer;
    CREATE on the database for the transformer, whose dbt builds create and own the Gold schemas."""
    pg = settings.postgres
    admin = pg.admin
    with connect(admin, pg.maintenance_database, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (pg.database,)).fetchone()
        if not exists:
            with suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(pg.database)))
    loader, transformer = sql.Identifier(pg.user), sql.Identifier(pg.transformer_user)
    database = sql.Identifier(pg.database)
    with connect(admin) as conn:
        conn.execute("select pg_advisory_xact_lock(hashtext('weatherpipe.provision'))")
        for role, password in (
            (pg.user, pg.password),
            (pg.transformer_user, pg.transformer_password),
            (pg.bi_role, pg.bi_password),
        ):
            if role != admin.user:
                ensure_login(conn, role, password)
        conn.execute(
            sql.SQL("grant connect on database {} to {}, {}, {}").format(
                database, loader, transformer, sql.Identifier(pg.bi_role)
            )
        )
        conn.execute(sql.SQL("grant create on database {} to {}").format(database, transformer))
        for schema in (pg.ops_schema, pg.staging_schema):
            _own_schema(conn, schema, pg.user)
        for schema in settings.dbt.built_schemas():  # an install from before the roles: hand Gold to dbt's login
            _own_schema(conn, schema, pg.transformer_user, create=False)
    ensure_warehouse(settings)
    with connect(pg) as conn:  # as the loader, owner of staging: dbt may read it, nothing more
        staging = sql.Identifier(pg.staging_schema)
        conn.execute(sql.SQL("grant usage on schema {} to {}").format(staging, transformer))
        conn.execute(sql.SQL("grant select on all tables in schema {} to {}").format(staging, transformer))
        conn.execute(
            sql.SQL("alter default privileges in schema {} grant select on tables to {}").format(staging, transformer)
        )


def ensure_login(conn: psycopg.Connection, role: str, password: SecretStr | None) -> None:
    ident = sql.Identifier(role)
    row = conn.execute(
        "select rolcanlogin and not (rolsuper or rolcreatedb or rolcreaterole or rolinherit or rolreplication"
        " or rolbypassrls) from pg_roles where rolname = %s",
        (role,),
    ).fetchone()
    if row is None:
        conn.execute(sql.SQL("create role {} " + _ROLE_ATTRS).format(ident))
    elif not row[0]:  # altering these attributes needs a superuser: only when a role has more than it should
        conn.execute(sql.SQL("alter role {} " + _ROLE_ATTRS).format(ident))
    if password is not None and password.get_secret_value():
        verifier = scram_verifier(password.get_secret_value())
        conn.execute(sql.SQL("alter role {} password {}").format(ident, sql.Literal(verifier)))


def _own_schema(conn: psycopg.Connection, schema: str, owner: str, *, create: bool = True) -> None:
    """Create ``schema`` owned by ``owner``, or hand an existing one (and its tables and views) over to it."""
    name, role = sql.Identifier(schema), sql.Identifier(owner)
    if create:
        conn.execute(sql.SQL("create schema if not exists {} authorization {}").format(name, role))
    elif not conn.execute("select 1 from pg_namespace where nspname = %s", (schema,)).fetchone():
        return
    conn.execute(sql.SQL("alter schema {} owner to {}").format(name, role))
    foreign = conn.execute(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = %s and c.relkind in ('r', 'p', 'v', 'm') and pg_get_userbyid(c.relowner) <> %s",
        (schema, owner),
    ).fetchall()
    for (table,) in foreign:
        conn.execute(sql.SQL("alter table {} owner to {}").format(sql.Identifier(schema, table), role))


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 7677), computed client-side so that the
    password itself never travels in SQL text, where statement logs could keep it."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored_key).decode()}:{b64(server_key).decode()}"


def ensure_warehouse(settings: Settings, *, once: bool = False) -> None:
    """As the loader, create the ops tables if missing (idempotent). With ``once``, skip the work if this process
    already did it for the same server, database and schemas. The schemas themselves come from ``provision``."""
    pg = settings.postgres
    key = (pg.host, pg.port, pg.database, pg.ops_schema, pg.staging_schema)
    if once and key in _READY:
        return
    apply_ddl(pg, "weatherpipe", "sql/ops.sql", ops=pg.ops_schema)
    _READY.add(key)


def apply_ddl(pg: PostgresSettings, package: str, name: str, **schemas: str) -> None:
    """Run an idempotent DDL file as the loader; a schema it cannot use means the warehouse is not provisioned."""
    ddl = resources.files(package).joinpath(name).read_text()
    identifiers = {k: sql.Identifier(v) for k, v in schemas.items()}
    with connect(pg) as conn:
        conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"weatherpipe.ddl.{name}",))
        try:
            conn.execute(sql.SQL(ddl).format(**identifiers))
        except (psycopg.errors.InvalidSchemaName, psycopg.errors.InsufficientPrivilege) as exc:
            raise ConfigError(
                f"the warehouse {pg.safe_url()} is not set up for {pg.user}: {_first_line(exc)}",
                hint="run `weatherpipe db setup` (or `weatherpipe stack up`) once with the admin login",
            ) from None


def drop_schemas(pg: PostgresSettings, prefix: str) -> list[str]:
    """As the admin, drop every schema whose name starts with ``prefix`` (LIKE wildcards escaped); returns them."""
    pattern = prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"
    with connect(pg.admin) as conn:
        names = [r[0] for r in conn.execute("select nspname from pg_namespace where nspname like %s", (pattern,))]
        for name in names:
            conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(name)))
    return names
