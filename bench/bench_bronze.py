"""Bronze: sink throughput (parse, Parquet, S3 PUT, manifest, commit) vs. a bare kafka-python consume-only loop
over the same topic, in the same run.

Two workloads: a dense stream (many stations reporting within a few event hours: the per-message cost) and the
replay year (26k hourly rows over 8,760 event hours: object-bound, since a chunk never mixes hours). The sink drains
with one worker process per partition (as a Kafka Connect sink runs one task per partition); the reference is one
consumer loop.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time

from kafka import KafkaConsumer, TopicPartition

from bench.common import BenchRow, isolated, timed
from ingestion import bronze, ingest
from ingestion.envelope import Envelope
from ingestion.producer import make_producer, publish
from weatherpipe.settings import Settings


def _consume_only(settings: Settings, n: int) -> int:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=5000,
    )
    consumer.assign([TopicPartition(settings.kafka.topic, p) for p in range(settings.kafka.partitions)])
    seen, deadline = 0, time.monotonic() + 300
    while seen < n and time.monotonic() < deadline:
        seen += sum(len(v) for v in consumer.poll(timeout_ms=500).values())
    consumer.close()
    return seen


def _measure(settings: Settings, n: int, label: str, target: str, rounds: int = 1) -> BenchRow:
    """Alternate the reference and the sink ``rounds`` times over the same topic (the sink with a fresh consumer
    group and bronze prefix each time) and compare the medians: one run of a second swings by 30 % here."""
    refs, ours, result = [], [], None
    for i in range(rounds):
        ref_s, seen = timed(lambda: _consume_only(settings, n))
        fresh = settings.model_copy(
            update={
                "kafka": settings.kafka.model_copy(update={"consumer_group": f"{settings.kafka.consumer_group}_{i}"}),
                "s3": settings.s3.model_copy(
                    update={
                        "bronze_prefix": f"{settings.s3.bronze_prefix}/{i}",
                        "deadletter_prefix": f"{settings.s3.deadletter_prefix}/{i}",
                    }
                ),
            }
        )
        ours_s, result = timed(lambda s=fresh: bronze.run(s))
        assert seen == n == result.rows_out, (seen, n, result.rows_out)
        refs.append(ref_s)
        ours.append(ours_s)
    ref_s, ours_s = statistics.median(refs), statistics.median(ours)
    return BenchRow(
        "bronze",
        f"{label}, {n} msgs (msg/s)",
        n / ours_s,
        n / ref_s,
        ref_s / ours_s,
        target,
        f"{len(result.objects)} objects" + (f", median of {rounds}" if rounds > 1 else ""),
    )


def dense_stream(n: int = 60_000, stations: int = 2_500) -> list[Envelope]:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return [
        Envelope.build(
            source="open-meteo",
            city_id=f"station-{i % stations}",
            run_id="bench",
            observed_at=t0 + dt.timedelta(minutes=15 * (i // stations)),
            payload={"current": {"time": "x", "temperature_2m": 1.5 + i % 7, "wind_speed_10m": 10.2}},
        )
        for i in range(n)
    ]


def _warm_up() -> None:
    """Both sides once on a small topic first: imports (pyarrow loads pandas on its first array, 0.5 s) and
    first connections are a per-process cost, not throughput."""
    with isolated("bronze_warm") as settings:
        from weatherpipe.kafka import ensure_topic

        ensure_topic(settings.kafka)
        producer = make_producer(settings.kafka)
        publish(producer, settings.kafka, dense_stream(3_000, 100))
        producer.close()
        _consume_only(settings, 3_000)
        bronze.run(settings)


def run() -> list[BenchRow]:
    _warm_up()
    rows = []
    with isolated("bronze_dense") as settings:
        envelopes = dense_stream()
        producer = make_producer(settings.kafka)
        from weatherpipe.kafka import ensure_topic

        ensure_topic(settings.kafka)
        publish(producer, settings.kafka, envelopes)
        producer.close()
        rows.append(_measure(settings, len(envelopes), "sink rate, dense stream", ">= 0.8", rounds=5))
    with isolated("bronze_year") as settings:
        published = ingest.run(settings, source="replay", city_ids=["nyc-jfk", "nyc-lga", "nyc-ewr"])
        rows.append(_measure(settings, published.rows_out, "sink rate, replay year (objects by event date)", ""))
    return rows
