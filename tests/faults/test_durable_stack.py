"""The local stack keeps what it acknowledged: the broker (S3 storage), the S3 store and a private PostgreSQL come
back from a SIGKILL of their process, and from `down`/`up`, with their data."""

from __future__ import annotations

import datetime as dt
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from ingestion import bronze, ingest
from tests.support import NYC, assert_bronze_exactly, derive, free_port, free_s3_port, is_zombie, wait_for
from weatherpipe import db, stack
from weatherpipe.settings import Settings
from weatherpipe.storage import ObjectStore

pytestmark = pytest.mark.slow
START = dt.datetime(2013, 4, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def _sigkill(pid: int | None) -> None:
    assert pid is not None, "the service has no pid: this stack did not start it"
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or is_zombie(pid), what=f"pid {pid} to die")


@pytest.fixture
def durable(settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, stack.KafkaService]]:
    """A durable broker of its own (own port, own bucket in the stack's S3 store)."""
    uid = settings.kafka.topic.removeprefix("t_")
    other = derive(
        settings,
        kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}"},
        stack={"state_dir": tmp_path / "stack", "kafka_storage": "s3", "kafka_bucket": f"kafka-{uid}"},
    )
    broker = stack.KafkaService(other)
    assert broker.up().detail == f"storage s3://kafka-{uid}/"
    yield other, broker
    broker.down()
    ObjectStore(other.s3).remove_bucket(f"kafka-{uid}")


def test_a_broker_killed_between_ingest_and_drain_loses_nothing(durable: tuple[Settings, stack.KafkaService]) -> None:
    """Acknowledged messages, the sink's committed offsets and the topic's configuration survive a SIGKILL of the
    broker: the next drain reads exactly what the earlier drain had not, and bronze holds every message once."""
    other, broker = durable
    first = ingest.run(other, source="replay", city_ids=NYC, start=START, end=START + DAY)
    assert bronze.run(other).rows_out == first.rows_out  # drained: offsets committed
    second = ingest.run(other, source="replay", city_ids=NYC, start=START + DAY, end=START + 2 * DAY)
    assert second.status == "success" and second.rows_out > 0  # acknowledged (acks=all), not drained yet

    _sigkill(broker.pid())
    assert broker.up().state == "started"

    consumer = KafkaConsumer(bootstrap_servers=other.kafka.bootstrap_servers)
    assert len(consumer.partitions_for_topic(other.kafka.topic) or ()) == other.kafka.partitions
    consumer.close()
    after = bronze.run(other)
    assert after.rows_in == second.rows_out  # the committed offsets survived: nothing read twice
    assert_bronze_exactly(other, first.rows_out + second.rows_out)


def test_stack_status_names_the_broker_storage(durable: tuple[Settings, stack.KafkaService]) -> None:
    other, broker = durable
    assert broker.status().detail.startswith("storage s3://kafka-")
    memory = stack.KafkaService(derive(other, stack={"kafka_storage": "memory"}))
    assert memory.status().detail == "storage memory://tansu/"
    # credentials travel in the environment, never on the command line (visible in `ps`)
    assert other.s3.secret_key.get_secret_value() not in " ".join(broker.command())
    assert broker.env()["AWS_SECRET_ACCESS_KEY"] == other.s3.secret_key.get_secret_value()


def test_the_s3_store_keeps_its_objects_across_sigkill_and_down_up(settings: Settings, tmp_path: Path) -> None:
    other = derive(
        settings, s3={"endpoint_url": f"http://127.0.0.1:{free_s3_port()}"}, stack={"state_dir": tmp_path / "stack"}
    )
    s3 = stack.S3Service(other)
    try:
        s3.up()
        ObjectStore(other.s3).put("kept/one", b"acknowledged")
        _sigkill(s3.pid())
        s3.up()
        assert ObjectStore(other.s3).get("kept/one") == b"acknowledged"
        s3.down()
        s3.up()
        assert ObjectStore(other.s3).get("kept/one") == b"acknowledged"
    finally:
        s3.down()


def test_a_private_postgres_keeps_committed_rows_across_sigkill_and_down_up(
    local_stack: Settings, tmp_path: Path
) -> None:
    state = tmp_path / "stack"
    other = derive(local_stack, postgres={"port": free_port()}, stack={"state_dir": state, "manage_postgres": "always"})
    pg = stack.PostgresService(other)
    try:
        pg.up()
        with db.connect(other.postgres.admin) as conn:
            conn.execute("create table kept (v text)")
            conn.execute("insert into kept values ('committed')")
        _sigkill(int((state / "pg-data" / "postmaster.pid").read_text().split()[0]))
        pg.up()  # right after the crash: the stale lock file and the dying server are up()'s to handle
        with db.connect(other.postgres.admin) as conn:
            assert conn.execute("select v from kept").fetchall() == [("committed",)]
        pg.down()
        pg.up()
        with db.connect(other.postgres.admin) as conn:
            assert conn.execute("select v from kept").fetchall() == [("committed",)]
    finally:
        pg.down()
