"""Bronze stage: Kafka -> raw Parquet on S3, exactly once under crashes.

How exactly-once holds (a ``kill -9`` at any point, then a restart):

* Every flush of a partition covers an offset range that starts at the group's committed offset and never crosses
  a multiple of ``bronze.chunk_records``. Within a range, the valid messages of each event date go to one object
  keyed by topic, date, partition and the first offset of that date in the range; invalid ones go to one
  dead-letter object keyed the same way. (A rerun's ranges start at the same offset but may end elsewhere; the
  first message of a date in a crashed range is still the first of that date in whichever rerun range holds it,
  so every key the crashed run wrote is written again, with the rerun's rows.)
* Objects are written with single PUTs (atomic), then upserted into ``ops.bronze_manifest``, and only then is the
  offset committed. A rerun after a crash restarts from the same committed offset and so recomputes the same key
  for every object the crashed run wrote: it overwrites, never adds a duplicate.

Two modes: ``drain`` reads up to the end offsets seen at start (and what arrives meanwhile), writes, commits
and exits; ``follow`` runs until stopped, flushing at each block boundary and every ``flush_interval_s``.

The package, one job per module: ``layout`` (object keys), ``encoding`` (pure: records -> Parquet / dead letters),
``manifest`` (``ops.bronze_manifest`` SQL), ``writer`` (PUTs, then manifest rows), ``sink`` (the consume/commit
protocol above), ``workers`` (a drain in processes), ``stage`` (``run`` -> ``StageResult``), ``compaction`` (the
small objects of closed dates merged into one), ``retention``, and ``consumer`` (kafka-python's fetches decoded per
record batch).
"""

from __future__ import annotations

from ingestion.bronze.compaction import compact
from ingestion.bronze.retention import retention
from ingestion.bronze.stage import run

__all__ = ["compact", "retention", "run"]
