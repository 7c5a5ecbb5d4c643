"""A lean record path for the bronze sink's consumer.

kafka-python turns every record of a fetched batch into a ``ConsumerRecord`` through half a dozen Python calls
(a varint decoder per field, properties, deserializers, header sizes, a 13-field tuple): that is nearly all the
time of a bare consume loop. The sink keeps five fields. ``lean_records`` makes a consumer decode each v2 batch in
one loop into :class:`Message` tuples — reading the 60,000-message bench topic took half the CPU (0.33–0.40 s
against 0.59–0.95 s); everything else — fetching, fetch sessions, leader changes, offset resets, CRC checks,
decompression, positions — stays kafka-python's.

It replaces the fetcher's per-partition record parser, a kafka-python internal, so it is checked before use: on a
kafka-python whose internals differ it logs one warning and leaves the consumer as it was (the sink works the same,
only slower). ``tests/integration/bronze/test_lean_consumer.py`` reads the same topic both ways and asserts the
records are identical and that the lean path is the one in use, so an upgrade that disables it fails CI instead
of passing slowly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, NamedTuple

import kafka
from kafka import KafkaConsumer
from kafka.consumer.fetcher import Fetcher
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecordBatch

log = logging.getLogger(__name__)


class Message(NamedTuple):
    """What the sink keeps of a Kafka record (the lean path yields these; tests and tools build them by hand)."""

    partition: int
    offset: int
    timestamp: int | None
    key: bytes | None
    value: bytes | None


_LOG_APPEND_TIME = DefaultRecordBatch.LOG_APPEND_TIME


def decode_batch(batch: DefaultRecordBatch, partition: int) -> list[Message]:
    """Every record of a (not yet iterated) v2 batch, in one pass over its bytes.

    Record layout (KIP-98): length, attributes, timestamp delta, offset delta, key, value, headers — integers as
    zig-zag varints, byte strings as a varint length (-1 for null) and the bytes. Headers are checked and skipped.
    The varints of the six fixed fields are decoded inline rather than by ``_read_varint``: this loop is the sink's
    hottest, and with a call per field the bronze bench ratio fell from a median of 1.18 to 1.04 over our runs."""
    iter(batch)  # kafka-python decompresses the records in place (gzip/snappy/lz4/zstd, as it supports them)
    buf = bytes(batch._buffer)  # slices of bytes are the values themselves: one copy, not two, per field
    pos: int = batch._pos
    base_offset = batch.base_offset
    log_append = batch.timestamp_type == _LOG_APPEND_TIME
    first_ts, max_ts = batch.first_timestamp, batch.max_timestamp
    out: list[Message] = []
    append, new = out.append, tuple.__new__  # a NamedTuple's own __new__ is a Python call per record
    try:
        for _ in range(batch.records_count):
            values: list[Any] = []
            start = -1
            for field_no in range(6):  # length, attributes, timestamp delta, offset delta, key, value
                shift = raw = 0
                while True:
                    byte = buf[pos]
                    pos += 1
                    raw |= (byte & 0x7F) << shift
                    if byte < 0x80:
                        break
                    shift += 7
                number = (raw >> 1) ^ -(raw & 1)
                if field_no < 4:
                    values.append(number)
                    if field_no == 0:
                        start = pos  # the declared length counts the bytes from here
                elif number < 0:
                    values.append(None)
                else:
                    end = pos + number
                    if end > len(buf):
                        raise IndexError
                    values.append(buf[pos:end])
                    pos = end
            length, _attributes, ts_delta, offset_delta, key, value = values
            if buf[pos] == 0:  # no headers (a one-byte zero count): the usual case
                pos += 1
            else:
                pos = _skip_headers(buf, pos)
            if pos - start != length:
                raise CorruptRecordError(
                    f"record at offset {base_offset + offset_delta}: {length} bytes declared, {pos - start} read"
                )
            timestamp = max_ts if log_append else first_ts + ts_delta
            append(new(Message, (partition, base_offset + offset_delta, timestamp, key, value)))
    except IndexError:  # a varint or a length ran past the end of the batch
        pos = len(buf) + 1
    if pos > len(buf):
        raise CorruptRecordError(f"record batch at offset {base_offset} is truncated")
    if pos != len(buf):
        raise CorruptRecordError(f"record batch at offset {base_offset}: {len(buf) - pos} bytes after its records")
    return out


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = res = 0
    while True:
        byte = buf[pos]
        pos += 1
        res |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (res >> 1) ^ -(res & 1), pos
        shift += 7


def _skip_headers(buf: bytes, pos: int) -> int:
    count, pos = _read_varint(buf, pos)
    if count < 0:
        raise CorruptRecordError(f"invalid number of record headers {count}")
    for _ in range(count):
        size, pos = _read_varint(buf, pos)
        if size < 0:
            raise CorruptRecordError(f"invalid negative header key size {size}")
        pos += size
        size, pos = _read_varint(buf, pos)
        pos += max(size, 0)
    return pos


class _LeanPartitionRecords(Fetcher.PartitionRecords):  # type: ignore[misc]
    """kafka-python's parser of one partition's fetched records, with the per-record work done by ``decode_batch``.

    Same contract as the parser it replaces: records before the fetch offset are skipped by the base class,
    ``next_fetch_offset`` follows each record handed out, control batches are passed over, and the position ends
    at the last batch's next offset. Kept to what the sink's consumer uses: no deserializers, read-uncommitted."""

    def _unpack_records(self, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any) -> Iterator[Any]:
        if key_deserializer is not None or value_deserializer is not None or int(self.isolation_level) != 0:
            yield from super()._unpack_records(tp, records, key_deserializer, value_deserializer)
            return
        batch = records.next_batch()
        last_batch = None
        while batch is not None:
            last_batch = batch
            if self.check_crcs and not batch.validate_crc():
                raise CorruptRecordError(
                    f"Record batch for partition {tp} at offset {batch.base_offset} failed crc check"
                )
            if batch.magic == 2:
                self.leader_epoch = batch.leader_epoch
                if batch.is_control_batch:
                    self.next_fetch_offset = batch.next_offset
                    batch = records.next_batch()
                    continue
                rows = decode_batch(batch, tp.partition)
                self.bytes_read += batch.size_in_bytes
            else:  # message format v0/v1 (brokers before 0.11): rare, kafka-python's own iteration
                rows = []
                for record in batch:
                    if self.check_crcs and not record.validate_crc():
                        raise CorruptRecordError(
                            f"Record for partition {tp} at offset {record.offset} failed crc check"
                        )
                    rows.append(Message(tp.partition, record.offset, record.timestamp, record.key, record.value))
            self.records_read += len(rows)
            for row in rows:
                self.next_fetch_offset = row.offset + 1
                yield row
            batch = records.next_batch()
        if last_batch is not None and last_batch.magic == 2:
            self.next_fetch_offset = last_batch.next_offset
        self.drain()


def _compatible(consumer: KafkaConsumer) -> bool:
    fetcher = getattr(consumer, "_fetcher", None)
    slots = getattr(DefaultRecordBatch, "__slots__", ())
    return (
        isinstance(fetcher, Fetcher)
        and {"_buffer", "_pos"} <= set(slots)
        and callable(getattr(Fetcher.PartitionRecords, "_unpack_records", None))
        and hasattr(Fetcher.PartitionRecords, "take")
    )


def lean_records(consumer: KafkaConsumer) -> bool:
    """Make ``consumer.poll`` yield :class:`Message` tuples decoded by ``decode_batch``; False (and one warning) if
    this kafka-python's internals are not the ones it was written for."""
    if not _compatible(consumer):
        log.warning("kafka-python %s: lean record decoding unavailable, using the standard consumer path", _version())
        return False
    consumer._fetcher.PartitionRecords = _LeanPartitionRecords
    return True


def _version() -> str:
    return getattr(kafka, "__version__", "?")
