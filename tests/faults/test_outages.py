"""Services that disappear: S3 and Kafka stopped mid-write, then restarted; nothing lost or doubled; a Spark
Connect server that is not there."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ingestion import bronze
from tests.support import (
    NYC,
    assert_bronze_exactly,
    blocked_by,
    derive,
    free_port,
    free_port_block,
    free_s3_port,
    in_thread,
    publish_hours,
    publish_raw,
    run_cli,
    wait_for,
)
from weatherpipe import stack
from weatherpipe.errors import ServiceUnavailable
from weatherpipe.settings import Settings

pytestmark = pytest.mark.slow


START = dt.datetime(2013, 3, 4, tzinfo=dt.UTC)


def test_bronze_survives_s3_outage_and_recovers_exactly_once(settings: Settings) -> None:
    """The S3 endpoint disappears while the sink runs: the stage fails with a clear transient error, commits
    nothing, and a later run writes every message exactly once."""
    from ingestion.envelope import Envelope
    from tests.support import bronze_rows
    from weatherpipe.errors import ServiceUnavailable

    when = dt.datetime(2021, 1, 1, tzinfo=dt.UTC)
    msgs = [
        Envelope.build(
            source="replay", city_id=f"c{i}", observed_at=when + dt.timedelta(hours=i % 3), run_id="t", payload={"i": i}
        ).to_bytes()
        for i in range(30)
    ]
    publish_raw(settings, msgs)
    broken = derive(settings, s3={"endpoint_url": "http://127.0.0.1:9"})
    with pytest.raises(ServiceUnavailable) as err:
        bronze.run(broken)
    assert err.value.transient and "127.0.0.1:9" in str(err.value)
    recovered = bronze.run(settings)
    assert recovered.rows_out == 30
    rows = bronze_rows(settings)
    assert len(rows) == 30 and len({r["event_id"] for r in rows}) == 30


def test_bronze_survives_s3_stopped_mid_write_and_restarted(settings: Settings, tmp_path: Path) -> None:
    """A second S3 store (its own SeaweedFS) is stopped while the sink's workers are writing: the stage fails with
    a clear transient error; once the store is back, the next drain leaves every message in bronze exactly once.

    A lock on the manifest holds the workers right after their first PUTs, so the store stops mid-write on any
    machine: the first objects are in S3 but not yet recorded, most are not written at all."""
    other = derive(
        settings,
        s3={"endpoint_url": f"http://127.0.0.1:{free_s3_port()}"},
        stack={"state_dir": tmp_path / "stack"},
    )
    s3 = stack.S3Service(other)
    total = 6000  # ~2,000 event hours: many objects
    publish_hours(settings, total)
    manifest = f'"{other.postgres.ops_schema}".bronze_manifest'
    try:
        s3.up()
        with psycopg.connect(other.postgres.admin.conninfo()) as blocker:
            blocker.execute(f"lock table {manifest} in share mode")  # a worker's first record waits for it
            thread, out = in_thread(lambda: bronze.run(other))
            wait_for(
                lambda: blocked_by(other, blocker, "%bronze_manifest%") or not thread.is_alive(),
                what="a bronze worker recording its first object",
            )
            assert thread.is_alive(), out
            s3.down()
            blocker.rollback()
        thread.join()
        error = out.get("error")
        assert isinstance(error, ServiceUnavailable) and error.transient, out
        assert other.s3.endpoint_url in str(error) and "Traceback" not in str(error)
        s3.up()
        again = bronze.run(other)
        assert again.status == "success"
        assert_bronze_exactly(other, total)
    finally:
        s3.down()


def _alive(thread_name: str) -> bool:
    return any(t.name == thread_name and t.is_alive() for t in threading.enumerate())


def test_ingest_survives_kafka_stopped_mid_publish_and_restarted(settings: Settings, tmp_path: Path) -> None:
    """A second broker (its own Tansu) is stopped in the middle of an ingest: the stage fails with a clear
    transient error saying how much was confirmed, and leaves no producer thread behind; after a restart,
    re-ingesting the same window (deterministic event ids) leaves every observation in bronze exactly once."""
    from ingestion import ingest
    from ingestion.sources.replay import ReplaySource
    from tests.support import bronze_rows
    from weatherpipe.errors import DeliveryError

    other = derive(
        settings,
        kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}", "request_timeout_ms": 3000, "delivery_timeout_s": 5},
        stack={"state_dir": tmp_path / "stack", "kafka_storage": "memory"},
    )
    kafka = stack.KafkaService(other)
    replay = ReplaySource(other)

    class StopsTheBroker:
        """The replay, which stops the broker after 200 observations (the producer has sent many by then)."""

        name = replay.name

        def fetch(self, cities: list[Any], start: Any, end: Any) -> Any:
            for n, item in enumerate(replay.fetch(cities, start, end)):
                if n == 200:
                    kafka.down()
                yield item

    window = {"city_ids": NYC, "start": START, "end": START + dt.timedelta(days=7)}
    try:
        kafka.up()
        with pytest.raises(DeliveryError) as err:
            ingest.run(other, source="replay", weather_source=StopsTheBroker(), **window)
        assert err.value.transient and str(err.value).startswith("Kafka confirmed ")
        assert "Traceback" not in str(err.value)
        # the failed ingest closed its producer: no network thread is left retrying the stopped broker
        thread = "weatherpipe-ingest-network-thread"
        wait_for(lambda: not _alive(thread), what="the producer's thread to end", hang_guard_s=120)
        kafka.up()  # memory storage: the restarted broker is empty, the window is ingested again
        again = ingest.run(other, source="replay", **window)
        assert again.status == "success" and again.rows_out == again.rows_in > 400
        drained = bronze.run(other)
        rows = bronze_rows(other)
        assert drained.rows_out == len(rows) == again.rows_out
        assert len({r["event_id"] for r in rows}) == len(rows)
    finally:
        kafka.down()


def test_silver_without_its_spark_connect_server_is_one_transient_line(settings: Settings) -> None:
    """Bronze has work for Silver, but nothing answers at ``spark.remote``: after a bounded retry the CLI prints one
    error line (after the stage's result line) that names the endpoint and the fix, and exits as a temporary
    failure (75)."""
    publish_hours(settings, 6)
    assert bronze.run(settings).rows_out == 6
    port = free_port_block(1)
    env = {
        "WEATHERPIPE_SPARK__REMOTE": f"sc://127.0.0.1:{port}",
        "WEATHERPIPE_KAFKA__TOPIC": settings.kafka.topic,
        "WEATHERPIPE_POSTGRES__STAGING_SCHEMA": settings.postgres.staging_schema,
        "WEATHERPIPE_POSTGRES__OPS_SCHEMA": settings.postgres.ops_schema,
    }
    out = run_cli("silver", env=env, timeout=300)
    assert out.returncode == ServiceUnavailable.exit_code, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "Warning" not in out.stderr, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"sc://127.0.0.1:{port}" in errors[0] and "weatherpipe stack up" in errors[0]
