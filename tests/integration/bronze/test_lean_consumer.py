"""On the real broker, the lean record path reads what kafka-python reads, and is the path in use."""

from __future__ import annotations

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from ingestion.bronze.consumer import Message, lean_records
from tests.support import SAMPLE_RECORDS
from weatherpipe.kafka import ensure_topic
from weatherpipe.settings import Settings

Row = tuple[int, int, int | None, bytes | None, bytes | None]


def _consume(settings: Settings, lean: bool, start: dict[int, int], expected: int) -> tuple[list[Row], dict[int, int]]:
    """Every record from ``start`` on, sorted, and the end position of each partition."""
    k = settings.kafka
    consumer = KafkaConsumer(bootstrap_servers=k.bootstrap_servers, enable_auto_commit=False, max_poll_records=50)
    if lean:
        assert lean_records(consumer), "the lean record path is not available with this kafka-python"
    partitions = [TopicPartition(k.topic, p) for p in range(k.partitions)]
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek(tp, start.get(tp.partition, 0))
    rows: list[Row] = []
    for _ in range(100):
        for records in consumer.poll(timeout_ms=300).values():
            if lean:
                assert all(type(r) is Message for r in records)
            rows += [(r.partition, r.offset, r.timestamp, r.key, r.value) for r in records]
        if len(rows) >= expected:
            break
    positions = {tp.partition: consumer.position(tp) for tp in partitions}
    consumer.close()
    return sorted(rows), positions


def test_lean_consumer_reads_what_kafka_python_reads(settings: Settings) -> None:
    """Same topic, both paths: every record identical (keys, tombstones, headers, gzip batches, a start in the middle
    of a batch, batches split by max_poll_records) and the same end positions."""
    ensure_topic(settings.kafka)
    for codec in (None, "gzip"):
        producer = KafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap_servers, compression_type=codec, linger_ms=50
        )
        for i, (key, value, headers) in enumerate(SAMPLE_RECORDS * 60):
            sendable = [(name, v if v is not None else b"") for name, v in headers]  # the producer wants bytes
            producer.send(settings.kafka.topic, key=key, value=value, headers=sendable, partition=i % 3)
        producer.flush()
        producer.close()
    total = len(SAMPLE_RECORDS) * 120
    stock, stock_end = _consume(settings, False, {}, total)
    assert len(stock) == total
    assert _consume(settings, True, {}, total) == (stock, stock_end)
    middle = {0: 37, 1: 101, 2: 3}  # inside batches: the records before each start offset are not returned
    from_middle = _consume(settings, True, middle, total - sum(middle.values()))
    assert from_middle == _consume(settings, False, middle, total - sum(middle.values()))
    assert min(o for p, o, *_ in from_middle[0] if p == 0) == 37
