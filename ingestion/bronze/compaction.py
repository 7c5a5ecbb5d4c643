"""Compaction: the small bronze objects of a closed event date merged into one, exactly once under crashes.

What may be merged: live objects (not retired) of a date that ended ``bronze.compact_lag_hours`` ago, that Silver
has processed, and whose offsets the sink has committed (``end_offset`` below the group's committed offset). The
last condition means the sink can never write one of them again: a sink restarts from its committed offset. So a
merged object's rows are rows Silver already has, and nothing else writes its inputs.

How exactly-once holds (a ``kill -9`` at any point, then a rerun):

* Per date, in order: (1) a journal row in ``ops.bronze_compactions`` names the merged object and its inputs;
  (2) the merged object is written with one PUT, keyed by the date and a digest of its inputs (key and ETag);
  (3) one transaction retires the inputs (``retired_at``, ``replaced_by``) — only if every one is still live and
  unchanged — records the merged object (processed, ``written_at`` the newest input's, so retention ages it as
  bronze wrote the data) and marks the journal row committed.
* A run killed before (3) leaves a journal row that is not committed: the next run deletes the object it names
  (no manifest row points to it) and the row, then compacts the date again. Killed after (3), the date is done.
* Retired objects are deleted ``bronze.compact_grace_s`` after (3) — a Silver run that listed one before may still
  be reading it — object first, then its manifest row; a run cut short in between is finished by the next one.
  Silver never reads a retired object (its rows are in the object that replaced it).

Compaction and retention take the same advisory lock: one bronze maintenance job at a time per ops schema.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from psycopg import sql

from ingestion.bronze.encoding import DICTIONARY
from ingestion.bronze.layout import compacted_key
from weatherpipe import progress
from weatherpipe.audit import stage_scope
from weatherpipe.contracts import BRONZE as BRONZE_SCHEMA
from weatherpipe.kafka import unreachable
from weatherpipe.progress import Meter
from weatherpipe.resources import Resources
from weatherpipe.results import Check, Counts, Metrics, StageResult, new_run_id, utcnow
from weatherpipe.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class CompactionMetrics(Metrics):
    """``rows_in`` rows read from the merged objects, ``rows_out`` rows in the objects that replace them."""

    dates: int = 0  # dates compacted in this run
    objects_merged: int = 0  # live objects retired into a merged one
    objects_written: int = 0
    retired_deleted: int = 0  # retired objects deleted, past their grace period
    abandoned: int = 0  # merged objects of killed runs, deleted before they were ever recorded
    conflicts: int = 0  # dates skipped because an input changed under the run (compacted again next time)
    live_objects: int = 0  # live bronze objects of the topic after the run
    dates_in_bronze: int = 0  # dates those objects hold
    dry_run: bool = False
    per_date: dict[str, int] = field(default_factory=dict)  # date -> objects merged (dry runs too)

    def checks(self, counts: Counts) -> list[Check]:
        return [
            Check(
                "compaction: rows merged = rows written",
                counts.rows_in == counts.rows_out,
                f"{counts.rows_in} read = {counts.rows_out} written",
            )
        ]


@dataclass
class Input:
    key: str
    etag: str
    rows: int
    first_hour: dt.datetime
    last_hour: dt.datetime
    written_at: dt.datetime
    processed_at: dt.datetime


@dataclass
class Plan:
    day: dt.date
    inputs: list[Input]
    key: str


class Conflict(Exception):
    """An input was retired or rewritten after it was selected: this date is left for the next run."""


def compact(
    settings: Settings,
    *,
    dry_run: bool = False,
    grace_s: float | None = None,
    now: dt.datetime | None = None,
    resources: Resources | None = None,
) -> StageResult[CompactionMetrics]:
    """Merge every closed date's small objects into one, then delete retired objects past their grace period."""
    run_id = new_run_id("compact")
    result = StageResult("compaction", run_id, metrics=CompactionMetrics(dry_run=dry_run))
    res = Resources.of(settings, resources)
    now = now or utcnow()
    grace = settings.bronze.compact_grace_s if grace_s is None else grace_s
    metrics = result.metrics
    with stage_scope(settings, result), maintenance_lock(res):
        if not dry_run:
            metrics.abandoned = _abandon_unfinished(res)
        plans = plan(res, now)
        metrics.per_date = {p.day.isoformat(): len(p.inputs) for p in plans}
        if not dry_run:
            _run_plans(res, result, plans, run_id)
            result.objects.sort()
            metrics.retired_deleted = sweep_retired(res, grace)
        metrics.live_objects, metrics.dates_in_bronze = _live(res)
    return result


@contextmanager
def maintenance_lock(res: Resources) -> Iterator[None]:
    """One bronze maintenance job (compaction, retention) at a time per ops schema (released on exit or death)."""
    with res.warehouse.exclusive(
        f"weatherpipe.bronze.maintenance.{res.settings.postgres.ops_schema}",
        "another bronze maintenance job (compaction or retention) is running; retry later",
    ):
        yield


