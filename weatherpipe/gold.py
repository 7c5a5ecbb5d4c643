"""Gold stage: dbt builds the star schema (snapshots, models, tests) from Silver's staging tables.

dbt runs in-process (``dbtRunner``) with its connection taken from the one settings object through environment
variables that ``dbt_project/profiles.yml`` reads — the password never appears on a command line.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import logging
import os
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from weatherpipe import progress
from weatherpipe.audit import stage_scope
from weatherpipe.errors import ConfigError, PipelineError, ServiceUnavailable, StageFailed
from weatherpipe.resources import Resources, Warehouse
from weatherpipe.results import Metrics, StageResult, new_run_id
from weatherpipe.settings import Settings, load_settings

log = logging.getLogger(__name__)
_ENV_LOCK = threading.Lock()
# what a model's error says when its connection, not its SQL, failed (server stopped, backend terminated)
_CONNECTION_LOST = (
    "terminating connection",
    "server closed the connection",
    "connection to server",
    "could not connect",
    "connection already closed",
)


def project_dir(settings: Settings) -> Path:
    return settings.path(settings.paths.dbt_project_dir)


PROFILE, TARGET = "weatherpipe", "local"  # dbt_project/profiles.yml


def dbt_env(settings: Settings) -> dict[str, str]:
    pg = settings.postgres.transformer
    env = {
        "WEATHERPIPE_DBT_HOST": pg.host,
        "WEATHERPIPE_DBT_PORT": str(pg.port),
        "WEATHERPIPE_DBT_USER": pg.user,
        "WEATHERPIPE_DBT_DATABASE": pg.database,
        "WEATHERPIPE_DBT_SCHEMA": settings.dbt.schema(settings.dbt.target_schema),
        "WEATHERPIPE_DBT_PASSWORD": pg.password.get_secret_value() if pg.password else "",
        "DBT_PROFILES_DIR": str(project_dir(settings)),
        "DBT_PROJECT_DIR": str(project_dir(settings)),
        "DO_NOT_TRACK": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        # libpq sets every dbt session's TimeZone from PGTZ: date_trunc('hour', …), timestamptz casts and the
        # snapshot's clock must not depend on the server's or the role's default zone
        "PGTZ": "UTC",
    }
    return env


def dbt_vars(settings: Settings) -> dict[str, Any]:
    return {
        "staging_schema": settings.postgres.staging_schema,
        "schema_prefix": settings.dbt.schema_prefix,
        "bi_role": settings.postgres.bi_role,
        "lookback_hours": settings.dbt.lookback_hours,
    }


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def invoke(settings: Settings, *args: str, extra_vars: dict[str, Any] | None = None) -> Any:
    """Run one dbt command in-process; returns dbt's ``dbtRunnerResult``."""
    from dbt.cli.main import dbtRunner  # noqa: PLC0415 - dbt takes seconds to import: only when dbt runs

    project = project_dir(settings)
    if not (project / "dbt_project.yml").exists():
        raise ConfigError(f"no dbt project at {project}", hint="set WEATHERPIPE_PATHS__DBT_PROJECT_DIR")
    cli = [
        *args,
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(project),
        "--vars",
        json.dumps(dbt_vars(settings) | (extra_vars or {})),
        "--log-path",
        str(settings.state_dir / "logs" / "dbt"),
        # named as Cosmos names them: dbt keys its partial parse on the command line's profile and target, so the
        # parse `weatherpipe airflow` runs is the one the DAG's `dbt build` starts from (a full parse costs seconds)
        "--profile",
        PROFILE,
        "--target",
        TARGET,
    ]
    if settings.dbt.target_path:
        cli += ["--target-path", str(settings.path(settings.dbt.target_path))]
    if args and args[0] in {"build", "run", "snapshot", "test"}:
        cli += ["--threads", str(settings.dbt.threads)]
    callbacks = [_NodeMeter(args[0])] if args and args[0] in {"build", "run", "test"} else []
    with _environment(dbt_env(settings)):
        return dbtRunner(callbacks=callbacks).invoke(cli)


class _NodeMeter:
    """dbt's events onto a progress meter: its start lines say how many nodes there are, each finished node is one."""

    def __init__(self, command: str) -> None:
        self.meter = progress.meter("gold", f"dbt {command} nodes")
        self.total = 0

    def __call__(self, event: Any) -> None:
        name = event.info.name
        if name == "LogStartLine" and getattr(event.data, "total", 0) > self.total:
            self.total = int(event.data.total)
            self.meter.update(total=self.total)
        elif name == "NodeFinished":
            self.meter.advance(1)


