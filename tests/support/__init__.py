"""The one module of shared test helpers: isolated settings, reading back what the pipeline wrote through the
real services, publishing raw input, free ports, running the CLI as a user does, and waiting on conditions.

Test files import from here (never from one another)."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from weatherpipe import db
from weatherpipe.settings import ROOT, Settings

NYC = ["nyc-jfk", "nyc-lga", "nyc-ewr"]


def derive(settings: Settings, **sections: dict[str, Any]) -> Settings:
    """A copy of ``settings`` with some fields of some sections replaced."""
    update = {}
    for name, values in sections.items():
        section = getattr(settings, name)
        update[name] = type(section).model_validate({**section.model_dump(), **values})
    return settings.model_copy(update=update)


def provision_env(settings: Settings, env: dict[str, str]) -> None:
    """Provision the ops and staging schemas that a subprocess configured by ``env`` will use."""
    prefix = "WEATHERPIPE_POSTGRES__"
    schemas = {k.removeprefix(prefix).lower(): v for k, v in env.items() if k.endswith("_SCHEMA") and prefix in k}
    db.provision(derive(settings, postgres=schemas))


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


def live_bronze(settings: Settings) -> dict[str, list[dict]]:
    """The rows of every live bronze object (the manifest's, not retired by a compaction), by object key."""
    import io

    import pyarrow.parquet as pq

    from weatherpipe.storage import ObjectStore

    store = ObjectStore(settings.s3)
    with db.connect(settings.postgres.admin) as conn:
        keys = conn.execute(
            f'select object_key from "{settings.postgres.ops_schema}".bronze_manifest where retired_at is null'
        ).fetchall()
    return {k: pq.read_table(io.BytesIO(store.get(k))).to_pylist() for (k,) in keys}


def mark_processed(settings: Settings) -> None:
    """Mark every bronze object processed, as a Silver run would (for tests of what comes after Silver)."""
    with db.connect(settings.postgres.admin) as conn:
        conn.execute(
            f'update "{settings.postgres.ops_schema}".bronze_manifest set silver_processed_at = now() '
            "where silver_processed_at is null"
        )


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


def free_port_block(n: int) -> int:
    """The first of ``n`` consecutive free ports below the kernel's ephemeral range (see ``free_s3_port``)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(10_000, low - n)
        if all(_bindable(p) for p in range(port, port + n)):
            return port
    raise RuntimeError(f"no block of {n} free ports")


def private_spark(settings: Settings, state_dir: Path, *, cluster: bool) -> Settings:
    """Settings for Spark services of a test's own (a Connect server, and with ``cluster`` a standalone master and
    worker it submits to) on free ports and under ``state_dir``; start them with ``spark_running``."""
    base = free_port_block(5)
    return derive(
        settings,
        spark={
            "mode": "connect",
            "cluster": cluster,
            "master_port": base,
            "master_ui_port": base + 1,  # the worker's UI takes base + 2
            "remote": f"sc://127.0.0.1:{base + 3}",
            "connect_ui_port": base + 4,
            "worker_cores": 2,
            "worker_memory": "1g",
            "driver_memory": "1g",
        },
        stack={"state_dir": state_dir},
    )


@contextmanager
def spark_running(settings: Settings) -> Iterator[list[Any]]:
    """The Spark services ``settings`` ask for, started in order and stopped in reverse (those that started)."""
    from weatherpipe import stack

    started: list[Any] = []
    try:
        for service in stack.spark_services(settings):
            service.up()
            started.append(service)
        yield started
    finally:
        for service in reversed(started):
            service.down()


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_WEATHERPIPE = str(Path(sys.executable).with_name("weatherpipe"))


def _cli_env(env: dict[str, str] | None) -> dict[str, str]:
    """The caller's environment without its WEATHERPIPE_* settings, plus ``env``: what a user's shell gives."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("WEATHERPIPE_")}, **(env or {})}


