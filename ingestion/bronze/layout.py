"""Where bronze objects live: deterministic keys, and what a write produced.

A sink's object is keyed by topic, event date, Kafka partition and the offset of its first message: a rerun after a
crash recomputes the same key for the same messages, so it overwrites, never adds. Objects are partitioned by event
*date* (the hour is a column): an object holds every message of one date in one offset range, so a backfill writes
one object per date and range, not one per hour. A compacted object (``compaction``) is keyed by its date and a
digest of the objects it replaces.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from weatherpipe.settings import Settings


@dataclass
class Written:
    key: str
    partition: int
    start_offset: int
    end_offset: int
    rows: int
    hour: dt.datetime | None  # the first event hour it holds; None for dead letters
    last_hour: dt.datetime | None = None  # the last event hour it holds
    etag: str = ""
    size: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def date_prefix(settings: Settings, topic: str, day: dt.date) -> str:
    return f"{settings.s3.bronze_prefix}/topic={topic}/observed_date={day:%Y-%m-%d}/"


def bronze_key(settings: Settings, topic: str, partition: int, day: dt.date, first_offset: int) -> str:
    return f"{date_prefix(settings, topic, day)}part-{partition:03d}-{first_offset:020d}.parquet"


def compacted_key(settings: Settings, topic: str, day: dt.date, digest: str) -> str:
    return f"{date_prefix(settings, topic, day)}compacted-{digest}.parquet"


def deadletter_key(settings: Settings, topic: str, partition: int, first_offset: int) -> str:
    return f"{settings.s3.deadletter_prefix}/topic={topic}/partition={partition:03d}/dl-{first_offset:020d}.jsonl"
