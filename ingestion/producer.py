"""Publishing envelopes with kafka-python: ``acks=all``, bounded retries, and every delivery confirmed."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from kafka import KafkaProducer
from kafka.errors import KafkaError

from ingestion.envelope import Envelope
from weatherpipe.errors import DeliveryError
from weatherpipe.kafka import unreachable
from weatherpipe.settings import KafkaSettings

log = logging.getLogger(__name__)


@dataclass
class Delivery:
    delivered: int = 0
    failed: int = 0
    offsets: dict[int, list[int]] = field(default_factory=dict)  # partition -> [min, max]
    errors: list[str] = field(default_factory=list)

    def note(self, partition: int, offset: int) -> None:
        lo, hi = self.offsets.get(partition, [offset, offset])
        self.offsets[partition] = [min(lo, offset), max(hi, offset)]
        self.delivered += 1


def make_producer(kafka: KafkaSettings) -> KafkaProducer:
    try:
        return KafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers,
            client_id="weatherpipe-ingest",
            acks="all",
            retries=5,
            retry_backoff_ms=200,
            linger_ms=20,
            batch_size=256 * 1024,
            max_in_flight_requests_per_connection=1,  # keeps per-key order under retries
            request_timeout_ms=kafka.request_timeout_ms,
            bootstrap_timeout_ms=kafka.request_timeout_ms,
            max_block_ms=kafka.request_timeout_ms,
        )
    except (KafkaError, OSError) as exc:
        raise unreachable(kafka, exc) from None


def close_producer(producer: KafkaProducer, timeout_s: float) -> None:
    """Close ``producer``, dropping what it could not deliver within ``timeout_s``: after a failed publish its
    batches stay queued until kafka-python's own delivery timeout (2 minutes). kafka-python's ``close`` raises when
    its flush times out, before it stops its network thread, which then outlives the stage; so that thread is stopped
    here as ``close`` stops it after a timeout (failing the queued batches), and ``close`` finishes with nothing left
    to flush. Never raises a Kafka error: closing must not hide the error that made the stage fail."""
    try:
        producer.close(timeout=timeout_s)
    except KafkaError:
        sender = getattr(producer, "_sender", None)  # kafka-python 3.0; the outage test fails if it moves
        if sender is not None:
            sender.force_close()
            sender.join(timeout_s)
        with contextlib.suppress(KafkaError):
            producer.close(timeout=0)


def publish(producer: KafkaProducer, kafka: KafkaSettings, envelopes: Iterable[Envelope]) -> Delivery:
    """Send every envelope keyed by city id, then wait for each broker acknowledgement.

    Raises ``DeliveryError`` (with the delivered count) unless every message was confirmed.
    """
    result = Delivery()
    pending = []
    deadline = None
    try:
        for env in envelopes:  # a send blocks (up to max_block_ms) while the producer's buffer is full
            pending.append(producer.send(kafka.topic, key=env.city_id.encode(), value=env.to_bytes()))
        # one budget for all acknowledgements, not one each, counted from the last send: a backfill's sends take
        # longer than the budget, and were once counted in it (a million messages, all delivered, "failed")
        deadline = time.monotonic() + kafka.delivery_timeout_s
        producer.flush(timeout=max(0.0, deadline - time.monotonic()))
    except KafkaError as exc:
        result.errors.append(type(exc).__name__)
    deadline = deadline or time.monotonic() + kafka.delivery_timeout_s
    for future in pending:
        try:
            meta = future.get(timeout=max(0.0, deadline - time.monotonic()))
        except KafkaError as exc:
            result.failed += 1
            if len(result.errors) < 5:
                result.errors.append(type(exc).__name__)
            continue
        result.note(meta.partition, meta.offset)
    missing = len(pending) - result.delivered - result.failed
    if result.failed or result.errors or missing:
        raise DeliveryError(
            f"Kafka confirmed {result.delivered} of {len(pending)} messages "
            f"({', '.join(sorted(set(result.errors))) or 'no acknowledgement'})",
            hint="the broker may be down; rerun: event ids are deterministic, Silver deduplicates",
        )
    return result