def run_cli_on_terminal(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> tuple[int, str]:
    """``weatherpipe ARGS`` as ``run_cli`` runs it, but on a pseudo-terminal, as someone watching runs it: returns
    the exit code and everything it wrote (stdout and stderr share the terminal; escape sequences kept)."""
    import pty
    import select

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [_WEATHERPIPE, *args],
        env=_cli_env({**(env or {}), "COLUMNS": "160", "TERM": "xterm"}),
        cwd=ROOT,
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last writer is gone
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return proc.wait(timeout=max(1.0, deadline - time.monotonic())), b"".join(chunks).decode(errors="replace")


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``weatherpipe ARGS`` in a subprocess from the project root, as a user runs it: the caller's environment
    without its WEATHERPIPE_* settings, plus ``env``."""
    return subprocess.run(
        [_WEATHERPIPE, *args],
        env=_cli_env(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_for(condition: Callable[[], Any], *, what: str, hang_guard_s: float = 300.0, every_s: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy, and return that. ``hang_guard_s`` is no speed
    expectation: it only turns a hang into a failure that says what never happened."""
    deadline = time.monotonic() + hang_guard_s
    while True:
        got = condition()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(every_s)


def is_zombie(pid: int) -> bool:
    """True when ``pid`` has exited but is not yet reaped (or is gone): it no longer runs."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def in_thread(fn: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """Run ``fn`` in a thread; its result or exception lands in the returned dict."""
    import threading

    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["result"] = fn()
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, out


def envelope_bytes(i: int, hour_offset: int = 0, city: str = "nyc-jfk") -> bytes:
    """A valid envelope (unique per ``i``) with an awkward payload, observed ``hour_offset`` hours after 2013-03-01."""
    import datetime as dt

    from ingestion.envelope import Envelope

    observed = dt.datetime(2013, 3, 1, tzinfo=dt.UTC) + dt.timedelta(hours=hour_offset, minutes=i % 60)
    return Envelope.build(
        source="replay",
        city_id=f"{city}-{i}",
        observed_at=observed,
        run_id="t",
        payload={"i": i, "name": "ünïcode 'x'; drop table"},
    ).to_bytes()


def publish_hours(settings: Settings, total: int) -> None:
    """``total`` valid envelopes, three cities per event hour."""
    import datetime as dt

    from ingestion.envelope import Envelope

    when = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    publish_raw(
        settings,
        [
            Envelope.build(
                source="replay",
                city_id=f"c{i % 3}",
                observed_at=when + dt.timedelta(hours=i // 3),
                run_id="t",
                payload={"i": i},
            ).to_bytes()
            for i in range(total)
        ],
    )


def manifest_rows(settings: Settings) -> list[tuple]:
    """(object_key, row_count, observed_hour) of every bronze object the manifest records."""
    with db.connect(settings.postgres.admin) as conn:
        return conn.execute(
            f'select object_key, row_count, observed_hour from "{settings.postgres.ops_schema}".bronze_manifest '
            "order by object_key"
        ).fetchall()


def manifest_total(settings: Settings) -> int:
    """Rows the bronze manifest records in live objects (0 before the sink created it)."""
    with db.connect(settings.postgres.admin, autocommit=True) as conn:
        found = conn.execute("select to_regclass(%s)", (f'"{settings.postgres.ops_schema}".bronze_manifest',))
        if found.fetchone()[0] is None:
            return 0
        total = conn.execute(
            f'select sum(row_count) from "{settings.postgres.ops_schema}".bronze_manifest where retired_at is null'
        )
        return int(total.fetchone()[0] or 0)


def assert_bronze_exactly(settings: Settings, total: int) -> None:
    """``total`` rows in bronze, each event once, and the manifest agrees."""
    rows = bronze_rows(settings)
    assert len(rows) == total and len({r["event_id"] for r in rows}) == total
    assert manifest_total(settings) == total


def query(settings: Settings, sql: str, args: tuple = ()) -> list[tuple]:
    """Run ``sql`` as the admin and return its rows (none for a statement); ``{s}``, ``{o}`` and ``{m}`` name the
    test's staging, ops and marts schemas."""
    with db.connect(settings.postgres.admin) as conn:
        cursor = conn.execute(
            sql.format(
                s=f'"{settings.postgres.staging_schema}"',
                o=f'"{settings.postgres.ops_schema}"',
                m=f'"{settings.dbt.schema("marts")}"',
            ),
            args,
        )
        return cursor.fetchall() if cursor.description else []


def marts_hash(settings: Settings) -> tuple:
    """A fingerprint of the three growing marts."""
    return tuple(
        query(settings, f"select md5(string_agg(t::text, '|' order by t::text)) from {{m}}.{table} t")[0][0]
        for table in ("fct_weather_observations", "gold_weather_aggregates", "agg_weather_monthly")
    )


def ingest_twice_to_bronze(settings: Settings, start: Any, end: Any) -> int:
    """The replay window ingested twice (a re-fetch: same event ids, later ingestion) and drained to bronze;
    returns the rows of one ingest."""
    from ingestion import bronze, ingest

    first = ingest.run(settings, source="replay", city_ids=NYC, start=start, end=end)
    ingest.run(settings, source="replay", city_ids=NYC, start=start, end=end)
    assert bronze.run(settings).rows_out == 2 * first.rows_out
    return first.rows_out


# Kafka records of every awkward shape: keys, null keys, tombstones, empty values, headers, multi-byte varints.
SAMPLE_RECORDS: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]] = [
    (b"station-1", b'{"a": 1}', []),
    (None, b"x" * 300, []),  # a value longer than one varint byte of length
    (b"k", None, []),  # tombstone
    (b"", b"", [("trace", b"abc"), ("empty", None)]),  # headers are skipped, not returned
    (b"\xff\x00", "é€😀".encode(), [("h", b"1" * 200)]),
]


def blocked_by(settings: Settings, blocker: Any, like: str) -> int:
    """How many backends wait on a lock held by the connection ``blocker``, running a query matching ``like``.
    Read from its own autocommit connection: inside a transaction pg_stat_activity is a frozen snapshot."""
    with db.connect(settings.postgres.admin, autocommit=True) as watch:
        return int(
            watch.execute(
                "select count(*) from pg_stat_activity where %s = any(pg_blocking_pids(pid)) and query ilike %s",
                (blocker.info.backend_pid, like),
            ).fetchone()[0]
        )


def warehouse_settings(settings: Settings, uid: str, **postgres: Any) -> Settings:
    """Settings isolated for a whole module's warehouse: own topic, prefixes, staging/ops schemas and dbt prefix."""
    return derive(
        settings,
        kafka={"topic": f"gold_{uid}", "consumer_group": f"gold_{uid}"},
        s3={"bronze_prefix": f"tests/{uid}/bronze", "deadletter_prefix": f"tests/{uid}/dl"},
        postgres={"staging_schema": f"stg_{uid}", "ops_schema": f"ops_{uid}", **postgres},
        dbt={"schema_prefix": f"t{uid}_"},
    )


def drop_warehouse(settings: Settings) -> None:
    for prefix in (settings.dbt.schema_prefix, settings.postgres.staging_schema, settings.postgres.ops_schema):
        db.drop_schemas(settings.postgres, prefix)


def load_replay(settings: Settings, spark: Any, start: Any, end: Any) -> None:
    """The replay of the three New York stations over ``[start, end)``, through ingest, bronze and Silver."""
    from ingestion import bronze, ingest
    from spark_jobs import silver

    ingest.run(settings, source="replay", city_ids=NYC, start=start, end=end)
    bronze.run(settings)
    silver.run(settings, spark=spark)