def _table(res: Resources, name: str) -> sql.Identifier:
    return sql.Identifier(res.settings.postgres.ops_schema, name)


def _abandon_unfinished(res: Resources) -> int:
    """Delete the objects of compactions that never committed (killed runs), then their journal rows."""
    journal = _table(res, "bronze_compactions")
    with res.warehouse.connect(autocommit=True) as conn:
        keys = [
            k for (k,) in conn.execute(sql.SQL("select object_key from {} where committed_at is null").format(journal))
        ]
        if keys:
            res.store.delete(keys)
            conn.execute(
                sql.SQL("delete from {} where committed_at is null and object_key = any(%s)").format(journal), (keys,)
            )
            log.warning("deleted %d merged objects of compactions that did not finish", len(keys))
    return len(keys)


def plan(res: Resources, now: dt.datetime) -> list[Plan]:
    """The dates to compact and their inputs (see the module docstring for what may be merged)."""
    settings = res.settings
    closed_before = now - dt.timedelta(hours=settings.bronze.compact_lag_hours)
    query = sql.SQL(
        "select object_key, coalesce(etag, ''), kafka_partition, end_offset, row_count, observed_hour, "
        "coalesce(last_observed_hour, observed_hour), written_at, silver_processed_at "
        "from {} where topic = %s and retired_at is null and silver_processed_at is not null "
        "and coalesce(last_observed_hour, observed_hour) < date_trunc('day', %s at time zone 'UTC') at time zone 'UTC' "
        "order by object_key"
    ).format(_table(res, "bronze_manifest"))
    with res.warehouse.connect() as conn:
        rows = conn.execute(query, (settings.kafka.topic, closed_before)).fetchall()
    committed = committed_offsets(settings, {r[2] for r in rows if r[2] >= 0}) if rows else {}
    by_day: dict[dt.date, list[Input]] = defaultdict(list)
    for key, etag, partition, end_offset, count, first, last, written_at, processed_at in rows:
        if partition >= 0 and end_offset >= committed.get(partition, 0):
            continue  # the sink may still write this range again
        day = first.astimezone(dt.UTC).date()
        by_day[day].append(Input(key, etag, count, first, last, written_at, processed_at))
    plans = []
    for day, inputs in sorted(by_day.items()):
        if len(inputs) < 2:
            continue
        digest = hashlib.sha256("\n".join(f"{i.key} {i.etag}" for i in inputs).encode()).hexdigest()[:20]
        plans.append(Plan(day, inputs, compacted_key(settings, settings.kafka.topic, day, digest)))
    return plans


def committed_offsets(settings: Settings, partitions: set[int]) -> dict[int, int]:
    """The bronze sink's committed offset per partition (a partition it never committed is absent)."""
    k = settings.kafka
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=k.bootstrap_servers,
            group_id=k.consumer_group,
            client_id="weatherpipe-compaction",
            enable_auto_commit=False,
            request_timeout_ms=max(k.request_timeout_ms, 31_000),
            bootstrap_timeout_ms=k.request_timeout_ms,
        )
    except (KafkaError, OSError) as exc:
        raise unreachable(k, exc) from None
    try:
        out = {}
        for p in sorted(partitions):
            offset = consumer.committed(TopicPartition(k.topic, p))
            if offset is not None:
                out[p] = offset
        return out
    except (KafkaError, OSError) as exc:
        raise unreachable(k, exc) from None
    finally:
        consumer.close(autocommit=False)


def _run_plans(res: Resources, result: StageResult[CompactionMetrics], plans: list[Plan], run_id: str) -> None:
    """The dates in ``bronze.compact_workers`` threads, each with its own connection; a date is one unit of work."""
    workers = max(1, min(res.settings.bronze.compact_workers, len(plans)))
    shares = [plans[i::workers] for i in range(workers)]
    dates = progress.meter("compaction", "dates", total=len(plans))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bronze-compact") as pool:
        for done in pool.map(lambda share: _run_share(res, share, run_id, dates), shares):
            for plan_, rows in done:
                m = result.metrics
                if rows is None:
                    m.conflicts += 1
                    continue
                result.rows_in += rows
                result.rows_out += rows
                result.objects.append(plan_.key)
                m.dates += 1
                m.objects_merged += len(plan_.inputs)
                m.objects_written += 1


def _run_share(res: Resources, share: list[Plan], run_id: str, dates: Meter) -> list[tuple[Plan, int | None]]:
    out: list[tuple[Plan, int | None]] = []
    with res.warehouse.connect(autocommit=True) as conn:
        for p in share:
            try:
                out.append((p, _compact_date(res, conn, p, run_id)))
                dates.advance()
            except Conflict as exc:
                log.warning("compaction of %s skipped: %s", p.day, exc)
                res.store.delete([p.key])
                conn.execute(
                    sql.SQL("delete from {} where object_key = %s and committed_at is null").format(
                        _table(res, "bronze_compactions")
                    ),
                    (p.key,),
                )
                out.append((p, None))
    return out


