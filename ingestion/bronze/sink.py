"""The consume/commit protocol: buffer each partition, hand full ranges to the writer, commit a partition's offset
only once its objects and manifest rows are durable (see the package docstring for why that is exactly once).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from ingestion.bronze.consumer import lean_records
from ingestion.bronze.encoding import Record
from ingestion.bronze.layout import Written
from ingestion.bronze.writer import BronzeWriter
from weatherpipe import progress
from weatherpipe.errors import ServiceUnavailable
from weatherpipe.kafka import ensure_topic, unreachable
from weatherpipe.progress import Meter
from weatherpipe.settings import Settings
from weatherpipe.storage import ObjectStore


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


class Tally(Protocol):
    """Where a sink counts its progress: messages to read (added as each sink learns its share) and read."""

    def add_total(self, n: int) -> None: ...
    def advance(self, n: int) -> None: ...


class MeterTally:
    """A tally shown by a progress meter (one process)."""

    def __init__(self, meter: Meter) -> None:
        self.meter, self.total = meter, 0

    def add_total(self, n: int) -> None:
        self.total += n
        self.meter.update(total=self.total)

    def advance(self, n: int) -> None:
        self.meter.advance(n)


class BronzeSink:
    """Owns the partitions ``p`` with ``p % workers == worker`` (all of them with one worker)."""

    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        run_id: str,
        worker: int = 0,
        workers: int = 1,
        tally: Tally | None = None,
    ) -> None:
        self.settings = settings
        self.tally = tally or MeterTally(progress.meter("bronze", "messages"))
        self.kafka = settings.kafka
        self.topic = settings.kafka.topic
        self.store = store
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
        if got:
            self.tally.advance(got)
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
        """Read to the end, write, commit. Writing overlaps polling: a partition's buffer goes to the writer thread
        once it holds ``flush_records`` messages (and its previous write is committed).

        The end is where a poll of ``drain_idle_ms`` finds nothing more, once every partition has reached the end
        offsets seen at start. Those offsets alone cannot say it: Tansu reports the base offset of a partition's
        last batch as its end, and with its log in S3 it reports a stale one (60,000 messages published, ends of
        about 12,000 per partition of 20,000 seen right after); a drain that stopped there left the rest for the next
        run. A broker answers a fetch at once when it has data, so the last, empty poll costs ``drain_idle_ms``."""
        targets = {tp.partition: off for tp, off in self.consumer.end_offsets(self.partitions).items()}
        expected = sum(max(0, end - self.start[p]) for p, end in targets.items())
        self.tally.add_total(expected)
        deadline = time.monotonic() + self.settings.bronze.drain_timeout_s
        block, early = self.settings.bronze.chunk_records, self.settings.bronze.flush_records
        reached = all(self.consumer.position(tp) >= targets[tp.partition] for tp in self.partitions)
        while time.monotonic() < deadline:
            got = self.poll(self.settings.bronze.drain_idle_ms if reached else None)
            self.reap()
            for partition, buf in self.buffers.items():
                # a full block is written even if that means waiting for the previous write: memory stays bounded
                if len(buf) >= block or (len(buf) >= early and partition not in self.inflight):
                    self.submit(partition)
            if reached and got == 0:
                break
            reached = all(self.consumer.position(tp) >= targets[tp.partition] for tp in self.partitions)
        self.flush_all()
        self.tally.add_total(max(0, self.read - expected))  # what arrived meanwhile, or past stale end offsets

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


def sink_partitions(
    settings: Settings,
    store: ObjectStore,
    run_id: str,
    *,
    follow: bool,
    worker: int = 0,
    workers: int = 1,
    tally: Tally | None = None,
) -> SinkOutcome:
    sink = BronzeSink(settings, store, run_id, worker, workers, tally)
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


def _stop_on_signals(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
