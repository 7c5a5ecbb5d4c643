"""Backfill: the replay year from empty, a rerun of it, and a million synthetic observations, end to end (the four
stages, in process, as ``weatherpipe run`` runs them), against the floors of the same work done plainly, measured
in the same run on the very messages and rows of the case (target: ours <= 3x the sum of the floors).

The floors:
- consume: a bare kafka-python consumer reading every message of the topic (no group, no decoding);
- bronze: the rows as one Parquet object per event day, each with one PUT (16 at a time);
- silver: every message parsed with ``json.loads``, then the staged rows COPY'd into a fresh table of staging's shape;
- gold: ``dbt build`` from empty on the same staging rows (our Gold stage again, into fresh schemas).

The rerun re-fetches and re-publishes the same year: Silver must read only the rows the rerun published, never the
ones it processed before, and the rerun must cost no more than the first run. The million-observation case also
counts bronze objects before and after ``weatherpipe bronze compact`` (target: at most one per event day after it).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from kafka import KafkaConsumer, TopicPartition
from psycopg import sql

from bench.common import BenchRow, isolated, timed
from ingestion import bronze
from ingestion.bronze.encoding import DICTIONARY
from ingestion.sources.synthetic import with_synthetic_cities
from weatherpipe import db, gold, pipeline
from weatherpipe.results import StageResult
from weatherpipe.settings import Settings
from weatherpipe.storage import ObjectStore

START, END = dt.datetime(2013, 1, 1, tzinfo=dt.UTC), dt.datetime(2014, 1, 1, tzinfo=dt.UTC)
SYNTHETIC_CITIES = 115  # x ~8,705 hours: 1,001,076 observations


@dataclass
class Floors:
    consume_s: float
    put_s: float
    parse_copy_s: float
    dbt_s: float
    day_objects: int

    @property
    def total(self) -> float:
        return self.consume_s + self.put_s + self.parse_copy_s + self.dbt_s

    def note(self) -> str:
        return (
            f"floors: consume {self.consume_s:.1f}s + {self.day_objects} day PUTs {self.put_s:.1f}s + "
            f"parse+COPY {self.parse_copy_s:.1f}s + dbt build {self.dbt_s:.1f}s"
        )


def _consume(settings: Settings, n: int) -> list[bytes]:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=5000,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    consumer.assign([TopicPartition(settings.kafka.topic, p) for p in range(settings.kafka.partitions)])
    values: list[bytes] = []
    deadline = time.monotonic() + 600
    while len(values) < n and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            values.extend(r.value for r in records)
    consumer.close()
    return values


def _live_bronze(settings: Settings) -> pa.Table:
    store = ObjectStore(settings.s3)
    with db.connect(settings.postgres) as conn:
        keys = [
            k
            for (k,) in conn.execute(
                sql.SQL("select object_key from {} where retired_at is null").format(
                    sql.Identifier(settings.postgres.ops_schema, "bronze_manifest")
                )
            )
        ]
    with ThreadPoolExecutor(16) as pool:
        return pa.concat_tables(pool.map(lambda k: pq.read_table(io.BytesIO(store.get(k))), keys))


def _put_per_day(settings: Settings, table: pa.Table, prefix: str) -> tuple[float, int]:
    """One Parquet object per event day, one PUT each (the day slices are cut before the clock starts)."""
    store = ObjectStore(settings.s3)
    days = pc.floor_temporal(table["observed_at"], unit="day")
    table = table.append_column("_day", days).sort_by("_day")
    slices = []
    for day in pc.unique(table["_day"]).to_pylist():
        part = table.filter(pc.equal(table["_day"], pa.scalar(day, table["_day"].type))).drop_columns(["_day"])
        slices.append((f"{prefix}/{day:%Y-%m-%d}.parquet", part))

    def put(item: tuple[str, pa.Table]) -> None:
        buf = io.BytesIO()
        pq.write_table(item[1], buf, compression="zstd", use_dictionary=DICTIONARY)
        store.put(item[0], buf.getvalue(), "application/parquet")

    def all_days() -> None:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, slices))

    seconds, _ = timed(all_days)
    store.delete([k for k, _ in slices])
    return seconds, len(slices)


def _parse_and_copy(settings: Settings, values: list[bytes]) -> float:
    schema = settings.postgres.staging_schema
    with db.connect(settings.postgres) as conn:
        with (
            conn.cursor() as cur,
            cur.copy(sql.SQL("copy {} to stdout").format(sql.Identifier(schema, "weather_observations"))) as out,
        ):
            staged = b"".join(bytes(chunk) for chunk in out)
        conn.execute(
            sql.SQL("create table {} (like {} including all)").format(
                sql.Identifier(schema, "floor_copy"), sql.Identifier(schema, "weather_observations")
            )
        )

    def parse() -> None:
        for value in values:
            json.loads(value)

    def copy() -> None:
        with (
            db.connect(settings.postgres) as conn,
            conn.cursor() as cur,
            cur.copy(sql.SQL("copy {} from stdin").format(sql.Identifier(schema, "floor_copy"))) as into,
        ):
            into.write(staged)

    parse_s, _ = timed(parse)
    copy_s, _ = timed(copy)
    with db.connect(settings.postgres) as conn:
        conn.execute(sql.SQL("drop table {}").format(sql.Identifier(schema, "floor_copy")))
    return parse_s + copy_s


def _dbt_from_empty(settings: Settings, name: str) -> float:
    prefix = f"{settings.dbt.schema_prefix}f_"
    target = settings.state_dir / "bench" / f"dbt-target-backfill-floor-{name}"
    floor = settings.model_copy(
        update={"dbt": settings.dbt.model_copy(update={"schema_prefix": prefix, "target_path": target})}
    )
    try:
        seconds, result = timed(lambda: gold.run(floor))
        assert result.status == "success", result.error
        return seconds
    finally:
        _drop_dbt_schemas(floor)


def _drop_dbt_schemas(settings: Settings) -> None:
    with db.connect(settings.postgres.admin, autocommit=True) as conn:
        schemas = conn.execute(
            "select nspname from pg_namespace where starts_with(nspname, %s)", (settings.dbt.schema_prefix,)
        ).fetchall()
        for (schema,) in schemas:
            conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(schema)))


def _floors(settings: Settings, published: int, name: str) -> Floors:
    consume_s, values = timed(lambda: _consume(settings, published))
    assert len(values) == published, f"consumed {len(values)} of {published}"
    put_s, days = _put_per_day(settings, _live_bronze(settings), f"bench-floor/{settings.kafka.topic}")
    return Floors(consume_s, put_s, _parse_and_copy(settings, values), _dbt_from_empty(settings, name), days)


def _run(settings: Settings, source: str) -> tuple[float, dict[str, StageResult]]:
    seconds, summary = timed(lambda: pipeline.run(settings, source=source, start=START, end=END, build_docs=False))
    assert summary.ok, summary.error or [c for c in summary.checks if not c.ok]
    return seconds, {r.stage: r for r in summary.results}


def _stages(results: dict[str, StageResult]) -> str:
    return ", ".join(f"{s} {r.duration_s:.1f}s" for s, r in results.items())


def _with_dbt(settings: Settings, name: str) -> Settings:
    prefix = f"b{settings.postgres.staging_schema[-6:]}_"
    target = settings.state_dir / "bench" / f"dbt-target-backfill-{name}"
    return settings.model_copy(
        update={"dbt": settings.dbt.model_copy(update={"schema_prefix": prefix, "target_path": target})}
    )


def _end_to_end(settings: Settings, name: str, label: str, seconds: float, results: dict[str, StageResult]) -> BenchRow:
    """A case's end-to-end row: our run against the floors measured now on its messages and rows."""
    published = results["ingest"].rows_out
    floors = _floors(settings, published, name)
    return BenchRow(
        "backfill",
        f"{label}, end to end, {published:,} obs (s)",
        seconds,
        floors.total,
        seconds / floors.total,
        "<= 3",
        f"{_stages(results)}; {len(results['bronze'].objects)} bronze objects; {floors.note()}",
    )


