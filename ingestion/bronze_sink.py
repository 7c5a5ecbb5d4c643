"""Bronze stage: Kafka -> raw Parquet on S3, exactly once under crashes.

How exactly-once holds (a ``kill -9`` at any point, then a restart):

* Every flush of a partition covers an offset range that starts at the group's committed offset and never crosses
  a multiple of ``bronze.chunk_records``. Within a range, the valid messages of each event hour go to one object
  keyed by topic, partition, hour and the first offset of that hour in the range; invalid ones go to one
  dead-letter object keyed the same way.
* Objects are written with single PUTs (atomic), then upserted into ``ops.bronze_manifest``, and only then is the
  offset committed. A rerun after a crash restarts from the same committed offset and so recomputes the same key
  for every object the crashed run wrote: it overwrites, never adds a duplicate.

Two modes: ``drain`` reads up to the end offsets seen at start (and what arrives meanwhile), writes, commits
and exits; ``follow`` runs until stopped, flushing at each block boundary and every ``flush_interval_s``.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import gc
import io
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from psycopg import sql

from ingestion.envelope import Envelope, EnvelopeError
from ingestion.kafka_records import lean_records
from weatherpipe import db
from weatherpipe.audit import stage_scope
from weatherpipe.contracts import BRONZE as BRONZE_SCHEMA
from weatherpipe.errors import PipelineError, ServiceUnavailable, TransientError
from weatherpipe.kafka import ensure_topic, unreachable
from weatherpipe.results import StageResult, new_run_id, utcnow
from weatherpipe.settings import Settings
from weatherpipe.storage import ObjectStore, text_or_base64

log = logging.getLogger(__name__)


class Record(Protocol):
    """What the sink needs of a Kafka record: the :class:`Message` its consumer yields (``kafka_records``), or
    kafka-python's ``ConsumerRecord`` where that lean path is unavailable."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int | None: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass
class Written:
    key: str
    partition: int
    start_offset: int
    end_offset: int
    rows: int
    hour: dt.datetime | None  # None for dead letters
    etag: str = ""
    size: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def bronze_key(settings: Settings, topic: str, partition: int, hour: dt.datetime, first_offset: int) -> str:
    return (
        f"{settings.s3.bronze_prefix}/topic={topic}/observed_date={hour:%Y-%m-%d}/observed_hour={hour:%H}/"
        f"part-{partition:03d}-{first_offset:020d}.parquet"
    )


def deadletter_key(settings: Settings, topic: str, partition: int, first_offset: int) -> str:
    return f"{settings.s3.deadletter_prefix}/topic={topic}/partition={partition:03d}/dl-{first_offset:020d}.jsonl"


def parse(messages: list[Record]) -> tuple[list[tuple[Record, Envelope]], list[tuple[Record, str]]]:
    good, bad = [], []
    for msg in messages:
        if msg.value is None:
            bad.append((msg, "empty message (tombstone)"))
            continue
        try:
            good.append((msg, Envelope.from_bytes(msg.value)))
        except EnvelopeError as exc:
            bad.append((msg, str(exc)[:500]))
        except Exception as exc:
            bad.append((msg, f"unparseable: {type(exc).__name__}: {exc}"[:500]))
    return good, bad


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)


def _micros(ts: dt.datetime) -> int:
    return (ts - _EPOCH) // _US


def _table(topic: str, rows: list[tuple[Record, Envelope]], written_at: dt.datetime) -> pa.Table:
    """Column-wise build with integer timestamps: pyarrow converts aware datetimes row by row (~40 µs each)."""
    n = len(rows)
    envs = [env for _, env in rows]
    columns = {
        "event_id": [e.event_id for e in envs],
        "schema_version": [e.schema_version for e in envs],
        "source": [e.source for e in envs],
        "city_id": [e.city_id for e in envs],
        "observed_at": [_micros(e.observed_at) for e in envs],
        "ingested_at": [_micros(e.ingested_at) for e in envs],
        "run_id": [e.run_id for e in envs],
        "payload": [bytes(e.payload) for e in envs],  # Arrow checks the UTF-8 itself, 7x cheaper than decoding
        "kafka_topic": [topic] * n,
        "kafka_partition": [m.partition for m, _ in rows],
        "kafka_offset": [m.offset for m, _ in rows],
        "kafka_timestamp": [m.timestamp for m, _ in rows],
        "bronze_written_at": [_micros(written_at)] * n,
    }
    arrays = [pa.array(columns[f.name], type=f.type) for f in BRONZE_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=BRONZE_SCHEMA)


