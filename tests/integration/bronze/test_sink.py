"""Bronze: Kafka -> Parquet on S3, exactly once, with dead letters, late events and retention."""

from __future__ import annotations

import datetime as dt
import json

from ingestion import bronze, ingest
from tests.support import bronze_rows, deadletters, envelope_bytes, manifest_rows, publish_raw, query
from weatherpipe.settings import Settings

T0 = dt.datetime(2013, 3, 1, 0, tzinfo=dt.UTC)


def test_n_published_is_n_in_bronze_partitioned_by_event_date(settings: Settings) -> None:
    published = ingest.run(
        settings, source="replay", start=T0, end=T0 + dt.timedelta(days=2), city_ids=["nyc-jfk", "nyc-lga", "nyc-ewr"]
    )
    result = bronze.run(settings)
    assert result.status == "success"
    assert result.rows_in == result.rows_out == published.rows_out > 100
    rows = bronze_rows(settings)
    assert len(rows) == published.rows_out
    assert len({r["event_id"] for r in rows}) == len(rows)
    for r in rows:  # every row sits in the partition of its own event date
        assert f"/observed_date={r['observed_at']:%Y-%m-%d}/part-" in r["_key"]
        assert r["kafka_topic"] == settings.kafka.topic and r["bronze_written_at"] is not None
    sample = next(r for r in rows if r["city_id"] == "nyc-ewr")
    assert json.loads(sample["payload"])["origin"] == "EWR"  # raw payload as received
    manifest = manifest_rows(settings)
    assert sorted(k for k, _, _ in manifest) == sorted(result.objects) == sorted({r["_key"] for r in rows})
    assert sum(n for _, n, _ in manifest) == len(rows)
    # sized by data, not by the clock: one object per event date and partition (two days, three cities), where one
    # per event hour made 48 per city
    assert len(manifest) <= 2 * settings.kafka.partitions
    spans = query(settings, "select observed_hour, last_observed_hour from {o}.bronze_manifest")
    assert all(first.date() == last.date() and first <= last for first, last in spans)
    assert {first for first, _ in spans} <= {T0, T0 + dt.timedelta(days=1)}
    committed = sum(v["to"] - v["from"] for v in result.offsets.values())
    assert committed == published.rows_out

    again = bronze.run(settings)  # nothing new: writes nothing
    assert (again.rows_in, again.rows_out, again.objects) == (0, 0, [])


def test_drain_terminates_on_an_idle_topic(settings: Settings) -> None:
    """A drain of an empty topic returns (a hang would trip the suite's timeout) having written nothing."""
    result = bronze.run(settings)
    assert result.rows_in == 0 and result.objects == []
    assert result.status == "success"


def test_bad_messages_go_to_deadletter_with_reason_and_coordinates(settings: Settings) -> None:
    good = [envelope_bytes(i) for i in range(5)]
    wrong_version = json.loads(envelope_bytes(99))
    wrong_version["schema_version"] = 2
    missing = json.loads(envelope_bytes(98))
    del missing["observed_at"]
    bad: list[bytes | None] = [
        b"not json at all",
        b"\xff\xfe\x00binary",
        json.dumps(wrong_version).encode(),
        json.dumps(missing).encode(),
        b"[]",
        b'{"schema_version": 1}',
        None,
    ]
    publish_raw(settings, [*good[:3], *bad, *good[3:]])
    result = bronze.run(settings)
    assert result.status == "partial"
    assert (result.rows_in, result.rows_out, result.rows_rejected) == (12, 5, 7)
    dead = deadletters(settings)
    assert len(dead) == 7
    by_value = {d["value"]: d for d in dead}
    assert by_value["not json at all"]["reason"].startswith("invalid JSON")
    assert "schema_version" in by_value[json.dumps(wrong_version)]["reason"]
    assert "observed_at" in by_value[json.dumps(missing)]["reason"]
    assert any(d["value_encoding"] == "base64" for d in dead)
    assert any("tombstone" in d["reason"] for d in dead)
    assert all({"topic", "partition", "offset"} <= set(d) for d in dead)
    assert len({(d["partition"], d["offset"]) for d in dead}) == 7
    assert sum(result.metrics.deadletter_reasons.values()) == 7


def test_late_event_lands_in_its_own_date(settings: Settings) -> None:
    publish_raw(
        settings,
        [envelope_bytes(1, hour_offset=5), envelope_bytes(2, hour_offset=-48), envelope_bytes(3, hour_offset=5)],
    )
    bronze.run(settings)
    keys = sorted({r["_key"] for r in bronze_rows(settings)})
    assert len(keys) == 2
    assert any("/observed_date=2013-02-27/" in k for k in keys)


def _mark_processed(settings: Settings, *keys: str) -> None:
    query(
        settings, "update {o}.bronze_manifest set silver_processed_at = now() where object_key = any(%s)", (list(keys),)
    )


def test_retention_keeps_a_backfill_of_old_events_it_just_wrote(settings: Settings) -> None:
    """Age is when bronze wrote the data, never the event time: a 2013 backfill loaded today stays."""
    publish_raw(settings, [envelope_bytes(1, hour_offset=0), envelope_bytes(2, hour_offset=24 * 40)])
    written = bronze.run(settings).objects
    _mark_processed(settings, *written)
    kept = bronze.retention(settings, days=30)
    assert kept.objects == [] and kept.rows_out == 0
    assert len(bronze_rows(settings)) == 2 and len(manifest_rows(settings)) == 2


def test_retention_deletes_only_what_silver_processed_unless_forced(settings: Settings) -> None:
    publish_raw(settings, [envelope_bytes(1, hour_offset=0), envelope_bytes(2, hour_offset=48)])  # two dates
    processed, pending = sorted(bronze.run(settings).objects)
    _mark_processed(settings, processed)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)  # both objects are now older than 30 days
    dry = bronze.retention(settings, days=30, dry_run=True, now=later)
    assert dry.objects == [processed] and dry.metrics.unprocessed_kept == 1
    assert len(bronze_rows(settings)) == 2 and len(manifest_rows(settings)) == 2
    real = bronze.retention(settings, days=30, now=later)
    assert real.objects == [processed] and real.rows_out == 1
    assert [r["_key"] for r in bronze_rows(settings)] == [pending] and len(manifest_rows(settings)) == 1
    forced = bronze.retention(settings, days=30, force=True, now=later)
    assert forced.objects == [pending] and forced.metrics.unprocessed_deleted == 1
    assert bronze_rows(settings) == [] and manifest_rows(settings) == []
