"""Silver stage (PySpark): bronze -> cleaned, validated, deduplicated rows in Postgres staging, exactly once.

Input: the bronze objects Silver has not processed yet (from ``ops.bronze_manifest``) — so a rerun of a window
reads only what that rerun added, never what was processed before. ``reprocess`` (``--reprocess``) re-reads, on
purpose, every object of the ``start``/``end`` interval as well. Re-reading is a no-op for the target: rows merge on
the natural key (city_id, observed_at) and only a later ingestion with other values replaces a row.

Run it with ``weatherpipe silver [--start … --end … [--reprocess]]`` or ``python -m spark_jobs.silver``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql
from pyspark.sql import functions as F

from spark_jobs import schemas
from spark_jobs.bronze_source import BronzeDataSource
from spark_jobs.expectations import evaluate, load_expectations, rule_counts, split
from spark_jobs.pg_writer import LoadTable, copy_partitions, sweep_orphans
from spark_jobs.session import release, spark_errors, spark_session
from spark_jobs.transforms import attach_cities, deduplicate, to_canonical
from weatherpipe import db, progress
from weatherpipe.audit import stage_scope
from weatherpipe.cities import load_cities
from weatherpipe.errors import ExpectationFailed
from weatherpipe.log import bootstrap
from weatherpipe.resources import Resources
from weatherpipe.results import Check, Counts, Metrics, StageResult, new_run_id
from weatherpipe.settings import Settings

log = logging.getLogger(__name__)

OBSERVATION_COLUMNS = [
    "city_id",
    "observed_at",
    *(f.name for f in schemas.MEASURES),
    *(f.name for f in schemas.LINEAGE),
    "silver_run_id",
]
QUARANTINE_COLUMNS = [
    "event_id",
    "kafka_partition",
    "kafka_offset",
    "city_id",
    "observed_at",
    "source",
    "failed_rules",
    "payload",
    "ingested_at",
    "bronze_object",
    "silver_run_id",
]


@dataclass
class SilverMetrics(Metrics):
    """``rows_in`` bronze rows read, ``rows_out`` rows upserted into staging, ``rows_rejected`` quarantined.
    Every row read is accounted for: upserted (inserted or updated), stale (staging already holds the same or a
    later ingestion), a duplicate within the batch, or quarantined."""

    rule_counts: dict[str, int] = field(default_factory=dict)
    rule_actions: dict[str, str] = field(default_factory=dict)
    quarantined: int = 0
    duplicates_in_batch: int = 0
    stale_vs_staging: int = 0
    inserted: int = 0
    updated: int = 0

    def checks(self, counts: Counts) -> list[Check]:
        parts = [self.inserted, self.updated, self.stale_vs_staging, self.duplicates_in_batch]
        return [
            Check(
                "silver: read = upserted + stale + duplicates + quarantined",
                counts.rows_in == sum(parts) + counts.rows_rejected,
                f"{counts.rows_in} = {' + '.join(map(str, parts))} + {counts.rows_rejected}",
            )
        ]


@dataclass(frozen=True)
class BronzeObject:
    key: str
    etag: str
    size: int = 0


def ensure_staging(settings: Settings) -> None:
    db.apply_ddl(settings.postgres, "spark_jobs", "sql/staging.sql", schema=settings.postgres.staging_schema)


@contextmanager
def job_lock(res: Resources) -> Iterator[None]:
    """One Silver merge at a time per staging schema (a session advisory lock, released on exit or death)."""
    with res.warehouse.exclusive(
        f"weatherpipe.silver.{res.settings.postgres.staging_schema}",
        "another Silver job is running on this staging schema; retry when it ends",
    ):
        yield


def pending_objects(
    res: Resources, start: dt.datetime | None, end: dt.datetime | None, *, reprocess: bool = False
) -> list[BronzeObject]:
    """The unprocessed objects, and with ``reprocess`` every object holding an hour of [start, end) too. Never a
    retired object (its rows are in the compacted object that replaced it)."""
    pg = res.settings.postgres
    query = sql.SQL(
        "select object_key, coalesce(etag, ''), coalesce(bytes, 0) from {} where topic = %s and retired_at is null and "
        "(silver_processed_at is null or (observed_hour < %s "
        "and coalesce(last_observed_hour, observed_hour) + interval '1 hour' > %s)) order by object_key"
    ).format(sql.Identifier(pg.ops_schema, "bronze_manifest"))
    never = dt.datetime.max.replace(tzinfo=dt.UTC)  # an empty window: unprocessed objects only
    lo, hi = (start or never, end or never) if reprocess else (never, never)
    with res.warehouse.connect() as conn:
        return [BronzeObject(k, e, s) for k, e, s in conn.execute(query, (res.settings.kafka.topic, hi, lo))]


def read_bronze(spark: Any, settings: Settings, objects: dict[str, int]) -> Any:
    """The bronze objects (key -> bytes, which size the read's splits) as one DataFrame in the bronze schema."""
    spark.dataSource.register(BronzeDataSource)
    s3 = settings.s3
    return (
        spark.read.format("weatherpipe_bronze")
        .option("objects", json.dumps(objects))
        .option("partitions", str(settings.spark.read_partitions))
        .option("endpoint", s3.host_port)
        .option("scheme", s3.scheme)
        .option("region", s3.region)
        .option("bucket", s3.bucket)
        .option("access_key", s3.access_key)
        .option("secret_key", s3.secret_key.get_secret_value())  # redacted by spark.redaction.regex in plans
        .load()
    )


def cities_frame(spark: Any, settings: Settings) -> Any:
    rows = [(c.id, c.name, c.country, c.lat, c.lon, c.timezone) for c in load_cities(settings)]
    return spark.createDataFrame(rows, schemas.CITIES)


def transform(spark: Any, settings: Settings, bronze: Any, rules: list[Any]) -> Any:
    """The whole pure pipeline: canonical schema, city attributes, expectations evaluated."""
    return evaluate(attach_cities(to_canonical(bronze), cities_frame(spark, settings)), rules)


def run(
    settings: Settings,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    run_id: str | None = None,
    spark: Any | None = None,
    reprocess: bool = False,
    resources: Resources | None = None,
) -> StageResult[SilverMetrics]:
    """Merge the pending bronze objects into staging, on ``spark`` (an entry point's session) or on one made
    and released here."""
    run_id = run_id or new_run_id("silver")
    result = StageResult("silver", run_id, interval_start=start, interval_end=end, metrics=SilverMetrics())
    res = Resources.of(settings, resources)
    with stage_scope(settings, result):
        ensure_staging(settings)
        with job_lock(res):
            with res.warehouse.connect() as conn:
                swept = sweep_orphans(conn, settings.postgres.staging_schema)
            if swept:
                log.warning("dropped orphaned load tables", extra={"tables": swept})
            objects = pending_objects(res, start, end, reprocess=reprocess)
            result.objects = [o.key for o in objects]
            if objects:
                _process(res, result, objects, spark)
    return result


def _process(
    res: Resources, result: StageResult[SilverMetrics], objects: list[BronzeObject], spark: Any | None
) -> None:
    """Spark's part of the run, on the given session or on one made (and released) here."""
    settings = res.settings
    with spark_errors(settings):
        own = spark is None
        spark = spark or spark_session(settings)
        try:
            _process_with(spark, res, result, objects)
        finally:
            if own and settings.spark.mode == "connect":
                release(spark)


def _is_connect(spark: Any) -> bool:
    from pyspark.sql.connect.session import SparkSession as ConnectSession  # noqa: PLC0415 - grpc: Connect only

    return isinstance(spark, ConnectSession)


class _SparkTasks:
    """Spark Connect's progress reports (tasks done of tasks known, every stage of every operation) on a meter."""

    def __init__(self, spark: Any) -> None:
        self.spark: Any = None
        self.stages: dict[tuple[str | None, int], tuple[int, int]] = {}
        if not _is_connect(spark):
            return  # a classic (local mode) session reports no progress to its client
        self.spark = spark
        self.meter = progress.meter("silver", "Spark tasks")
        spark.registerProgressHandler(self)

    def __call__(self, stages: Any, inflight_tasks: int, operation_id: str | None, done: bool) -> None:
        for stage in stages or []:
            self.stages[(operation_id, stage.stage_id)] = (stage.num_completed_tasks, stage.num_tasks)
        done_tasks = sum(d for d, _ in self.stages.values())
        self.meter.update(completed=done_tasks, total=sum(t for _, t in self.stages.values()))

    def close(self) -> None:
        if self.spark is not None:
            self.spark.removeProgressHandler(self)


def _process_with(spark: Any, res: Resources, result: StageResult[SilverMetrics], objects: list[BronzeObject]) -> None:
    settings = res.settings
    steps = progress.meter("silver", f"steps ({len(objects)} bronze objects)", total=4)
    tasks = _SparkTasks(spark)
    rules = load_expectations(settings.path(settings.paths.expectations_file))
    bronze = read_bronze(spark, settings, {o.key: o.size for o in objects}).persist()  # read S3 once, not per parser
    evaluated = transform(spark, settings, bronze, rules).persist()
    try:
        counts = rule_counts(evaluated, rules)
        result.rows_in = evaluated.count()
        steps.advance()
        fatal = {r.name: counts[r.name] for r in rules if r.action == "fail" and counts[r.name]}
        if fatal:
            raise ExpectationFailed(f"expectation(s) with action 'fail' broken: {fatal}; nothing was written")
        clean, quarantined = split(evaluated)
        run_col = F.lit(result.run_id).alias("silver_run_id")
        unique = deduplicate(clean).select(*[c for c in OBSERVATION_COLUMNS if c != "silver_run_id"], run_col)
        q = quarantined.select(
            *[c for c in QUARANTINE_COLUMNS if c not in {"failed_rules", "silver_run_id"}],
            F.concat(F.lit("{"), F.array_join("failed_rules", ","), F.lit("}")).alias("failed_rules"),
            run_col,
        ).select(*QUARANTINE_COLUMNS)
        schema = settings.postgres.staging_schema
        log.info("writing load tables", extra={"rows_in": result.rows_in})
        obs_tables = copy_partitions(unique, settings.postgres, schema, "weather_observations", "obs", result.run_id)
        steps.advance()
        q_tables = copy_partitions(q, settings.postgres, schema, "weather_quarantine", "q", result.run_id)
        steps.advance()
        log.info("merging load tables", extra={"tables": len(obs_tables) + len(q_tables)})
        merged = merge(res, result.run_id, obs_tables, q_tables, objects)
        steps.advance()
    finally:
        tasks.close()
        evaluated.unpersist()
        bronze.unpersist()
    n_quarantined = sum(t.rows for t in q_tables)
    n_unique = sum(t.rows for t in obs_tables)
    result.rows_rejected = n_quarantined
    result.rows_out = merged["inserted"] + merged["updated"]
    result.metrics = SilverMetrics(
        rule_counts={r.name: counts[r.name] for r in rules},
        rule_actions={r.name: r.action for r in rules},
        quarantined=n_quarantined,
        duplicates_in_batch=result.rows_in - n_quarantined - n_unique,
        stale_vs_staging=n_unique - merged["inserted"] - merged["updated"],
        inserted=merged["inserted"],
        updated=merged["updated"],
    )


def merge(
    res: Resources, run_id: str, obs: list[LoadTable], quarantine: list[LoadTable], objects: list[BronzeObject]
) -> dict[str, int]:
    """One transaction: upsert observations (a later ingestion with different values wins; an identical re-fetch
    changes nothing, so downstream models do not reprocess it), add quarantined rows, refresh cities, mark the
    bronze objects processed (only if unchanged since read), drop the load tables."""
    pg = res.settings.postgres
    s = pg.staging_schema
    target = sql.Identifier(s, "weather_observations")
    cols = sql.SQL(", ").join(map(sql.Identifier, OBSERVATION_COLUMNS))
    updates = sql.SQL(", ").join(
        sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c))
        for c in OBSERVATION_COLUMNS
        if c not in {"city_id", "observed_at"}
    )

    def union(tables: list[LoadTable], columns: list[str]) -> sql.Composable:
        col_list = sql.SQL(", ").join(map(sql.Identifier, columns))
        return sql.SQL(" union all ").join(
            sql.SQL("select {} from {}").format(col_list, sql.Identifier(s, t.name)) for t in tables
        )

    measures = [f.name for f in schemas.MEASURES]
    changed = sql.SQL("({}) is distinct from ({})").format(
        sql.SQL(", ").join(sql.SQL("excluded.{}").format(sql.Identifier(c)) for c in measures),
        sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in measures),
    )
    counts = {"inserted": 0, "updated": 0}
    with res.warehouse.connect() as conn:
        if obs:
            rows = conn.execute(
                sql.SQL(
                    "insert into {t} as t ({cols}) {src} on conflict (city_id, observed_at) do update set {upd}, "
                    "loaded_at = now() where (excluded.ingested_at, excluded.kafka_partition, excluded.kafka_offset)"
                    " > (t.ingested_at, t.kafka_partition, t.kafka_offset) and {changed} returning (xmax = 0)"
                ).format(t=target, cols=cols, src=union(obs, OBSERVATION_COLUMNS), upd=updates, changed=changed)
            ).fetchall()
            counts["inserted"] = sum(1 for (new,) in rows if new)
            counts["updated"] = len(rows) - counts["inserted"]
        if quarantine:
            conn.execute(
                sql.SQL("insert into {t} ({cols}) {src} on conflict do nothing").format(
                    t=sql.Identifier(s, "weather_quarantine"),
                    cols=sql.SQL(", ").join(map(sql.Identifier, QUARANTINE_COLUMNS)),
                    src=union(quarantine, QUARANTINE_COLUMNS),
                )
            )
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL(
                    "insert into {t} (city_id, city_name, country, latitude, longitude, timezone) "
                    "values (%s, %s, %s, %s, %s, %s) on conflict (city_id) do update set city_name = "
                    "excluded.city_name, country = excluded.country, latitude = excluded.latitude, longitude = "
                    "excluded.longitude, timezone = excluded.timezone, updated_at = now() where (cities.city_name, "
                    "cities.country, cities.latitude, cities.longitude, cities.timezone) is distinct from "
                    "(excluded.city_name, excluded.country, excluded.latitude, excluded.longitude, excluded.timezone)"
                ).format(t=sql.Identifier(s, "cities")),
                [(c.id, c.name, c.country, c.lat, c.lon, c.timezone) for c in load_cities(res.settings)],
            )
        conn.execute(
            sql.SQL(
                "update {m} set silver_processed_at = now(), silver_run_id = %s "
                "from unnest(%s::text[], %s::text[]) as o(k, e) where object_key = o.k and coalesce(etag, '') = o.e"
            ).format(m=sql.Identifier(pg.ops_schema, "bronze_manifest")),
            (run_id, [o.key for o in objects], [o.etag for o in objects]),
        )
        for t in [*obs, *quarantine]:
            conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(s, t.name)))
    return counts


def main() -> None:  # pragma: no cover - `python -m spark_jobs.silver`; the crash test kills it
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=dt.datetime.fromisoformat)
    parser.add_argument("--end", type=dt.datetime.fromisoformat)
    parser.add_argument("--run-id")
    parser.add_argument("--reprocess", action="store_true", help="also re-read every object of the interval")
    args = parser.parse_args()
    settings = bootstrap()
    utc = [(t.replace(tzinfo=dt.UTC) if t and t.tzinfo is None else t) for t in (args.start, args.end)]
    print(
        json.dumps(
            run(settings, start=utc[0], end=utc[1], run_id=args.run_id, reprocess=args.reprocess).to_dict(), default=str
        )
    )


if __name__ == "__main__":  # pragma: no cover
    main()