def _year(rows: list[BenchRow]) -> None:
    with isolated("backfill_year") as base:
        settings = _with_dbt(base, "year")
        try:
            first_s, first = _run(settings, "replay")
            rows.append(_end_to_end(settings, "year", "replay year from empty", first_s, first))
            rerun_s, rerun = _run(settings, "replay")
            rows.append(
                BenchRow(
                    "backfill",
                    "rerun of the year vs the first run (s)",
                    rerun_s,
                    first_s,
                    rerun_s / first_s,
                    "<= 1",
                    _stages(rerun),
                )
            )
            read, new = rerun["silver"].rows_in, rerun["ingest"].rows_out
            rows.append(
                BenchRow(
                    "backfill",
                    "rerun: rows Silver read vs rows the rerun published",
                    read,
                    new,
                    read / new,
                    "<= 1",
                    f"{read:,} read for {new:,} re-published (all processed before)",
                )
            )
        finally:
            _drop_dbt_schemas(settings)


def _synthetic(rows: list[BenchRow]) -> None:
    with isolated("backfill_1m") as base:
        settings = with_synthetic_cities(_with_dbt(base, "synthetic"), SYNTHETIC_CITIES)
        try:
            seconds, results = _run(settings, "synthetic")
            label = f"synthetic {SYNTHETIC_CITIES} cities x 1 year from empty"
            rows.append(_end_to_end(settings, "synthetic", label, seconds, results))
            compact_s, compacted = timed(lambda: bronze.compact(settings, grace_s=0))
            m = compacted.metrics
            before = m.live_objects + m.objects_merged - m.objects_written
            rows.append(
                BenchRow(
                    "backfill",
                    "bronze objects per event day after compaction",
                    m.live_objects,
                    m.dates_in_bronze,
                    m.live_objects / max(1, m.dates_in_bronze),
                    "<= 1",
                    f"{before:,} objects before, {m.live_objects:,} after, {m.dates_in_bronze} days; "
                    f"compaction {compact_s:.1f}s",
                )
            )
        finally:
            _drop_dbt_schemas(settings)


def run() -> list[BenchRow]:
    # dbt is imported before any clock starts: its import (seconds) would land on our first Gold stage and not on
    # the floor's build, which runs later in the same process
    from dbt.cli.main import dbtRunner  # noqa: F401

    rows: list[BenchRow] = []
    _year(rows)
    _synthetic(rows)
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
