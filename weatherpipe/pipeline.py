"""The whole pipeline without Airflow: the same stage functions in order, a progress display, a summary that
reconciles the counts, and ``status`` over the audit table."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from weatherpipe import db, progress
from weatherpipe.results import Check, Metrics, StageResult, new_run_id, utcnow
from weatherpipe.settings import Settings

log = logging.getLogger(__name__)
STAGES = ("ingest", "bronze", "silver", "gold")


@dataclass
class PipelineSummary:
    run_id: str
    source: str
    start: dt.datetime | None
    end: dt.datetime | None
    results: list[StageResult] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    error: str | None = None
    docs: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.ok for c in self.checks)


def resolve_source(settings: Settings, source: str) -> str:
    if source != "auto":
        return source
    if settings.pipeline.source != "auto":
        return settings.pipeline.source
    key = settings.api.openweather_api_key
    return "openweather" if key is not None and key.get_secret_value() else "replay"


def replay_window(
    settings: Settings, start: dt.datetime | None, end: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    """The replay has one year of data: an interval in another year maps onto the same hours of that year."""
    if start is None or end is None:
        return settings.pipeline.replay_default_start, settings.pipeline.replay_default_end
    year = settings.pipeline.replay_year
    if start.year == year:
        return start, end
    try:
        shifted = start.replace(year=year)
    except ValueError:  # 29 February
        shifted = start.replace(year=year, day=28)
    return shifted, shifted + (end - start)


def metrics_classes() -> dict[str, type[Metrics]]:
    """Each stage's metrics class, to read audit rows back typed."""
    from ingestion.bronze.stage import BronzeMetrics
    from ingestion.ingest import IngestMetrics
    from spark_jobs.silver import SilverMetrics
    from weatherpipe.gold import GoldMetrics

    return {"ingest": IngestMetrics, "bronze": BronzeMetrics, "silver": SilverMetrics, "gold": GoldMetrics}


def reconcile(results: dict[str, StageResult]) -> list[Check]:
    """The counts of one run must add up: each stage's own checks (its ``Metrics``), then across stages, then
    whether each stage succeeded."""
    ordered = [results[stage] for stage in STAGES if stage in results]
    checks = [c for r in ordered for c in r.metrics.checks(r.counts)]
    ingest, bronze = results.get("ingest"), results.get("bronze")
    if ingest and bronze:
        checks.append(
            Check(
                "bronze read >= published this run",
                bronze.rows_in >= ingest.rows_out,
                f"{bronze.rows_in} read, {ingest.rows_out} published",
            )
        )
    checks += [Check(f"{r.stage} succeeded", False, r.error or "failed") for r in ordered if r.status == "failed"]
    return checks


def run(
    settings: Settings,
    *,
    source: str = "auto",
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    build_docs: bool = True,
    run_id: str | None = None,
) -> PipelineSummary:
    from ingestion import bronze, ingest
    from spark_jobs import silver
    from weatherpipe import gold
    from weatherpipe.errors import PipelineError
    from weatherpipe.resources import Resources

    name = resolve_source(settings, source)
    if name in ("replay", "synthetic"):
        start, end = replay_window(settings, start, end)
    summary = PipelineSummary(run_id or new_run_id("run"), name, start, end)
    res = Resources(settings)  # one object store and one warehouse for the four stages
    run_id = summary.run_id

    def ingest_step() -> StageResult:
        weather = ingest.make_source(settings, name, res)
        return ingest.run(
            settings, source=name, start=start, end=end, run_id=run_id, weather_source=weather, resources=res
        )

    steps = [
        ("ingest", ingest_step),
        ("bronze", lambda: bronze.run(settings, run_id=run_id, resources=res)),
        ("silver", lambda: silver.run(settings, start=start, end=end, run_id=run_id, resources=res)),
        ("gold", lambda: gold.run(settings, run_id=run_id, resources=res)),
    ]
    with progress.showing():  # each stage's bars (rows, objects, ETA) where a terminal watches
        for i, (stage_name, step) in enumerate(steps, 1):
            try:
                result = step()
            except PipelineError as exc:
                summary.error = f"{stage_name}: {exc}"
                progress.echo(f"[{i}/{len(steps)}] {stage_name} [red]failed[/red]: {exc}")
                break
            summary.results.append(result)
            progress.echo(
                f"[{i}/{len(steps)}] {stage_name} {result.status}: {result.rows_in} in, {result.rows_out} out, "
                f"{result.rows_rejected} rejected ({result.duration_s:.1f}s)"
            )
        summary.checks = reconcile({r.stage: r for r in summary.results})
        if build_docs and summary.error is None:
            progress.echo("building dbt docs …")
            summary.docs = str(gold.build_docs(settings) / "index.html")
    return summary