def _deadletter_body(topic: str, rows: list[tuple[Record, str]]) -> bytes:
    lines = []
    for msg, reason in rows:
        text, encoding = text_or_base64(msg.value or b"")
        lines.append(
            json.dumps(
                {
                    "topic": topic,
                    "partition": msg.partition,
                    "offset": msg.offset,
                    "timestamp_ms": msg.timestamp,
                    "key": msg.key.decode("utf-8", "replace") if msg.key else None,
                    "reason": reason,
                    "value_encoding": encoding,
                    "value": text,
                },
                ensure_ascii=False,
            )
        )
    return ("\n".join(lines) + "\n").encode()


_HOUR_US = 3_600_000_000
# dictionary-encode the few repetitive columns only: on ids and payloads it costs time and grows the file
_DICTIONARY = ["schema_version", "source", "city_id", "run_id", "kafka_topic", "kafka_partition"]


class BronzeWriter:
    """Writes one offset range of one partition: objects first, then the manifest rows."""

    def __init__(self, settings: Settings, store: ObjectStore, topic: str, run_id: str) -> None:
        self.settings = settings
        self.store = store
        self.topic = topic
        self.run_id = run_id
        self.pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="bronze-put")
        self._conn: psycopg.Connection | None = None  # the manifest's, kept across writes (a connect is ~5 ms)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def write_range(self, partition: int, messages: list[Record]) -> list[Written]:
        good, bad = parse(messages)
        written_at = utcnow()
        by_hour: dict[int, list[tuple[Record, Envelope]]] = defaultdict(list)
        for row in good:
            by_hour[_micros(row[1].observed_at) // _HOUR_US].append(row)
        jobs: list[tuple[Written, bytes, str]] = []
        for hour_no, rows in sorted(by_hour.items()):
            hour = _EPOCH + dt.timedelta(hours=hour_no)
            first, last = rows[0][0].offset, rows[-1][0].offset
            key = bronze_key(self.settings, self.topic, partition, hour, first)
            buf = io.BytesIO()
            pq.write_table(_table(self.topic, rows, written_at), buf, compression="zstd", use_dictionary=_DICTIONARY)
            jobs.append((Written(key, partition, first, last, len(rows), hour), buf.getvalue(), "application/parquet"))
        if bad:
            key = deadletter_key(self.settings, self.topic, partition, bad[0][0].offset)
            reasons: dict[str, int] = defaultdict(int)
            for _, reason in bad:
                reasons[reason.split(":")[0]] += 1
            written = Written(
                key, partition, bad[0][0].offset, bad[-1][0].offset, len(bad), None, reasons=dict(reasons)
            )
            jobs.append((written, _deadletter_body(self.topic, bad), "application/x-ndjson"))
        out = list(self.pool.map(self._put, jobs))  # every PUT done (or raised) before the manifest
        self._manifest(out, written_at)
        return out

    def _put(self, job: tuple[Written, bytes, str]) -> Written:
        written, body, content_type = job
        written.etag = self.store.put(written.key, body, content_type)
        written.size = len(body)
        return written

    def _manifest(self, written: list[Written], written_at: dt.datetime) -> None:
        if not written:
            return
        pg = self.settings.postgres
        bronze = sql.SQL(
            """insert into {t} (object_key, topic, kafka_partition, start_offset, end_offset, row_count,
                   observed_hour, etag, bytes, written_at, run_id)
               values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               on conflict (object_key) do update set
                   end_offset = excluded.end_offset, row_count = excluded.row_count, etag = excluded.etag,
                   bytes = excluded.bytes, written_at = excluded.written_at, run_id = excluded.run_id,
                   silver_processed_at = case when {t}.etag is distinct from excluded.etag
                                              then null else {t}.silver_processed_at end"""
        ).format(t=sql.Identifier(pg.ops_schema, "bronze_manifest"))
        dead = sql.SQL(
            """insert into {t} (object_key, topic, kafka_partition, start_offset, row_count, reasons, written_at,
                   run_id)
               values (%s, %s, %s, %s, %s, %s, %s, %s)
               on conflict (object_key) do update set row_count = excluded.row_count, reasons = excluded.reasons,
                   written_at = excluded.written_at, run_id = excluded.run_id"""
        ).format(t=sql.Identifier(pg.ops_schema, "deadletter_manifest"))
        topic, run = self.topic, self.run_id
        dead_rows = [
            (w.key, topic, w.partition, w.start_offset, w.rows, json.dumps(w.reasons), written_at, run)
            for w in written
            if w.hour is None
        ]
        bronze_rows = [
            (w.key, topic, w.partition, w.start_offset, w.end_offset, w.rows, w.hour, w.etag, w.size, written_at, run)
            for w in written
            if w.hour is not None
        ]
        if self._conn is None or self._conn.closed:
            self._conn = db.open_connection(pg, autocommit=True)
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:  # one round trip per batch (pipelined)
                for query, rows in ((bronze, bronze_rows), (dead, dead_rows)):
                    if rows:
                        cur.executemany(query, rows)
        except psycopg.OperationalError as exc:
            self._conn.close()
            raise db.lost(pg, exc) from None


def split_ranges(messages: list[Record], block: int) -> Iterable[list[Record]]:
    """Cut a partition's contiguous messages wherever the offset crosses a multiple of ``block``."""
    current: list[Record] = []
    for msg in messages:
        if current and msg.offset // block != current[-1].offset // block:
            yield current
            current = []
        current.append(msg)
    if current:
        yield current


class BronzeSink:
    """Owns the partitions ``p`` with ``p % workers == worker`` (all of them with one worker)."""

    def __init__(
        self, settings: Settings, run_id: str, worker: int = 0, workers: int = 1, store: ObjectStore | None = None
    ) -> None:
        self.settings = settings
        self.kafka = settings.kafka
        self.topic = settings.kafka.topic
        self.store = store or ObjectStore(settings.s3)
        self.writer = BronzeWriter(settings, self.store, self.topic, run_id)
        self.stop = threading.Event()
        self.consumer = self._consumer()
        self.partitions = [
            TopicPartition(self.topic, p) for p in sorted(self._partition_ids()) if p % workers == worker
        ]
        self.consumer.assign(self.partitions)
        self.start: dict[int, int] = {}
        for tp in self.partitions:
            committed = self.consumer.committed(tp)
            if committed is None:
                committed = self.consumer.beginning_offsets([tp])[tp]
            self.consumer.seek(tp, committed)
            self.start[tp.partition] = committed
        self.buffers: dict[int, list[Record]] = {tp.partition: [] for tp in self.partitions}
        self.jobs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bronze-write")
        self.inflight: dict[int, tuple[Future[list[Written]], int]] = {}
        self.written: list[Written] = []
        self.read = 0

    def _consumer(self) -> KafkaConsumer:
        try:
            consumer = KafkaConsumer(
                bootstrap_servers=self.kafka.bootstrap_servers,
                group_id=self.kafka.consumer_group,
                client_id="weatherpipe-bronze",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=5000,
                fetch_max_bytes=64 * 1024 * 1024,
                request_timeout_ms=max(self.kafka.request_timeout_ms, 31_000),
                bootstrap_timeout_ms=self.kafka.request_timeout_ms,
            )
        except (KafkaError, OSError) as exc:
            raise unreachable(self.kafka, exc) from None
        lean_records(consumer)  # records decoded per batch, not per message: half the consumer's CPU
        return consumer

    def _partition_ids(self) -> set[int]:
        ids = self.consumer.partitions_for_topic(self.topic)
        if not ids:
            ensure_topic(self.kafka)
            deadline = time.monotonic() + 10
            while not ids and time.monotonic() < deadline:
                time.sleep(0.2)
                ids = self.consumer.partitions_for_topic(self.topic)
        if not ids:
            raise ServiceUnavailable(f"topic {self.topic!r} has no partitions visible")
        return set(ids)

    def poll(self, timeout_ms: int | None = None) -> int:
        if timeout_ms is None:
            timeout_ms = self.settings.bronze.poll_timeout_ms
        batch = self.consumer.poll(timeout_ms=timeout_ms)
        got = 0
        for tp, records in batch.items():
            self.buffers[tp.partition].extend(records)
            got += len(records)
        self.read += got
        return got

    def submit(self, partition: int) -> None:
        """Hand the partition's buffer to the writer thread and keep polling. Its offset is committed when the
        objects are durable (``reap``). A partition never has two writes in flight, so each range still starts
        at the committed offset (or at a block boundary): what a restart after a crash recomputes."""
        self.reap(partition, wait=True)
        buf = self.buffers[partition]
        if not buf:
            return
        self.buffers[partition] = []
        future = self.jobs.submit(self._write, partition, buf)
        self.inflight[partition] = (future, buf[-1].offset + 1)

    def _write(self, partition: int, buf: list[Record]) -> list[Written]:
        written: list[Written] = []
        for chunk in split_ranges(buf, self.settings.bronze.chunk_records):
            written += self.writer.write_range(partition, chunk)
        return written

    def reap(self, partition: int | None = None, *, wait: bool = False) -> None:
        """Commit the writes that are done (or wait for them); a failed write raises here, uncommitted."""
        for p in [partition] if partition is not None else list(self.inflight):
            if p not in self.inflight or not (wait or self.inflight[p][0].done()):
                continue
            future, next_offset = self.inflight.pop(p)
            self.written.extend(future.result())
            self.consumer.commit({TopicPartition(self.topic, p): OffsetAndMetadata(next_offset, "", -1)})

    def flush(self, partition: int) -> None:
        self.submit(partition)
        self.reap(partition, wait=True)

    def flush_all(self) -> None:
        for partition in self.buffers:
            self.submit(partition)
        self.reap(wait=True)

    def drain(self) -> None:
        """Read up to the end offsets seen at start, write, commit. Writing overlaps polling: a partition's buffer
        goes to the writer thread once it holds ``flush_records`` messages (and its previous write is committed).

        Tansu reports the base offset of a partition's last batch as its end, so reaching the end offsets means the
        last batch has arrived but up to ``max_poll_records`` of it may still wait in the consumer's buffer: take
        those with zero-timeout polls (no waiting on the network), then stop. With Apache Kafka the end offsets are
        exact and those polls find nothing."""
        targets = {tp.partition: off for tp, off in self.consumer.end_offsets(self.partitions).items()}
        deadline = time.monotonic() + self.settings.bronze.drain_timeout_s
        block, early = self.settings.bronze.chunk_records, self.settings.bronze.flush_records
        reached = False
        while time.monotonic() < deadline:
            got = self.poll(0 if reached else None)
            self.reap()
            for partition, buf in self.buffers.items():
                # a full block is written even if that means waiting for the previous write: memory stays bounded
                if len(buf) >= block or (len(buf) >= early and partition not in self.inflight):
                    self.submit(partition)
            if reached and got == 0:
                break
            reached = all(self.consumer.position(tp) >= targets[tp.partition] for tp in self.partitions)
        self.flush_all()

    def follow(self) -> None:
        block = self.settings.bronze.chunk_records
        last_flush = time.monotonic()
        while not self.stop.is_set():
            self.poll()
            for partition, buf in self.buffers.items():
                if buf and buf[-1].offset // block != buf[0].offset // block:
                    self.flush(partition)
            if time.monotonic() - last_flush >= self.settings.bronze.flush_interval_s:
                self.flush_all()
                last_flush = time.monotonic()
        self.flush_all()

    def close(self) -> None:
        self.jobs.shutdown(wait=True)
        self.writer.close()
        self.consumer.close(autocommit=False)


@dataclass
class SinkOutcome:
    """What one sink (one worker's partitions) did; picklable, so a worker process can send it back."""

    read: int = 0
    written: list[Written] = field(default_factory=list)
    start: dict[int, int] = field(default_factory=dict)
    positions: dict[int, int] = field(default_factory=dict)

    def merge(self, other: SinkOutcome) -> None:
        self.read += other.read
        self.written += other.written
        self.start |= other.start
        self.positions |= other.positions


def _sink(
    settings: Settings,
    run_id: str,
    *,
    follow: bool,
    worker: int = 0,
    workers: int = 1,
    store: ObjectStore | None = None,
) -> SinkOutcome:
    sink = BronzeSink(settings, run_id, worker, workers, store)
    try:
        if follow:
            _stop_on_signals(sink.stop)
            sink.follow()
        else:
            sink.drain()
    finally:
        outcome = SinkOutcome(
            read=sink.read,
            written=sink.written,
            start=dict(sink.start),
            positions={tp.partition: sink.consumer.position(tp) for tp in sink.partitions},
        )
        sink.close()
    return outcome


def drain_workers(settings: Settings) -> int:
    """Worker processes for a drain: one per partition (the topic's configured count), at most two per core;
    ``bronze.workers`` overrides. Like a Kafka Connect sink's tasks, each owns its partitions outright."""
    if settings.bronze.workers:
        return settings.bronze.workers
    return max(1, min(settings.kafka.partitions, 2 * (os.cpu_count() or 1)))


def _drain_in_workers(settings: Settings, run_id: str, workers: int) -> SinkOutcome:
    """Fork one process per share of partitions. Each dies with this process (PR_SET_PDEATHSIG), so a killed
    sink never leaves a worker writing behind a restarted one; exactly-once holds per partition as in one process."""
    ctx = multiprocessing.get_context("fork")  # the imports are done: a worker starts in milliseconds
    # one-time costs paid here, not once per worker: pyarrow imports pandas on its first array (0.5 s), botocore
    # loads its service model on the first client (0.2 s) and builds each client (15 ms). The workers inherit the
    # client: it has opened no connection yet, so each child starts with an empty pool of its own.
    pa.array([0])
    store = ObjectStore(settings.s3)
    prctl = _prctl()
    parent = os.getpid()
    procs = []
    for worker in range(workers):
        receiver, sender = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_worker_main,
            args=(sender, parent, prctl, settings, run_id, worker, workers, store),
            name=f"bronze-worker-{worker}",
            daemon=True,
        )
        proc.start()
        sender.close()
        procs.append((proc, receiver))
    outcome, errors = SinkOutcome(), []
    for worker, (proc, receiver) in enumerate(procs):
        try:
            kind, value = receiver.recv()
        except EOFError:
            kind, value = "died", None
        proc.join()
        if kind == "ok":
            outcome.merge(value)
        elif kind == "error":
            cls, message, hint = value
            errors.append(cls(message, hint=hint) if issubclass(cls, PipelineError) else RuntimeError(message))
        else:
            errors.append(
                TransientError(
                    f"bronze worker {worker} died (exit code {proc.exitcode}); its offsets were not "
                    "committed, so the next run rewrites its objects"
                )
            )
    if errors:
        raise errors[0]
    return outcome


