"""Bronze: Kafka -> Parquet on S3, exactly once — including under repeated SIGKILLs of the sink."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from ingestion import bronze_sink, stage
from ingestion.bronze_sink import split_ranges
from ingestion.envelope import Envelope
from ingestion.kafka_records import Message
from tests.conftest import ROOT, derive
from tests.helpers import bronze_rows, deadletters, publish_raw
from weatherpipe import db
from weatherpipe.settings import Settings

T0 = dt.datetime(2013, 3, 1, 0, tzinfo=dt.UTC)


def _envelope(i: int, hour_offset: int = 0, city: str = "nyc-jfk") -> bytes:
    observed = T0 + dt.timedelta(hours=hour_offset, minutes=i % 60)
    return Envelope.build(
        source="replay",
        city_id=f"{city}-{i}",
        observed_at=observed,
        run_id="t",
        payload={"i": i, "name": "ünïcode 'x'; drop table"},
    ).to_bytes()


def _manifest(settings: Settings) -> list[tuple]:
    with db.connect(settings.postgres.admin) as conn:
        return conn.execute(
            f'select object_key, row_count, observed_hour from "{settings.postgres.ops_schema}".bronze_manifest '
            "order by object_key"
        ).fetchall()


def test_n_published_is_n_in_bronze_partitioned_by_event_hour(settings: Settings) -> None:
    ingest = stage.run(
        settings, source="replay", start=T0, end=T0 + dt.timedelta(days=2), city_ids=["nyc-jfk", "nyc-lga", "nyc-ewr"]
    )
    result = bronze_sink.run(settings)
    assert result.status == "success"
    assert result.rows_in == result.rows_out == ingest.rows_out > 100
    rows = bronze_rows(settings)
    assert len(rows) == ingest.rows_out
    assert len({r["event_id"] for r in rows}) == len(rows)
    for r in rows:  # every row sits in the partition of its own event hour
        assert f"observed_date={r['observed_at']:%Y-%m-%d}/observed_hour={r['observed_at']:%H}/" in r["_key"]
        assert r["kafka_topic"] == settings.kafka.topic and r["bronze_written_at"] is not None
    sample = next(r for r in rows if r["city_id"] == "nyc-ewr")
    assert json.loads(sample["payload"])["origin"] == "EWR"  # raw payload as received
    manifest = _manifest(settings)
    assert sorted(k for k, _, _ in manifest) == sorted(result.objects) == sorted({r["_key"] for r in rows})
    assert sum(n for _, n, _ in manifest) == len(rows)
    committed = sum(v["to"] - v["from"] for v in result.offsets.values())
    assert committed == ingest.rows_out

    again = bronze_sink.run(settings)  # nothing new: writes nothing
    assert (again.rows_in, again.rows_out, again.objects) == (0, 0, [])


def test_drain_terminates_on_an_idle_topic(settings: Settings) -> None:
    t0 = time.monotonic()
    result = bronze_sink.run(settings)
    assert result.rows_in == 0 and result.objects == []
    assert time.monotonic() - t0 < 15


def test_bad_messages_go_to_deadletter_with_reason_and_coordinates(settings: Settings) -> None:
    good = [_envelope(i) for i in range(5)]
    wrong_version = json.loads(_envelope(99))
    wrong_version["schema_version"] = 2
    missing = json.loads(_envelope(98))
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
    result = bronze_sink.run(settings)
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
    assert sum(result.details["deadletter_reasons"].values()) == 7


def test_late_event_lands_in_its_own_hour(settings: Settings) -> None:
    publish_raw(settings, [_envelope(1, hour_offset=5), _envelope(2, hour_offset=-48), _envelope(3, hour_offset=5)])
    bronze_sink.run(settings)
    keys = sorted({r["_key"] for r in bronze_rows(settings)})
    assert len(keys) == 2
    assert any("observed_date=2013-02-27/observed_hour=00" in k for k in keys)


def test_split_ranges_never_cross_a_block() -> None:
    msgs = [Message(0, o, None, None, b"") for o in range(95, 215)]
    ranges = list(split_ranges(msgs, 50))
    assert [(r[0].offset, r[-1].offset) for r in ranges] == [(95, 99), (100, 149), (150, 199), (200, 214)]


def test_retention_dry_run_then_real(settings: Settings) -> None:
    publish_raw(settings, [_envelope(1, hour_offset=0), _envelope(2, hour_offset=24 * 40)])
    bronze_sink.run(settings)
    now = T0 + dt.timedelta(days=45)
    dry = bronze_sink.retention(settings, days=30, dry_run=True, now=now)
    assert len(dry.objects) == 1 and "observed_date=2013-03-01" in dry.objects[0]
    assert len(bronze_rows(settings)) == 2 and len(_manifest(settings)) == 2
    real = bronze_sink.retention(settings, days=30, now=now)
    assert real.objects == dry.objects and real.rows_out == 1
    assert len(bronze_rows(settings)) == 1 and len(_manifest(settings)) == 1


@pytest.mark.slow
def test_exactly_once_under_repeated_sigkill(settings: Settings) -> None:
    """Kill the sink with SIGKILL at random moments (>= 10 times) while messages flow, restart it each time,
    then assert every message is in bronze exactly once."""
    crashy, env = _sink_env(settings, chunk_records=37, flush_interval_s=0.2, poll_timeout_ms=100)
    total, bad_every = 2400, 97
    values = [b"garbage %d" % i if i % bad_every == 0 else _envelope(i, hour_offset=i % 5) for i in range(total)]
    publish_raw(settings, values[:1])  # create the topic

    def produce() -> None:
        for i in range(1, total, 80):
            publish_raw(settings, values[i : i + 80])
            time.sleep(0.8)

    producer = threading.Thread(target=produce)
    producer.start()
    rng = random.Random(1234)
    kills = 0
    while kills < 12:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ingestion.bronze_sink", "--follow"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(1.5, 4.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    producer.join()
    final = bronze_sink.run(crashy)  # restart once more, in drain mode, to finish the backlog
    assert final.status in {"success", "partial"}
    assert final.rows_in < total // 2, "the killed sinks should have moved most of the stream"
    assert kills >= 10

    _assert_exactly_once(crashy, total, bad_every)


def _sink_processes(topic_env: dict[str, str]) -> list[int]:
    """Live (not zombie) processes running ``ingestion.bronze_sink`` with this test's topic."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if b"ingestion.bronze_sink" not in (proc / "cmdline").read_bytes():
                continue
            if topic_env["WEATHERPIPE_KAFKA__TOPIC"].encode() not in (proc / "environ").read_bytes():
                continue
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_drain_workers_exactly_once_under_repeated_sigkill(settings: Settings) -> None:
    """A drain runs in one worker process per partition. Kill the sink (the parent) with SIGKILL at random moments
    (>= 10 times) while its workers write a backlog: the workers die with it, never writing behind the restarted
    sink, and every message ends up in bronze exactly once."""
    crashy, env = _sink_env(settings, chunk_records=200, flush_records=50, workers=3)
    total, bad_every = 15000, 101  # more than ten interrupted runs can write
    values = [b"garbage %d" % i if i % bad_every == 0 else _envelope(i, hour_offset=i % 7) for i in range(total)]
    publish_raw(settings, values)
    rng = random.Random(4321)
    kills = 0
    while kills < 10:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ingestion.bronze_sink"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(1.2, 2.5))  # the interpreter starts in ~1 s; then the workers write
        if proc.poll() is not None:
            break  # it finished the backlog before the kill
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        deadline = time.monotonic() + 1  # they die with it; an orphan would still be draining seconds later
        while _sink_processes(env) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _sink_processes(env) == [], "a bronze worker outlived its killed parent"
    assert kills >= 10, f"the backlog was drained after {kills} kills: make it larger"
    final = bronze_sink.run(crashy)
    assert final.details["workers"] == 3

    _assert_exactly_once(crashy, total, bad_every)


