"""Test helpers that read back what the pipeline wrote, through the real services."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from weatherpipe.settings import ROOT, Settings


def consume_all(settings: Settings, expected: int | None = None, timeout_s: float = 20.0) -> list[tuple[bytes, bytes]]:
    """Every (key, value) on the test topic, read without a consumer group."""
    k = settings.kafka
    consumer = KafkaConsumer(
        bootstrap_servers=k.bootstrap_servers, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    consumer.assign([TopicPartition(k.topic, p) for p in range(k.partitions)])
    out: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    idle = 0
    while time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=300)
        got = [(r.key, r.value) for records in batch.values() for r in records]
        out.extend(got)
        if expected is not None and len(out) >= expected:
            idle += 1 if not got else 0
            if idle >= 2:
                break
        elif expected is None and not got:
            idle += 1
            if idle >= 4:
                break
        else:
            idle = 0
    consumer.close()
    return out


def publish_raw(settings: Settings, values: list[bytes | None], keys: list[bytes] | None = None) -> None:
    """Put raw bytes on the test topic (for hostile input), waiting for every acknowledgement."""
    from kafka import KafkaProducer

    from weatherpipe.kafka import ensure_topic

    ensure_topic(settings.kafka)
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    futures = [
        producer.send(settings.kafka.topic, key=(keys[i] if keys else b"k"), value=v) for i, v in enumerate(values)
    ]
    producer.flush()
    for f in futures:
        f.get(timeout=10)
    producer.close()


def bronze_rows(settings: Settings) -> list[dict]:
    """Every row of every bronze Parquet object under the test's prefix (read through S3)."""
    import io

    import pyarrow.parquet as pq

    from weatherpipe.storage import ObjectStore

    store = ObjectStore(settings.s3)
    rows: list[dict] = []
    for obj in store.list(settings.s3.bronze_prefix + "/"):
        table = pq.read_table(io.BytesIO(store.get(obj.key)))
        for row in table.to_pylist():
            row["_key"] = obj.key
            rows.append(row)
    return rows


def deadletters(settings: Settings) -> list[dict]:
    import json

    from weatherpipe.storage import ObjectStore

    store = ObjectStore(settings.s3)
    out: list[dict] = []
    for obj in store.list(settings.s3.deadletter_prefix + "/"):
        out.extend(json.loads(line) for line in store.get(obj.key).decode().splitlines() if line)
    return out


def free_port() -> int:
    """A TCP port nobody listens on right now (for a second stack's services)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_s3_port() -> int:
    """An S3 port for a second SeaweedFS whose whole block of derived ports is free and below the kernel's
    ephemeral range: a port in that range can be taken, between our check and weed's bind, by any outgoing
    connection — weed's own among them — and weed mini then stops serving soon after it first answered."""
    from weatherpipe.stack import S3Service

    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(10_000, low - 10_100)
        wanted = [port, *S3Service.derived_ports(port).values()]
        if max(wanted) < low and all(_bindable(p) for p in wanted):
            return port
    raise RuntimeError("no free block of ports for a second SeaweedFS")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``weatherpipe ARGS`` in a subprocess from the project root, as a user runs it: the caller's environment
    without its WEATHERPIPE_* settings, plus ``env``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("WEATHERPIPE_")}
    full_env.update(env or {})
    return subprocess.run(
        [str(Path(sys.executable).with_name("weatherpipe")), *args],
        env=full_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
