"""The price of a durable broker: ingest and bronze on the broker with S3 storage next to the same broker in
memory, same run. Each broker is started for the bench on its own port (and bucket); each row's reference is the
bare kafka-python loop on that same broker, so the ratios compare like with like and the rates show the price."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from kafka import KafkaProducer

from bench.bench_bronze import _measure, dense_stream
from bench.common import BenchRow, isolated, timed
from ingestion.producer import make_producer, publish
from weatherpipe import stack
from weatherpipe.kafka import ensure_topic
from weatherpipe.settings import Settings
from weatherpipe.storage import ObjectStore


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _broker(settings: Settings, storage: str) -> Iterator[Settings]:
    bucket = f"bench-kafka-{settings.kafka.topic[-6:]}".replace("_", "-")
    own = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{_free_port()}"}),
            "stack": settings.stack.model_copy(
                update={"kafka_storage": storage, "kafka_bucket": bucket, "state_dir": settings.state_dir / "bench"}
            ),
        }
    )
    broker = stack.KafkaService(own)
    broker.up()
    try:
        yield own
    finally:
        broker.down()
        if storage == "s3":
            ObjectStore(own.s3).remove_bucket(bucket)


def _rows(settings: Settings, storage: str, n: int) -> list[BenchRow]:
    envelopes = dense_stream(n, 1_000)
    raw = [(e.city_id.encode(), e.to_bytes()) for e in envelopes]
    ensure_topic(settings.kafka)
    ensure_topic(settings.kafka, settings.kafka.topic + "_ref")

    def reference() -> None:
        producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
        for key, value in raw:
            producer.send(settings.kafka.topic + "_ref", key=key, value=value)
        producer.flush()
        producer.close()

    def ours() -> None:
        producer = make_producer(settings.kafka)
        publish(producer, settings.kafka, envelopes)
        producer.close()

    ref_s, _ = timed(reference)
    ours_s, _ = timed(ours)
    ingest = BenchRow(
        "ingest",
        f"publish rate, {storage} broker, {n} msgs (msg/s)",
        n / ours_s,
        n / ref_s,
        ref_s / ours_s,
        "",
        "reference: bare send loop on the same broker",
    )
    bronze = _measure(settings, n, f"sink rate, {storage} broker", "")
    return [ingest, bronze]


def run(n: int = 26_000) -> list[BenchRow]:
    rows: list[BenchRow] = []
    for storage in ("memory", "s3"):
        with isolated(f"durable_{storage}") as settings, _broker(settings, storage) as own:
            rows += _rows(own, storage, n)
    return rows
