"""``ops.bronze_manifest`` and ``ops.deadletter_manifest``: what bronze wrote, for Silver to find new objects and for
retention to select old ones — without listing the bucket.

Invariant: a manifest row is upserted after its object's PUT succeeded and before the partition's offset is
committed; an object rewritten with other content (another ETag) is marked unprocessed again.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from psycopg import sql

from ingestion.bronze.layout import Written

_BRONZE = """insert into {t} (object_key, topic, kafka_partition, start_offset, end_offset, row_count,
       observed_hour, last_observed_hour, etag, bytes, written_at, run_id)
   values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
   on conflict (object_key) do update set
       end_offset = excluded.end_offset, row_count = excluded.row_count, observed_hour = excluded.observed_hour,
       last_observed_hour = excluded.last_observed_hour, etag = excluded.etag,
       bytes = excluded.bytes, written_at = excluded.written_at, run_id = excluded.run_id,
       silver_processed_at = case when {t}.etag is distinct from excluded.etag
                                  then null else {t}.silver_processed_at end"""
_DEAD = """insert into {t} (object_key, topic, kafka_partition, start_offset, row_count, reasons, written_at, run_id)
   values (%s, %s, %s, %s, %s, %s, %s, %s)
   on conflict (object_key) do update set row_count = excluded.row_count, reasons = excluded.reasons,
       written_at = excluded.written_at, run_id = excluded.run_id"""


def record(
    conn: Any, ops_schema: str, topic: str, run_id: str, written: list[Written], written_at: dt.datetime
) -> None:
    """Upsert the rows of one write in one transaction (one pipelined round trip per batch)."""
    bronze_rows = [
        (
            w.key,
            topic,
            w.partition,
            w.start_offset,
            w.end_offset,
            w.rows,
            w.hour,
            w.last_hour or w.hour,
            w.etag,
            w.size,
            written_at,
            run_id,
        )
        for w in written
        if w.hour is not None
    ]
    dead_rows = [
        (w.key, topic, w.partition, w.start_offset, w.rows, json.dumps(w.reasons), written_at, run_id)
        for w in written
        if w.hour is None
    ]
    with conn.transaction(), conn.cursor() as cur:
        for template, table, rows in (
            (_BRONZE, "bronze_manifest", bronze_rows),
            (_DEAD, "deadletter_manifest", dead_rows),
        ):
            if rows:
                cur.executemany(sql.SQL(template).format(t=sql.Identifier(ops_schema, table)), rows)


def written_before(conn: Any, ops_schema: str, cutoff: dt.datetime) -> list[tuple[str, bool]]:
    """(object key, processed by Silver) of every bronze object written before ``cutoff``."""
    query = sql.SQL(
        "select object_key, silver_processed_at is not null from {} where written_at < %s order by object_key"
    ).format(sql.Identifier(ops_schema, "bronze_manifest"))
    return [(key, bool(done)) for key, done in conn.execute(query, (cutoff,))]


def forget(conn: Any, ops_schema: str, keys: list[str]) -> None:
    conn.execute(
        sql.SQL("delete from {} where object_key = any(%s)").format(sql.Identifier(ops_schema, "bronze_manifest")),
        (keys,),
    )