def _sink_env(settings: Settings, **bronze: object) -> tuple[Settings, dict[str, str]]:
    """Settings for a sink run in a subprocess, and the environment that gives it the same settings."""
    crashy = derive(settings, bronze=bronze)
    env = {
        **os.environ,
        "WEATHERPIPE_KAFKA__TOPIC": crashy.kafka.topic,
        "WEATHERPIPE_KAFKA__CONSUMER_GROUP": crashy.kafka.consumer_group,
        "WEATHERPIPE_S3__BRONZE_PREFIX": crashy.s3.bronze_prefix,
        "WEATHERPIPE_S3__DEADLETTER_PREFIX": crashy.s3.deadletter_prefix,
        "WEATHERPIPE_POSTGRES__OPS_SCHEMA": crashy.postgres.ops_schema,
        "WEATHERPIPE_LOG_LEVEL": "WARNING",
        **{f"WEATHERPIPE_BRONZE__{k.upper()}": str(v) for k, v in bronze.items()},
    }
    return crashy, env


def _assert_exactly_once(crashy: Settings, total: int, bad_every: int) -> None:
    """Every good message in bronze once (by event id and by Kafka coordinates), every bad one dead-lettered
    once, and the manifest agrees."""
    rows = bronze_rows(crashy)
    expected_good = total - len(range(0, total, bad_every))
    assert len(rows) == expected_good, f"{len(rows)} rows for {expected_good} messages"
    assert max(Counter(r["event_id"] for r in rows).values()) == 1
    assert max(Counter((r["kafka_partition"], r["kafka_offset"]) for r in rows).values()) == 1
    dead = deadletters(crashy)
    assert len(dead) == len(range(0, total, bad_every))
    assert len({(d["partition"], d["offset"]) for d in dead}) == len(dead)
    assert sum(n for _, n, _ in _manifest(crashy)) == expected_good
