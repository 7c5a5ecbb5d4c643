"""Bronze compaction: each closed date's small objects become one; Silver never sees a row twice nor misses one."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from ingestion import bronze, ingest
from ingestion.bronze.compaction import maintenance_lock
from ingestion.envelope import Envelope
from spark_jobs import silver
from tests.support import (
    derive,
    envelope_bytes,
    live_bronze,
    manifest_total,
    mark_processed,
    publish_raw,
    query,
)
from weatherpipe.errors import TransientError
from weatherpipe.resources import Resources
from weatherpipe.settings import Settings
from weatherpipe.storage import ObjectStore

DAY = 24


def _small_objects(settings: Settings) -> Settings:
    """A sink that cuts a range every 4 messages: many small objects per date, as an hourly trickle leaves them."""
    return derive(settings, bronze={"chunk_records": 4, "flush_records": 4})


def _by_date(settings: Settings) -> Counter[str]:
    live = query(settings, "select observed_hour from {o}.bronze_manifest where retired_at is null")
    return Counter(f"{first.astimezone(dt.UTC):%Y-%m-%d}" for (first,) in live)


def _bucket_keys(settings: Settings) -> set[str]:
    return {o.key for o in ObjectStore(settings.s3).list(settings.s3.bronze_prefix + "/")}


def _assert_each_event_once(settings: Settings, total: int) -> dict[str, list[dict[str, Any]]]:
    live = live_bronze(settings)
    ids = Counter(r["event_id"] for rows in live.values() for r in rows)
    assert sum(ids.values()) == total and max(ids.values()) == 1
    assert manifest_total(settings) == total
    return live


def test_compaction_merges_each_closed_date_into_one_object(settings: Settings) -> None:
    small = _small_objects(settings)
    now = dt.datetime.now(dt.UTC)
    today = [
        Envelope.build(source="replay", city_id="nyc-jfk", observed_at=now - dt.timedelta(minutes=i), run_id="t",
                       payload={"i": i}).to_bytes()
        for i in range(5)
    ]  # fmt: skip
    publish_raw(small, [envelope_bytes(i, hour_offset=(i % 3) * DAY + i % 5) for i in range(60)] + today)
    bronze.run(small)
    before = _by_date(small)
    assert sorted(before)[:3] == ["2013-03-01", "2013-03-02", "2013-03-03"]
    assert min(before[d] for d in sorted(before)[:3]) > 1  # several small objects per date

    unprocessed = bronze.compact(small)  # Silver has processed nothing: nothing may be merged
    assert unprocessed.metrics.dates == 0 and _by_date(small) == before

    mark_processed(small)
    dry = bronze.compact(small, dry_run=True)
    assert sorted(dry.metrics.per_date) == ["2013-03-01", "2013-03-02", "2013-03-03"]  # today's date is still open
    assert _by_date(small) == before

    result = bronze.compact(small)
    assert result.status == "success"
    m = result.metrics
    assert m.dates == 3 and m.objects_merged == sum(before[d] for d in sorted(before)[:3])
    assert result.rows_in == result.rows_out == 60 and len(result.objects) == 3
    after = _by_date(small)
    assert [after[d] for d in sorted(after)[:3]] == [1, 1, 1] and after[f"{now:%Y-%m-%d}"] == before[f"{now:%Y-%m-%d}"]
    live = _assert_each_event_once(small, 65)
    for key in result.objects:
        times = [r["observed_at"] for r in live[key]]
        assert "/compacted-" in key and times == sorted(times)
    merged = query(
        small,
        "select bool_and(silver_processed_at is not null), max(written_at) from {o}.bronze_manifest "
        "where object_key = any(%s)",
        (result.objects,),
    )[0]
    newest_input = query(small, "select max(written_at) from {o}.bronze_manifest where replaced_by is not null")[0][0]
    assert merged == (True, newest_input)  # retention ages a merged object as bronze wrote its rows
    assert len(_bucket_keys(small)) == m.objects_merged + m.live_objects  # retired objects wait out their grace

    again = bronze.compact(small)  # nothing new: merges nothing, and the grace period is not over
    assert again.metrics.dates == 0 and again.metrics.retired_deleted == 0
    swept = bronze.compact(small, grace_s=0)
    assert swept.metrics.retired_deleted == m.objects_merged
    assert _bucket_keys(small) == set(live)

    publish_raw(small, [envelope_bytes(1000, hour_offset=DAY + 7)])  # a late event for a compacted date
    bronze.run(small)
    assert bronze.compact(small).metrics.dates == 0  # not processed yet: left alone
    mark_processed(small)
    late = bronze.compact(small, grace_s=0)
    assert late.metrics.dates == 1 and late.metrics.objects_merged == 2
    assert _by_date(small)["2013-03-02"] == 1
    _assert_each_event_once(small, 66)
    assert _bucket_keys(small) == set(live_bronze(small))


def test_objects_whose_offsets_are_not_committed_are_not_merged(settings: Settings) -> None:
    """The sink may still write a range above its committed offset again: such objects wait."""
    small = _small_objects(settings)
    publish_raw(small, [envelope_bytes(i) for i in range(12)])
    bronze.run(small)
    mark_processed(small)
    consumer = KafkaConsumer(bootstrap_servers=small.kafka.bootstrap_servers, group_id=small.kafka.consumer_group)
    try:
        consumer.commit({TopicPartition(small.kafka.topic, p): OffsetAndMetadata(0, "", -1) for p in range(3)})
    finally:
        consumer.close(autocommit=False)
    assert bronze.compact(small).metrics.dates == 0
    bronze.run(small)  # reads the 12 messages again from offset 0: the same keys, rewritten
    assert bronze.compact(small).metrics.dates == 0  # rewritten objects are unprocessed
    mark_processed(small)
    assert bronze.compact(small).metrics.dates == 1
    _assert_each_event_once(small, 12)


def test_one_bronze_maintenance_job_at_a_time(settings: Settings) -> None:
    with maintenance_lock(Resources(settings)):
        with pytest.raises(TransientError, match="maintenance"):
            bronze.compact(settings)
        with pytest.raises(TransientError, match="maintenance"):
            bronze.retention(settings, days=30)


def test_silver_never_reads_a_row_twice_nor_misses_one_across_compaction(settings: Settings, spark: Any) -> None:
    start, end = dt.datetime(2013, 2, 11, tzinfo=dt.UTC), dt.datetime(2013, 2, 14, tzinfo=dt.UTC)
    small = derive(_small_objects(settings), bronze={"chunk_records": 16, "flush_records": 16})
    published = ingest.run(small, source="replay", city_ids=["nyc-jfk", "nyc-lga"], start=start, end=end)
    first = silver.run(small, spark=spark, start=start, end=end)
    assert first.rows_in == 0  # bronze has not run
    bronze.run(small)
    loaded = silver.run(small, spark=spark, start=start, end=end)
    assert loaded.rows_in == published.rows_out
    staged = query(small, "select md5(string_agg(t::text, '|' order by t::text)) from {s}.weather_observations t")

    compacted = bronze.compact(small, grace_s=0)
    assert compacted.metrics.dates == 3 and compacted.rows_out == published.rows_out
    assert silver.run(small, spark=spark, start=start, end=end).rows_in == 0  # nothing new
    again = silver.run(small, spark=spark, start=start, end=end, reprocess=True)  # on purpose: merged objects only
    assert again.rows_in == published.rows_out and sorted(again.objects) == sorted(compacted.objects)
    assert again.rows_out == 0
    assert query(small, "select md5(string_agg(t::text, '|' order by t::text)) from {s}.weather_observations t") == (
        staged
    )

    day = start + dt.timedelta(days=1)
    refetch = ingest.run(small, source="replay", city_ids=["nyc-jfk"], start=day, end=day + dt.timedelta(days=1))
    bronze.run(small)
    rerun = silver.run(small, spark=spark, start=day, end=day + dt.timedelta(days=1))
    assert rerun.rows_in == refetch.rows_out  # only what the re-fetch published, not the compacted day
