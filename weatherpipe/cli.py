"""``weatherpipe``: the command line. Each stage command calls the same ``run(settings, …)`` the DAG and tests call."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from weatherpipe.errors import PipelineError
from weatherpipe.log import REDACT, bootstrap
from weatherpipe.results import StageResult
from weatherpipe.settings import Settings

app = typer.Typer(
    help="Weather data platform: ingest -> bronze -> silver -> gold.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stack_app = typer.Typer(
    help="Local services without Docker (Kafka protocol, S3, PostgreSQL, Spark Connect).", no_args_is_help=True
)
config_app = typer.Typer(help="Inspect the effective settings.", no_args_is_help=True)
db_app = typer.Typer(help="The warehouse database and its least-privilege roles.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")

log = logging.getLogger("weatherpipe")


def _settings() -> Settings:
    return bootstrap()


def _echo_result(result: StageResult) -> None:
    typer.echo(REDACT(json.dumps(result.to_dict(), default=str, indent=2)))


def _shown(stage: Callable[[], StageResult]) -> StageResult:
    """Run a stage with its progress bars on stderr when a terminal watches."""
    from weatherpipe import progress

    with progress.showing():
        return stage()


DateOpt = Annotated[
    dt.datetime | None,
    typer.Option(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"], help="UTC start of the data interval"),
]
EndOpt = Annotated[
    dt.datetime | None,
    typer.Option(
        formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"],
        help="UTC end of the data interval (exclusive)",
    ),
]


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


# -- config ---------------------------------------------------------------------------------------------------
@config_app.command("show")
def config_show() -> None:
    """Print the effective settings as JSON, every secret redacted."""
    typer.echo(json.dumps(_settings().redacted(), indent=2, default=str))


@db_app.command("setup")
def db_setup() -> None:
    """As the admin login: create the database, the loader/transformer/BI roles, their schemas and grants
    (idempotent; `stack up` runs it too)."""
    from weatherpipe import db

    settings = _settings()
    db.provision(settings)
    pg = settings.postgres
    typer.echo(
        f"warehouse {pg.safe_url()} ready: loader {pg.user} owns {pg.ops_schema} and {pg.staging_schema}; "
        f"transformer {pg.transformer_user} reads {pg.staging_schema} and builds Gold; {pg.bi_role} reads the marts"
    )


# -- stack ----------------------------------------------------------------------------------------------------
def _print_statuses(statuses: list[Any]) -> None:
    for s in statuses:
        pid = f" pid={s.pid}" if s.pid else ""
        detail = f" ({s.detail})" if s.detail else ""
        typer.echo(f"{s.name:<13} {s.state:<9} {s.url}{pid}{detail}")


@stack_app.command("up")
def stack_up(
    spark_cluster: Annotated[
        bool,
        typer.Option(
            "--spark-cluster",
            help="also start a standalone Spark master and worker, and have the Connect server submit there "
            "(the same as WEATHERPIPE_SPARK__CLUSTER=true)",
        ),
    ] = False,
) -> None:
    """Start (or reuse) every local service and wait until each is healthy."""
    from weatherpipe import stack

    settings = _settings()
    if spark_cluster:
        settings = settings.model_copy(update={"spark": settings.spark.model_copy(update={"cluster": True})})
    _print_statuses(stack.up(settings))


@stack_app.command("down")
def stack_down() -> None:
    """Stop the services this stack started (an external PostgreSQL is left running)."""
    from weatherpipe import stack

    _print_statuses(stack.down(_settings()))


@stack_app.command("status")
def stack_status() -> None:
    """Show each service, its URL and whether it answers its health check."""
    from weatherpipe import stack

    statuses = stack.status(_settings())
    _print_statuses(statuses)
    if any(s.state in {"down", "unhealthy"} for s in statuses):
        raise typer.Exit(3)


def _synthetic(settings: Settings, cities: str | None) -> Settings:
    """Settings whose cities file adds ``cities`` (a number) synthetic cities to the configured ones."""
    from ingestion.sources.synthetic import with_synthetic_cities
    from weatherpipe.errors import ConfigError

    try:
        n = int(cities or "3")
    except ValueError:
        raise ConfigError(f"--cities with --source synthetic is a number of cities, not {cities!r}") from None
    return with_synthetic_cities(settings, n)


# -- stages ---------------------------------------------------------------------------------------------------
@app.command()
def ingest(
    source: Annotated[
        str, typer.Option(help="openweather | open-meteo | open-meteo-archive | replay | synthetic")
    ] = "replay",
    cities: Annotated[
        str | None,
        typer.Option(help="comma-separated city ids (default: all configured); with synthetic: how many cities"),
    ] = None,
    start: DateOpt = None,
    end: EndOpt = None,
    run_id: Annotated[str | None, typer.Option(help="run identity (default: a new one)")] = None,
) -> None:
    """Fetch observations and publish them to Kafka."""
    from ingestion import ingest as stage

    settings = _settings()
    ids = [c.strip() for c in cities.split(",")] if cities else None
    if source == "synthetic":
        settings, ids = _synthetic(settings, cities), None
    _echo_result(
        _shown(
            lambda: stage.run(
                settings,
                source=source,
                city_ids=ids,
                start=_utc(start),
                end=_utc(end),
                run_id=run_id,
            )
        )
    )


bronze_app = typer.Typer(help="Move messages from Kafka into raw Parquet on S3, exactly once (and compact it).")
app.add_typer(bronze_app, name="bronze")


@bronze_app.callback(invoke_without_command=True)
def bronze(
    ctx: typer.Context,
    follow: Annotated[
        bool, typer.Option("--follow/--drain", help="stream forever, or drain to the end and exit")
    ] = False,
    run_id: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Move messages from Kafka into raw Parquet on S3, exactly once."""
    if ctx.invoked_subcommand is not None:
        return
    from ingestion import bronze

    _echo_result(_shown(lambda: bronze.run(_settings(), follow=follow, run_id=run_id)))


