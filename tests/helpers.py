"""Test helpers that read back what the pipeline wrote, through the real services."""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition

from weatherpipe.settings import Settings


def consume_all(settings: Settings, expected: int | None = None, timeout_s: float = 20.0) -> list[tuple[bytes, bytes]]:
    """Every (key, value) on the test topic, read without a consumer group."""
    k = settings.kafka
    consumer = KafkaConsumer(
        bootstrap_servers=k.bootstrap_servers, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    consumer.assign([TopicPartition(k.topic, p) for p in range(k.partitions)])
    out: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    idle = 0
    while time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=300)
        got = [(r.key, r.value) for records in batch.values() for r in records]
        out.extend(got)
        if expected is not None and len(out) >= expected:
            idle += 1 if not got else 0
            if idle >= 2:
                break
        elif expected is None and not got:
            idle += 1
            if idle >= 4:
                break
        else:
            idle = 0
    consumer.close()
    return out
