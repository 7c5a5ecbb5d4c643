"""The local stack: each service really works, ``up`` is idempotent and ``down`` leaves nothing behind."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from tests.support import derive, free_port, free_s3_port, wait_for
from weatherpipe import db, stack
from weatherpipe.kafka import ensure_topic
from weatherpipe.settings import Settings
from weatherpipe.storage import ObjectStore, arrow_filesystem


def test_kafka_round_trip_with_group_commits(settings: Settings) -> None:
    k = settings.kafka
    ensure_topic(k)
    producer = KafkaProducer(bootstrap_servers=k.bootstrap_servers, acks="all")
    futures = [producer.send(k.topic, key=f"c{i % 4}".encode(), value=f"m{i}".encode()) for i in range(50)]
    producer.flush()
    assert all(f.get(timeout=10).offset >= 0 for f in futures)
    producer.close()

    tps = [TopicPartition(k.topic, p) for p in range(k.partitions)]
    consumer = KafkaConsumer(
        bootstrap_servers=k.bootstrap_servers,
        group_id=k.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    consumer.assign(tps)
    seen: list[bytes] = []
    deadline = time.monotonic() + 20
    while len(seen) < 50 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            seen.extend(r.value for r in records)
    assert sorted(seen) == sorted(f"m{i}".encode() for i in range(50))
    consumer.commit({tp: OffsetAndMetadata(consumer.position(tp), "", -1) for tp in tps})
    consumer.close()

    again = KafkaConsumer(bootstrap_servers=k.bootstrap_servers, group_id=k.consumer_group, enable_auto_commit=False)
    assert sum(again.committed(tp) or 0 for tp in tps) == 50
    again.close()


def test_s3_objects_and_parquet(settings: Settings) -> None:
    store = ObjectStore(settings.s3)
    prefix = settings.s3.bronze_prefix
    store.put(f"{prefix}/a.txt", b"hello")
    assert store.get(f"{prefix}/a.txt") == b"hello"
    assert [o.key for o in store.list(prefix)] == [f"{prefix}/a.txt"]

    table = pa.table({"city_id": ["x", "y"], "temp": [1.5, -2.0]})
    path = f"{settings.s3.bucket}/{prefix}/t.parquet"
    pq.write_table(table, path, filesystem=arrow_filesystem(settings.s3))
    assert pq.read_table(path, filesystem=arrow_filesystem(settings.s3)).equals(table)
    store.delete([f"{prefix}/a.txt", f"{prefix}/t.parquet"])
    assert list(store.list(prefix)) == []


def test_postgres_warehouse_exists(settings: Settings) -> None:
    with db.connect(settings.postgres.admin) as conn:
        assert conn.execute("select current_database()").fetchone() == (settings.postgres.database,)
        schemas = {r[0] for r in conn.execute("select schema_name from information_schema.schemata")}
    assert {settings.postgres.staging_schema, settings.postgres.ops_schema} <= schemas


@pytest.mark.spark
def test_spark_connect_server_answers(local_stack: Settings) -> None:
    from spark_jobs.session import release, spark_session

    spark = spark_session(local_stack)
    assert spark.range(10).selectExpr("sum(id) as s").collect()[0].s == 45
    release(spark)


def test_stack_up_is_idempotent(local_stack: Settings) -> None:
    first = {s.name: s.pid for s in stack.up(local_stack)}
    second = {s.name: s.pid for s in stack.up(local_stack)}
    assert first == second
    assert all(s.state in {"running", "external"} for s in stack.status(local_stack))


def _processes_using(path: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(path) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


@pytest.mark.slow
def test_second_stack_with_private_postgres_up_and_down(local_stack: Settings, tmp_path: Path) -> None:
    """A whole second stack on other ports and its own state folder — including the private PostgreSQL
    path that a machine without a server takes — starts healthy and stops without leaving a process."""
    state = tmp_path / "stack"
    s3_port = free_s3_port()
    other = derive(
        local_stack,
        kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}"},
        s3={"endpoint_url": f"http://127.0.0.1:{s3_port}"},
        postgres={"port": free_port()},
        stack={"state_dir": state, "manage_postgres": "auto"},
    )
    try:
        statuses = {s.name: s for s in stack.up(other)}
        assert statuses["postgres"].detail.startswith("private")
        assert {statuses[n].state for n in ("kafka", "s3", "postgres")} == {"started"}
        assert db.ping(other.postgres)
        assert ObjectStore(other.s3).ping()
        assert _processes_using(state)
    finally:
        stack.down(other)
    wait_for(lambda: not _processes_using(state), what="every process of the second stack to exit")
    assert not db.ping(other.postgres)
