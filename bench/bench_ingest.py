"""Ingest: our producer path (envelopes, acks=all, every delivery confirmed) vs. a bare kafka-python send loop of
the same messages, in the same run."""

from __future__ import annotations

from kafka import KafkaProducer

from bench.common import BenchRow, isolated, timed
from ingestion.envelope import Envelope
from ingestion.producer import make_producer, publish
from ingestion.sources.base import Observation
from ingestion.sources.replay import ReplaySource
from weatherpipe.cities import load_cities
from weatherpipe.kafka import ensure_topic


def run() -> list[BenchRow]:
    with isolated("ingest") as settings:
        cities = load_cities(settings, ["nyc-jfk", "nyc-lga", "nyc-ewr"])
        obs = [o for o in ReplaySource().fetch(cities) if isinstance(o, Observation)]
        envelopes = [
            Envelope.build(
                source="replay", city_id=o.city_id, observed_at=o.observed_at, run_id="bench", payload=o.payload
            )
            for o in obs
        ]
        ensure_topic(settings.kafka)
        ref_topic = settings.kafka.topic + "_ref"
        ensure_topic(settings.kafka, ref_topic)
        raw = [(e.city_id.encode(), e.to_bytes()) for e in envelopes]

        def reference() -> None:
            producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
            for key, value in raw:
                producer.send(ref_topic, key=key, value=value)
            producer.flush()
            producer.close()

        def ours() -> None:
            producer = make_producer(settings.kafka)
            publish(producer, settings.kafka, envelopes)
            producer.close()

        ref_s, _ = timed(reference)
        ours_s, _ = timed(ours)
        n = len(envelopes)
        return [
            BenchRow(
                "ingest",
                f"publish rate, {n} msgs (msg/s)",
                n / ours_s,
                n / ref_s,
                ref_s / ours_s,
                ">= 0.5",
                "ours confirms every ack (acks=all); reference fire-and-forget",
            )
        ]