def _compact_date(res: Resources, conn: Any, p: Plan, run_id: str) -> int:
    """Journal, PUT, then one transaction (the module docstring's steps 1-3). Returns the rows merged."""
    topic = res.settings.kafka.topic
    keys = [i.key for i in p.inputs]
    conn.execute(
        sql.SQL(
            "insert into {} (object_key, topic, observed_date, inputs, run_id) values (%s, %s, %s, %s, %s) "
            "on conflict (object_key) do update set inputs = excluded.inputs, run_id = excluded.run_id, "
            "started_at = now(), committed_at = null"
        ).format(_table(res, "bronze_compactions")),
        (p.key, topic, p.day, keys, run_id),
    )
    table = merged_table([pq.read_table(io.BytesIO(res.store.get(k))) for k in keys])
    expected = sum(i.rows for i in p.inputs)
    if table.num_rows != expected:
        raise Conflict(f"{table.num_rows} rows read where the manifest records {expected}")
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", use_dictionary=DICTIONARY, row_group_size=1_000_000)
    body = buf.getvalue()
    etag = res.store.put(p.key, body, "application/parquet")
    manifest, journal = _table(res, "bronze_manifest"), _table(res, "bronze_compactions")
    with conn.transaction():
        retired = conn.execute(
            sql.SQL(
                "update {m} set retired_at = now(), replaced_by = %s from unnest(%s::text[], %s::text[]) as i(k, e) "
                "where {m}.object_key = i.k and coalesce({m}.etag, '') = i.e and {m}.retired_at is null "
                "and {m}.silver_processed_at is not null"
            ).format(m=manifest),
            (p.key, keys, [i.etag for i in p.inputs]),
        ).rowcount
        if retired != len(keys):
            raise Conflict(f"{len(keys) - retired} of {len(keys)} inputs changed since they were selected")
        conn.execute(
            sql.SQL(
                "insert into {} (object_key, topic, kafka_partition, start_offset, end_offset, row_count, "
                "observed_hour, last_observed_hour, etag, bytes, written_at, run_id, silver_processed_at, "
                "silver_run_id) values (%s, %s, -1, -1, -1, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "on conflict (object_key) do update set row_count = excluded.row_count, etag = excluded.etag, "
                "bytes = excluded.bytes, retired_at = null, replaced_by = null"
            ).format(manifest),
            (
                p.key,
                topic,
                expected,
                min(i.first_hour for i in p.inputs),
                max(i.last_hour for i in p.inputs),
                etag,
                len(body),
                max(i.written_at for i in p.inputs),
                run_id,
                max(i.processed_at for i in p.inputs),
                run_id,
            ),
        )
        conn.execute(sql.SQL("update {} set committed_at = now() where object_key = %s").format(journal), (p.key,))
    return expected


def merged_table(tables: list[pa.Table]) -> pa.Table:
    """The inputs' rows as one table in the bronze contract, ordered by event time then city (readers prune row
    groups by ``observed_at``). Pure."""
    merged = pa.concat_tables([t.select(BRONZE_SCHEMA.names).cast(BRONZE_SCHEMA) for t in tables])
    return merged.sort_by([("observed_at", "ascending"), ("city_id", "ascending"), ("kafka_offset", "ascending")])


def sweep_retired(res: Resources, grace_s: float) -> int:
    """Delete the objects retired more than ``grace_s`` ago (object first, then its manifest row), and the journal
    rows of compactions whose inputs are all gone."""
    manifest, journal = _table(res, "bronze_manifest"), _table(res, "bronze_compactions")
    with res.warehouse.connect(autocommit=True) as conn:
        keys = [
            k
            for (k,) in conn.execute(
                sql.SQL("select object_key from {} where retired_at <= now() - make_interval(secs => %s)").format(
                    manifest
                ),
                (grace_s,),
            )
        ]
        if keys:
            res.store.delete(keys)
            conn.execute(
                sql.SQL("delete from {} where retired_at is not null and object_key = any(%s)").format(manifest),
                (keys,),
            )
        conn.execute(
            sql.SQL(
                "delete from {j} where committed_at is not null and not exists "
                "(select 1 from {m} where {m}.object_key = any({j}.inputs))"
            ).format(j=journal, m=manifest)
        )
    return len(keys)


def _live(res: Resources) -> tuple[int, int]:
    query = sql.SQL(
        "select count(*), count(distinct (observed_hour at time zone 'UTC')::date) from {} "
        "where topic = %s and retired_at is null"
    ).format(_table(res, "bronze_manifest"))
    with res.warehouse.connect() as conn:
        row = conn.execute(query, (res.settings.kafka.topic,)).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)
