"""The bronze contract, declared once: the Parquet schema the bronze sink writes.

Everything else derives from it: what Silver reads (``bronze_read_schema``: the same columns, every timestamp at
microseconds, plus the object each row came from), Spark's schema for that read (``spark_jobs.schemas.BRONZE``) and
the bronze data source's Arrow cast. Bump ``BRONZE_SCHEMA_VERSION`` with any change; it is written into every
object's metadata.
"""

from __future__ import annotations

import pyarrow as pa

BRONZE_SCHEMA_VERSION = 1
BRONZE = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("schema_version", pa.int32(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("city_id", pa.string(), nullable=False),
        pa.field("observed_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("payload", pa.string(), nullable=False),  # the provider's payload as received (JSON text)
        pa.field("kafka_topic", pa.string(), nullable=False),
        pa.field("kafka_partition", pa.int32(), nullable=False),
        pa.field("kafka_offset", pa.int64(), nullable=False),
        pa.field("kafka_timestamp", pa.timestamp("ms", tz="UTC")),
        pa.field("bronze_written_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ],
    metadata={"weatherpipe.bronze_schema_version": str(BRONZE_SCHEMA_VERSION)},
)
# added by the reader: the object a row came from (lineage down to Silver's rows and quarantine)
BRONZE_OBJECT = pa.field("bronze_object", pa.string(), nullable=False)


def bronze_read_schema() -> pa.Schema:
    """What Silver reads from bronze: the contract's columns, timestamps at microseconds, and ``bronze_object``."""
    fields = [f.with_type(pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(f.type) else f for f in BRONZE]
    return pa.schema([*fields, BRONZE_OBJECT])