@dataclass
class GoldMetrics(Metrics):
    """``rows_in`` staging rows, ``rows_out`` hourly facts; ``nodes`` counts dbt's nodes by kind and status
    (``model:success``, ``test:pass``, ...)."""

    nodes: dict[str, int] = field(default_factory=dict)
    full_refresh: bool = False
    full_tests: bool = False


def run(
    settings: Settings,
    *,
    full_refresh: bool = False,
    full_tests: bool = False,
    run_id: str | None = None,
    select: str | None = None,
    resources: Resources | None = None,
) -> StageResult[GoldMetrics]:
    """``dbt build``. Tests on the history-sized tables check the recent loads only (macros/test_window.sql);
    ``full_tests`` (or ``full_refresh``) has them check every row."""
    run_id = run_id or new_run_id("gold")
    result = StageResult("gold", run_id, metrics=GoldMetrics(full_refresh=full_refresh, full_tests=full_tests))
    warehouse = Resources.of(settings, resources).warehouse.transformer
    with stage_scope(settings, result):
        args = ["build"]
        if full_refresh:
            args.append("--full-refresh")
        if select:
            args += ["--select", select]
        outcome = invoke(settings, *args, extra_vars={"full_tests": True} if full_tests else None)
        statuses: Counter[str] = Counter()
        failures: list[str] = []
        for node in getattr(outcome.result, "results", None) or []:
            kind = node.node.resource_type
            status = str(node.status)
            statuses[f"{kind}:{status}"] += 1
            if status in {"error", "fail"}:
                failures.append(f"{node.node.name} ({status}: {(node.message or '').strip()[:200]})")
        result.metrics.nodes = dict(statuses)
        result.rows_in = _count(warehouse, settings.postgres.staging_schema, "weather_observations")
        result.rows_out = _count(warehouse, settings.dbt.schema("marts"), "fct_weather_observations")
        result.objects = [k for k in statuses if k.startswith("model:")]
        if failures or not outcome.success:
            detail = "; ".join(failures[:5]) or str(outcome.exception or "dbt failed")
            if any(sign in detail.lower() for sign in _CONNECTION_LOST):
                raise ServiceUnavailable(
                    f"dbt build lost its PostgreSQL connection: {detail}",
                    hint="each model is built in its own transaction: a later run completes the build",
                )
            raise StageFailed(f"dbt build failed: {detail}")
    return result


def _count(warehouse: Warehouse, schema: str, table: str) -> int:
    """Row count of a table, 0 if it does not exist yet (informative only: the build outcome is what matters)."""
    try:
        with warehouse.connect() as conn:
            row = conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(schema, table))).fetchone()
    except (psycopg.Error, PipelineError):
        return 0
    return int(row[0]) if row else 0


def parse(settings: Settings) -> Path:
    """``dbt parse``: the manifest Cosmos renders the DAG from (``LoadMode.DBT_MANIFEST``)."""
    outcome = invoke(settings, "parse")
    if not outcome.success:
        raise StageFailed(f"dbt parse failed: {outcome.exception}")
    return project_dir(settings) / "target" / "manifest.json"


def build_docs(settings: Settings) -> Path:
    """``dbt docs generate``: a static site in ``dbt_project/target`` (no internet needed to build or view)."""
    outcome = invoke(settings, "docs", "generate")
    if not outcome.success:
        raise StageFailed(f"dbt docs generate failed: {outcome.exception}")
    return project_dir(settings) / "target"


def serve_docs(target: Path, port: int) -> None:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(target))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        print(f"dbt docs on http://127.0.0.1:{port}/ (Ctrl-C to stop)")
        server.serve_forever()


def main() -> None:  # pragma: no cover - `python -m weatherpipe.gold parse|docs`
    settings = load_settings()
    if sys.argv[1:] == ["parse"]:
        print(parse(settings))
    elif sys.argv[1:] == ["docs"]:
        print(build_docs(settings))
    else:
        sys.exit("usage: python -m weatherpipe.gold parse|docs")


if __name__ == "__main__":  # pragma: no cover
    main()
