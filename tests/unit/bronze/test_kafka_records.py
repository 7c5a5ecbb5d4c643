"""The bronze sink's lean record path decodes exactly what kafka-python decodes."""

from __future__ import annotations

import struct
import types

import pytest
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from ingestion.bronze.consumer import Message, decode_batch, lean_records
from tests.support import SAMPLE_RECORDS

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


@pytest.mark.parametrize("codec", [DefaultRecordBatch.CODEC_NONE, DefaultRecordBatch.CODEC_GZIP])
def test_decode_batch_equals_kafka_python(codec: int) -> None:
    raw = _batch(SAMPLE_RECORDS * 40, codec)
    rows = decode_batch(DefaultRecordBatch(raw), 0)
    assert [tuple(r) for r in rows] == _stock(raw)
    assert all(type(r) is Message for r in rows)
    assert rows[3].key == b"" and rows[2].value is None and rows[1].key is None


def test_decode_batch_rejects_corrupt_bytes() -> None:
    raw = bytearray(_batch(SAMPLE_RECORDS))
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
    raw = bytearray(_batch(SAMPLE_RECORDS))
    attributes_at = 8 + 4 + 4 + 1 + 4  # base offset, length, leader epoch, magic, crc
    (attributes,) = struct.unpack_from(">h", raw, attributes_at)
    struct.pack_into(">h", raw, attributes_at, attributes | DefaultRecordBatch.TIMESTAMP_TYPE_MASK)
    batch = DefaultRecordBatch(bytes(raw))
    assert {r.timestamp for r in decode_batch(batch, 0)} == {batch.max_timestamp}


def test_an_unknown_kafka_python_keeps_the_standard_path(caplog: pytest.LogCaptureFixture) -> None:
    class NotAKafkaPythonConsumer:
        _fetcher = types.SimpleNamespace()  # would accept a swapped parser: the assertion below can fail

    consumer = NotAKafkaPythonConsumer()
    assert lean_records(consumer) is False  # type: ignore[arg-type]
    assert consumer._fetcher is not None and not hasattr(consumer._fetcher, "PartitionRecords")
    assert "standard consumer path" in caplog.text