def render_summary(settings: Settings, summary: PipelineSummary) -> str:
    lines = [
        f"run {summary.run_id} — source {summary.source}"
        + (
            f", {summary.start.astimezone(dt.UTC):%Y-%m-%d %H:%M} → {summary.end.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"
            if summary.start and summary.end
            else ""
        ),
        "",
        f"{'stage':<8} {'status':<8} {'in':>8} {'out':>8} {'rejected':>9} {'seconds':>8}",
    ]
    for r in summary.results:
        lines.append(
            f"{r.stage:<8} {r.status:<8} {r.rows_in:>8} {r.rows_out:>8} {r.rows_rejected:>9} {r.duration_s:>8.1f}"
        )
    silver = next((r for r in summary.results if r.stage == "silver"), None)
    rule_counts = getattr(silver.metrics, "rule_counts", None) if silver else None
    if silver and rule_counts:
        broken = {k: v for k, v in rule_counts.items() if v}
        actions = getattr(silver.metrics, "rule_actions", {})
        if broken:
            lines += ["", "expectations broken (rows):"]
            lines += [f"  {k:<24} {v:>6}  ({actions.get(k, '?')})" for k, v in sorted(broken.items())]
    lines += ["", "reconciliation:"]
    lines += [f"  {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in summary.checks]
    if summary.error:
        lines += ["", f"error: {summary.error}"]
    marts = settings.dbt.schema("marts")
    lines += [
        "",
        "where to look:",
        f"  warehouse  {settings.postgres.safe_url()}",
        f"  marts      {marts}.gold_weather_aggregates, {marts}.fct_weather_observations, {marts}.dim_city, ...",
        f"  silver     {settings.postgres.staging_schema}.weather_observations, "
        f"{settings.postgres.staging_schema}.weather_quarantine",
        f"  bronze     s3://{settings.s3.bucket}/{settings.s3.bronze_prefix}/ (dead letters: "
        f"{settings.s3.deadletter_prefix}/)",
    ]
    if summary.docs:
        lines.append(f"  docs       {summary.docs}  (serve: weatherpipe docs)")
    lines.append(f"  result     {'RECONCILED' if summary.ok else 'NOT RECONCILED'}")
    return "\n".join(lines)


_AUDIT_COLUMNS = (
    "run_id",
    "stage",
    "status",
    "rows_in",
    "rows_out",
    "rows_rejected",
    "details",
    "error",
    "started_at",
    "finished_at",
)


def _results(settings: Settings, where: sql.Composable, params: tuple[Any, ...]) -> dict[str, dict[str, StageResult]]:
    """Audit rows read back as typed stage results, grouped by run."""
    pg = settings.postgres
    query = sql.SQL("select {cols} from {t} where stage = any(%s) and {where} order by started_at").format(
        cols=sql.SQL(", ").join(map(sql.Identifier, _AUDIT_COLUMNS)),
        t=sql.Identifier(pg.ops_schema, "pipeline_runs"),
        where=where,
    )
    classes = metrics_classes()
    runs: dict[str, dict[str, StageResult]] = {}
    db.ensure_warehouse(settings, once=True)
    with db.connect(pg) as conn:
        for row in conn.execute(query, (list(STAGES), *params)):
            rec = dict(zip(_AUDIT_COLUMNS, row, strict=True))
            result: StageResult = StageResult(
                rec["stage"],
                rec["run_id"],
                status=rec["status"],
                rows_in=rec["rows_in"],
                rows_out=rec["rows_out"],
                rows_rejected=rec["rows_rejected"],
                started_at=rec["started_at"],
                finished_at=rec["finished_at"] or rec["started_at"],
                metrics=classes[rec["stage"]].from_dict(rec["details"]),
                error=rec["error"],
            )
            runs.setdefault(rec["run_id"], {})[rec["stage"]] = result
    return runs


def run_results(settings: Settings, run_id: str) -> dict[str, StageResult]:
    """The stage results of one run."""
    return _results(settings, sql.SQL("run_id = %s"), (run_id,)).get(run_id, {})


def recent_runs(settings: Settings, limit: int) -> list[tuple[str, dict[str, StageResult]]]:
    where = sql.SQL(
        "run_id in (select run_id from {t} where stage = any(%s) group by run_id order by max(started_at) desc "
        "limit %s)"
    ).format(t=sql.Identifier(settings.postgres.ops_schema, "pipeline_runs"))
    runs = _results(settings, where, (list(STAGES), limit))
    return sorted(runs.items(), key=lambda kv: max(r.started_at for r in kv[1].values()), reverse=True)


def gold_freshness(settings: Settings) -> str:
    marts = settings.dbt.schema("marts")
    try:
        with db.connect(settings.postgres.transformer) as conn:
            row = conn.execute(
                sql.SQL("select max(loaded_at), count(*) from {}").format(
                    sql.Identifier(marts, "fct_weather_observations")
                )
            ).fetchone()
    except Exception:
        return "no Gold tables yet (run `weatherpipe run`)"
    if not row or row[0] is None:
        return "Gold is empty"
    age = utcnow() - row[0]
    return (
        f"newest Silver load in Gold: {row[0]:%Y-%m-%d %H:%M} UTC ({age.total_seconds() / 3600:.1f} h ago), "
        f"{row[1]} hourly facts"
    )


def render_status(settings: Settings, limit: int = 5) -> str:
    runs = recent_runs(settings, limit)
    if not runs:
        return "no runs recorded yet"
    lines = []
    for run_id, stages in runs:
        checks = reconcile(stages)
        ok = all(c.ok for c in checks) and all(s.status != "failed" for s in stages.values())
        lines.append(f"{run_id}  {'reconciled' if ok else 'NOT reconciled'}")
        for stage in STAGES:
            if stage in stages:
                s = stages[stage]
                lines.append(
                    f"  {stage:<7} {s.status:<8} in={s.rows_in:<7} out={s.rows_out:<7} "
                    f"rejected={s.rows_rejected:<5} {s.duration_s:.1f}s"
                )
        lines += [f"    {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in checks if not c.ok]
    lines += ["", gold_freshness(settings)]
    return "\n".join(lines)