@bronze_app.command("compact")
def bronze_compact(
    dry_run: Annotated[bool, typer.Option(help="print the dates and objects that would be merged")] = False,
    grace_s: Annotated[
        float | None, typer.Option(help="delete retired objects this long after (default: bronze.compact_grace_s)")
    ] = None,
) -> None:
    """Merge the small objects of each closed event date into one (processed, committed objects only)."""
    from ingestion import bronze

    _echo_result(_shown(lambda: bronze.compact(_settings(), dry_run=dry_run, grace_s=grace_s)))


@app.command()
def silver(
    start: DateOpt = None,
    end: EndOpt = None,
    run_id: Annotated[str | None, typer.Option()] = None,
    reprocess: Annotated[
        bool, typer.Option(help="also re-read every bronze object of --start/--end (by default: only new ones)")
    ] = False,
) -> None:
    """PySpark: the bronze objects not processed yet -> cleaned, validated, deduplicated rows in Postgres staging."""
    from spark_jobs import silver

    _echo_result(
        _shown(lambda: silver.run(_settings(), start=_utc(start), end=_utc(end), run_id=run_id, reprocess=reprocess))
    )


@app.command()
def gold(
    full_refresh: Annotated[bool, typer.Option(help="rebuild incremental models from scratch")] = False,
    full_tests: Annotated[
        bool, typer.Option(help="test every row of the big tables, not only the recent loads (an audit)")
    ] = False,
    run_id: Annotated[str | None, typer.Option()] = None,
) -> None:
    """dbt: snapshots, models and tests of the Gold star schema."""
    from weatherpipe import gold as gold_stage

    _echo_result(
        _shown(lambda: gold_stage.run(_settings(), full_refresh=full_refresh, full_tests=full_tests, run_id=run_id))
    )


@app.command()
def run(
    source: Annotated[
        str,
        typer.Option(
            help="openweather | open-meteo | replay | synthetic (default: openweather when a key is configured, "
            "else replay)"
        ),
    ] = "auto",
    start: DateOpt = None,
    end: EndOpt = None,
    cities: Annotated[
        int | None, typer.Option(help="with --source synthetic: how many cities (about 8,700 observations each)")
    ] = None,
    docs: Annotated[bool, typer.Option(help="build the dbt docs site at the end")] = True,
) -> None:
    """Run the whole pipeline once (ingest -> bronze -> silver -> gold) and print a summary."""
    from weatherpipe import pipeline

    settings = _settings()
    if source == "synthetic":
        settings = _synthetic(settings, None if cities is None else str(cities))
    summary = pipeline.run(settings, source=source, start=_utc(start), end=_utc(end), build_docs=docs)
    typer.echo(pipeline.render_summary(settings, summary))
    if not summary.ok:
        raise typer.Exit(1)


@app.command()
def status(limit: Annotated[int, typer.Option(help="how many runs")] = 5) -> None:
    """The last runs from the audit table, whether they reconcile, and Gold freshness."""
    from weatherpipe import pipeline

    typer.echo(pipeline.render_status(_settings(), limit=limit))


@app.command()
def retention(
    bronze_days: Annotated[int, typer.Option(help="keep this many days of bronze")] = 30,
    dry_run: Annotated[bool, typer.Option(help="print what would be removed, remove nothing")] = False,
    force: Annotated[bool, typer.Option(help="also delete objects Silver has not processed yet")] = False,
) -> None:
    """Delete bronze objects (and manifest rows) that bronze wrote more than N days ago and Silver has processed."""
    from ingestion import bronze

    _echo_result(bronze.retention(_settings(), days=bronze_days, dry_run=dry_run, force=force))


@app.command()
def docs(
    serve: Annotated[bool, typer.Option(help="serve the site after building it")] = True,
    port: Annotated[int, typer.Option()] = 8081,
) -> None:
    """Build the dbt docs site (offline) and serve it on localhost."""
    from weatherpipe import gold as gold_stage

    settings = _settings()
    target = gold_stage.build_docs(settings)
    typer.echo(f"docs built in {target}")
    if serve:
        gold_stage.serve_docs(target, port)


@app.command()
def airflow(
    port: Annotated[int | None, typer.Option(help="the UI and API port (default: airflow.port)")] = None,
) -> None:
    """Start Airflow standalone against the local stack with the project's DAGs (metadata in PostgreSQL)."""
    from weatherpipe import airflow_local

    airflow_local.standalone(_settings(), port=port)


def main() -> None:
    try:
        app()
    except PipelineError as exc:
        typer.echo(f"error: {REDACT(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug or an unforeseen failure: one clear line, the traceback only in debug logs
        log.debug("unexpected error", exc_info=True)
        first = (REDACT(str(exc)).strip().splitlines() or [""])[0]
        typer.echo(
            f"error: unexpected {type(exc).__name__}: {first} (set WEATHERPIPE_LOG_LEVEL=DEBUG for the traceback)",
            err=True,
        )
        sys.exit(70)


if __name__ == "__main__":  # pragma: no cover
    main()
