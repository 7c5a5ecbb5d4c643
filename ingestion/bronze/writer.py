"""Writes one offset range of one partition: every object with a single PUT (atomic), then its manifest rows."""

from __future__ import annotations

import datetime as dt
import io
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pyarrow.parquet as pq

from ingestion.bronze import manifest
from ingestion.bronze.encoding import DICTIONARY, EPOCH, HOUR_US, Record, deadletter_body, micros, parquet_table, parse
from ingestion.bronze.layout import Written, bronze_key, deadletter_key
from ingestion.envelope import Envelope
from weatherpipe import db
from weatherpipe.results import utcnow
from weatherpipe.settings import Settings
from weatherpipe.storage import ObjectStore


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
        by_day: dict[int, list[tuple[Record, Envelope]]] = defaultdict(list)
        span: dict[int, tuple[int, int]] = {}  # day -> (first, last) event hour
        for row in good:
            hour_no = micros(row[1].observed_at) // HOUR_US
            day_no = hour_no // 24
            by_day[day_no].append(row)
            lo, hi = span.get(day_no, (hour_no, hour_no))
            span[day_no] = (min(lo, hour_no), max(hi, hour_no))
        jobs: list[tuple[Written, bytes, str]] = []
        for day_no, rows in sorted(by_day.items()):
            first_hour, last_hour = (EPOCH + dt.timedelta(hours=h) for h in span[day_no])
            first, last = rows[0][0].offset, rows[-1][0].offset
            key = bronze_key(self.settings, self.topic, partition, first_hour.date(), first)
            buf = io.BytesIO()
            pq.write_table(
                parquet_table(self.topic, rows, written_at), buf, compression="zstd", use_dictionary=DICTIONARY
            )
            written = Written(key, partition, first, last, len(rows), first_hour, last_hour)
            jobs.append((written, buf.getvalue(), "application/parquet"))
        if bad:
            key = deadletter_key(self.settings, self.topic, partition, bad[0][0].offset)
            reasons: dict[str, int] = defaultdict(int)
            for _, reason in bad:
                reasons[reason.split(":")[0]] += 1
            written = Written(
                key, partition, bad[0][0].offset, bad[-1][0].offset, len(bad), None, reasons=dict(reasons)
            )
            jobs.append((written, deadletter_body(self.topic, bad), "application/x-ndjson"))
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
        if self._conn is None or self._conn.closed:
            self._conn = db.open_connection(pg, autocommit=True)
        try:
            manifest.record(self._conn, pg.ops_schema, self.topic, self.run_id, written, written_at)
        except psycopg.OperationalError as exc:
            self._conn.close()
            raise db.lost(pg, exc) from None
