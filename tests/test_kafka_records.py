"""The bronze sink's lean record path decodes exactly what kafka-python decodes — and is the path in use."""

from __future__ import annotations

import struct
import types

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from ingestion.kafka_records import Message, decode_batch, lean_records
from weatherpipe.kafka import ensure_topic
from weatherpipe.settings import Settings

Row = tuple[int, int, int | None, bytes | None, bytes | None]


def _batch(records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]], codec: int = 0) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 24,
    )
    for i, (key, value, headers) in enumerate(records):
        # timestamps far apart and offsets beyond one varint byte exercise multi-byte varints
        builder.append(i * 70, timestamp=1_700_000_000_000 + i * 99_991, key=key, value=value, headers=headers)
    return bytes(builder.build())


def _stock(raw: bytes) -> list[Row]:
    return [(0, r.offset, r.timestamp, r.key, r.value) for r in DefaultRecordBatch(raw)]


RECORDS = [
    (b"station-1", b'{"a": 1}', []),
    (None, b"x" * 300, []),  # a value longer than one varint byte of length
    (b"k", None, []),  # tombstone
    (b"", b"", [("trace", b"abc"), ("empty", None)]),  # headers are skipped, not returned
    (b"\xff\x00", "é€😀".encode(), [("h", b"1" * 200)]),
]


@pytest.mark.parametrize("codec", [DefaultRecordBatch.CODEC_NONE, DefaultRecordBatch.CODEC_GZIP])
def test_decode_batch_equals_kafka_python(codec: int) -> None:
    raw = _batch(RECORDS * 40, codec)
    rows = decode_batch(DefaultRecordBatch(raw), 0)
    assert [tuple(r) for r in rows] == _stock(raw)
    assert all(type(r) is Message for r in rows)
    assert rows[3].key == b"" and rows[2].value is None and rows[1].key is None


def test_decode_batch_rejects_corrupt_bytes() -> None:
    raw = bytearray(_batch(RECORDS))
    truncated = DefaultRecordBatch(bytes(raw[:-40]))
    with pytest.raises(CorruptRecordError, match="truncated"):
        decode_batch(truncated, 0)
    # a record that declares one byte more than it holds: the next record's bytes are miscounted
    header = DefaultRecordBatch.HEADER_STRUCT.size
    first_length = raw[header]  # zig-zag varint of the first record's length, one byte here
    raw[header] = first_length + 2
    with pytest.raises(CorruptRecordError):
        decode_batch(DefaultRecordBatch(bytes(raw)), 0)


def test_decode_batch_uses_log_append_time_when_the_broker_set_it() -> None:
    raw = bytearray(_batch(RECORDS))
    attributes_at = 8 + 4 + 4 + 1 + 4  # base offset, length, leader epoch, magic, crc
    (attributes,) = struct.unpack_from(">h", raw, attributes_at)
    struct.pack_into(">h", raw, attributes_at, attributes | DefaultRecordBatch.TIMESTAMP_TYPE_MASK)
    batch = DefaultRecordBatch(bytes(raw))
    assert {r.timestamp for r in decode_batch(batch, 0)} == {batch.max_timestamp}


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
        for i, (key, value, headers) in enumerate(RECORDS * 60):
            sendable = [(name, v if v is not None else b"") for name, v in headers]  # the producer wants bytes
            producer.send(settings.kafka.topic, key=key, value=value, headers=sendable, partition=i % 3)
        producer.flush()
        producer.close()
    total = len(RECORDS) * 120
    stock, stock_end = _consume(settings, False, {}, total)
    assert len(stock) == total
    assert _consume(settings, True, {}, total) == (stock, stock_end)
    middle = {0: 37, 1: 101, 2: 3}  # inside batches: the records before each start offset are not returned
    from_middle = _consume(settings, True, middle, total - sum(middle.values()))
    assert from_middle == _consume(settings, False, middle, total - sum(middle.values()))
    assert min(o for p, o, *_ in from_middle[0] if p == 0) == 37


def test_an_unknown_kafka_python_keeps_the_standard_path(caplog: pytest.LogCaptureFixture) -> None:
    class NotAKafkaPythonConsumer:
        _fetcher = types.SimpleNamespace()  # would accept a swapped parser: the assertion below can fail

    consumer = NotAKafkaPythonConsumer()
    assert lean_records(consumer) is False  # type: ignore[arg-type]
    assert consumer._fetcher is not None and not hasattr(consumer._fetcher, "PartitionRecords")
    assert "standard consumer path" in caplog.text
