"""Where bronze objects live: deterministic keys (topic, partition, event hour, first offset), and what a write
produced. A rerun after a crash recomputes the same key for the same messages, so it overwrites, never adds.
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
    hour: dt.datetime | None  # None for dead letters
    etag: str = ""
    size: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def bronze_key(settings: Settings, topic: str, partition: int, hour: dt.datetime, first_offset: int) -> str:
    return (
        f"{settings.s3.bronze_prefix}/topic={topic}/observed_date={hour:%Y-%m-%d}/observed_hour={hour:%H}/"
        f"part-{partition:03d}-{first_offset:020d}.parquet"
    )


def deadletter_key(settings: Settings, topic: str, partition: int, first_offset: int) -> str:
    return f"{settings.s3.deadletter_prefix}/topic={topic}/partition={partition:03d}/dl-{first_offset:020d}.jsonl"