def _worker_main(
    sender: Connection,
    parent: int,
    prctl: Any,
    settings: Settings,
    run_id: str,
    worker: int,
    workers: int,
    store: ObjectStore,
) -> None:
    _die_with(parent, prctl)
    # what the parent built stays put: the collector never walks it (and never dirties its copy-on-write pages),
    # and collects rarely among the sink's many short-lived, acyclic objects
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    try:
        outcome = _sink(settings, run_id, follow=False, worker=worker, workers=workers, store=store)
        message: tuple[str, Any] = ("ok", outcome)
    except BaseException as exc:  # sent to the parent, which raises it
        message = (
            "error",
            (type(exc), str(exc) if not isinstance(exc, PipelineError) else exc.message, getattr(exc, "hint", None)),
        )
    try:
        sender.send(message)
    finally:
        sender.close()
        os._exit(0)  # no atexit/finalisers: the parent's inherited connections are not ours to close


def _prctl() -> Any:
    """libc's prctl, resolved in the parent: ``ctypes.util.find_library`` runs ldconfig in a subprocess, a fork of a
    large process per worker. The running program's own symbols include libc's on Linux."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _die_with(parent: int, prctl: Any) -> None:
    """SIGKILL this process when its parent dies (Linux); exit at once if it already has."""
    if prctl is not None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def run(settings: Settings, *, follow: bool = False, run_id: str | None = None) -> StageResult:
    """Drain (or follow) the topic into bronze. A drain runs in ``drain_workers`` processes; follow in this one."""
    run_id = run_id or new_run_id("bronze")
    result = StageResult("bronze", run_id)
    with stage_scope(settings, result):
        workers = 1 if follow else drain_workers(settings)
        if workers == 1:
            outcome = _sink(settings, run_id, follow=follow)
        else:
            outcome = _drain_in_workers(settings, run_id, workers)
        result.rows_in = outcome.read
        result.rows_out = sum(w.rows for w in outcome.written if w.hour is not None)
        result.rows_rejected = sum(w.rows for w in outcome.written if w.hour is None)
        result.objects = [w.key for w in outcome.written]
        result.offsets = {
            str(p): {"from": o, "to": outcome.positions.get(p, o)} for p, o in sorted(outcome.start.items())
        }
        reasons: dict[str, int] = defaultdict(int)
        for w in outcome.written:
            for reason, n in w.reasons.items():
                reasons[reason] += n
        result.details = {
            "deadletter_reasons": dict(reasons),
            "mode": "follow" if follow else "drain",
            "workers": workers,
        }
        if result.rows_rejected:
            result.status = "partial"
    return result


def _stop_on_signals(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())


def retention(
    settings: Settings,
    *,
    days: int,
    dry_run: bool = False,
    force: bool = False,
    now: dt.datetime | None = None,
) -> StageResult:
    """Delete the bronze objects bronze wrote more than ``days`` days ago, and their manifest rows.

    Invariants: age is when bronze wrote the object (the manifest's ``written_at``), never the event time — a
    backfill of old observations is kept as long as a fresh load; an object Silver has not processed is never
    deleted unless ``force`` (then it is, and the result counts it apart); objects are chosen from the manifest
    (no bucket listing, whatever the lake's size). S3 first, then the manifest rows: a run cut short in between is
    finished by the next one (deleting a missing key is a no-op)."""
    result = StageResult("retention", new_run_id("retention"))
    cutoff = (now or utcnow()) - dt.timedelta(days=days)
    pg = settings.postgres
    manifest = sql.Identifier(pg.ops_schema, "bronze_manifest")
    with stage_scope(settings, result):
        with db.connect(pg) as conn:
            rows = conn.execute(
                sql.SQL(
                    "select object_key, silver_processed_at is not null from {} where written_at < %s "
                    "order by object_key"
                ).format(manifest),
                (cutoff,),
            ).fetchall()
        processed = [key for key, done in rows if done]
        unprocessed = [key for key, done in rows if not done]
        doomed = processed + unprocessed if force else processed
        result.rows_in = len(rows)
        result.objects = doomed
        result.details = {
            "cutoff": cutoff.isoformat(),
            "dry_run": dry_run,
            "force": force,
            "unprocessed_deleted" if force else "unprocessed_kept": len(unprocessed),
        }
        if unprocessed:
            log.warning(
                "%s %d bronze objects Silver has not processed",
                "deleting (forced)" if force else "keeping",
                len(unprocessed),
            )
        for key in doomed:
            log.info("%s %s", "would delete" if dry_run else "delete", key)
        if not dry_run and doomed:
            ObjectStore(settings.s3).delete(doomed)
            with db.connect(pg) as conn:
                conn.execute(sql.SQL("delete from {} where object_key = any(%s)").format(manifest), (doomed,))
            result.rows_out = len(doomed)
    return result


def main() -> None:  # pragma: no cover - `python -m ingestion.bronze_sink [--follow]`, used by the crash test
    import sys

    from weatherpipe.log import bootstrap

    run(bootstrap("json"), follow="--follow" in sys.argv)


if __name__ == "__main__":  # pragma: no cover
    main()
