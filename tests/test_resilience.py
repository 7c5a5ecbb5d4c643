"""The pipeline as a whole under bad input, broken services and canary secrets."""

from __future__ import annotations

import collections
import datetime as dt
import errno
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ingestion import bronze_sink
from spark_jobs import silver_job
from spark_jobs.pg_writer import LOAD_PREFIX
from tests.conftest import ROOT, derive
from tests.corpus.build_corpus import build, load, value
from tests.helpers import deadletters, free_port, free_s3_port, publish_raw, run_cli
from weatherpipe import db, gold, stack
from weatherpipe.errors import ServiceUnavailable
from weatherpipe.settings import Settings
from weatherpipe.storage import ObjectStore

pytestmark = [pytest.mark.slow, pytest.mark.spark]
NYC = ["nyc-jfk", "nyc-lga", "nyc-ewr"]
START = dt.datetime(2013, 3, 4, tzinfo=dt.UTC)


def test_corpus_file_is_current_and_large_enough() -> None:
    corpus = load()
    assert len(corpus) >= 100
    assert [(c["expect"], c["why"]) for c in corpus] == [(c["expect"], c["why"]) for c in build()]


def test_hostile_corpus_through_the_whole_pipeline(settings: Settings, spark) -> None:
    corpus = load()
    expected = collections.Counter(c["expect"] for c in corpus)
    publish_raw(settings, [value(c) for c in corpus], keys=[f"corpus-{c['id']}".encode() for c in corpus])

    bronze = bronze_sink.run(settings)  # must not crash
    assert bronze.rows_in == len(corpus)
    assert bronze.rows_rejected == expected["deadletter"]
    assert bronze.rows_out == len(corpus) - expected["deadletter"]
    dead = deadletters(settings)
    assert len(dead) == expected["deadletter"] and all(d["reason"] for d in dead)
    by_key = {d["key"]: d for d in dead}
    for c in corpus:
        if c["expect"] == "deadletter":
            assert f"corpus-{c['id']}" in by_key, c["why"]

    silver = silver_job.run(settings, spark=spark)  # must not crash
    d = silver.details
    assert silver.rows_in == bronze.rows_out
    assert silver.rows_rejected == expected["quarantine"]
    assert d["inserted"] == expected["clean"] and d["duplicates_in_batch"] == expected["duplicate"]
    assert (
        silver.rows_in
        == d["inserted"] + d["updated"] + d["stale_vs_staging"] + d["duplicates_in_batch"] + silver.rows_rejected
    )
    with db.connect(settings.postgres.admin) as conn:
        s = settings.postgres.staging_schema
        quarantined = conn.execute(f'select failed_rules from "{s}".weather_quarantine').fetchall()
        assert len(quarantined) == expected["quarantine"] and all(rules for (rules,) in quarantined)
        assert conn.execute(f'select count(*) from "{s}".cities').fetchone()[0] == 21  # no injected SQL ran

    uid = settings.postgres.staging_schema.removeprefix("stg_")
    warehouse = derive(settings, dbt={"schema_prefix": f"r{uid}_"})
    try:
        result = gold.run(warehouse)  # the clean survivors build and pass every dbt test
        assert result.status == "success" and result.rows_out == expected["clean"]
    finally:
        db.drop_schemas(settings.postgres, f"r{uid}_")


SECRET_PATTERNS = [
    re.compile(r"AKIA[0-9A-Z]{16}"),  # AWS access key id
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"gh[pousr]_[A-Za-z0-9]{36}"),
    re.compile(r"xox[abpr]-[0-9A-Za-z-]{10,}"),
    re.compile(r"(?i)\bappid=[0-9a-f]{32}\b"),  # a real OpenWeather key in a URL
]
CANARY = re.compile(r"CANARY|canary-key|canary-pass")


def test_no_secret_in_the_repository() -> None:
    """No key-like string in any tracked file, no .env file, and test canaries only inside tests/."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    offenders = [f for f in files if Path(f).name == ".env"]
    for name in files:
        path = ROOT / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        text = path.read_text(errors="ignore")
        offenders += [f"{name}: {p.pattern}" for p in SECRET_PATTERNS if p.search(text)]
        if not name.startswith("tests/") and CANARY.search(text):
            offenders.append(f"{name}: canary")
    assert offenders == []
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_bronze_survives_s3_outage_and_recovers_exactly_once(settings: Settings) -> None:
    """The S3 endpoint disappears while the sink runs: the stage fails with a clear transient error, commits
    nothing, and a later run writes every message exactly once."""
    from ingestion.envelope import Envelope
    from tests.helpers import bronze_rows
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
        bronze_sink.run(broken)
    assert err.value.transient and "127.0.0.1:9" in str(err.value)
    recovered = bronze_sink.run(settings)
    assert recovered.rows_out == 30
    rows = bronze_rows(settings)
    assert len(rows) == 30 and len({r["event_id"] for r in rows}) == 30


def test_canary_secrets_never_land_anywhere(settings: Settings, spark, tmp_path: Path, capfd) -> None:
    """A run with canary API key and passwords: none appears in logs, exceptions, Kafka, bronze, tables or docs."""
    from ingestion import stage
    from ingestion.cities import load_cities
    from tests.fake_weather_api import FakeWeatherApi
    from tests.helpers import bronze_rows, consume_all
    from weatherpipe.log import configure_logging

    key, pg_password, bi_password = "owm-CANARY-5f1e2d", "pg-CANARY-77aa", "bi-CANARY-99bb"
    with FakeWeatherApi(load_cities(settings)) as api:
        api.api_key = key
        canary = derive(
            settings,
            api={
                "openweather_base_url": api.url,
                "openweather_api_key": key,
                "backoff_initial_s": 0.01,
                "backoff_max_s": 0.02,
            },
            postgres={
                "password": pg_password,
                "transformer_password": "tr-CANARY-33cc",
                "admin_password": "adm-CANARY-44dd",
                "bi_password": bi_password,
            },
            dbt={"schema_prefix": f"c{settings.postgres.staging_schema[-6:]}_"},
        )
        configure_logging("DEBUG", "json", canary.secrets())
        db.provision(canary)  # role passwords are set as SCRAM verifiers: the statements carry no password
        stage.run(canary, source="openweather", city_ids=["paris", "london", "nyc-jfk"])
        bronze_sink.run(canary)
        silver_job.run(canary, spark=spark)
        gold.run(canary)
        docs = gold.build_docs(canary)
    captured = capfd.readouterr()
    haystacks = {
        "logs": captured.out + captured.err,
        "kafka": b"".join(v or b"" for _, v in consume_all(canary)).decode(errors="replace"),
        "bronze": json.dumps(bronze_rows(canary), default=str),
    }
    with db.connect(settings.postgres.admin) as conn:
        for schema in (canary.postgres.staging_schema, canary.postgres.ops_schema, canary.dbt.schema("marts")):
            for (table,) in conn.execute("select tablename from pg_tables where schemaname = %s", (schema,)):
                rows = conn.execute(f'select * from "{schema}"."{table}"').fetchall()
                haystacks[f"{schema}.{table}"] = json.dumps(rows, default=str)
    db.drop_schemas(settings.postgres, canary.dbt.schema(""))
    for artefact in list(docs.glob("*.json")) + list(docs.glob("*.html")):
        haystacks[artefact.name] = artefact.read_text(errors="replace")
    dbt_logs = list((settings.state_dir / "logs" / "dbt").glob("*.log"))  # dbt keeps one log per process
    assert dbt_logs
    for log_file in dbt_logs:
        haystacks[log_file.name] = log_file.read_text(errors="replace")
    for name, text in haystacks.items():
        for secret in (key, pg_password, bi_password):
            assert secret not in text, f"{secret} leaked into {name}"


def _terminate_lock_waiters(pg: Any, blocker: Any, *, timeout_s: float, like: str, settle_s: float = 0.0) -> list[int]:
    """Wait until backends of ours are blocked on a lock held by ``blocker`` with a query matching ``like``, then
    terminate them, and any more that queue up within ``settle_s``. Polled from an autocommit connection: inside a
    transaction pg_stat_activity is a snapshot and never changes."""
    blocker_pid = blocker.info.backend_pid
    killed: list[int] = []
    deadline = time.monotonic() + timeout_s
    with db.connect(pg.admin, autocommit=True) as watch:  # sees and may end every role's backends
        while time.monotonic() < deadline:
            pids = [
                pid
                for (pid,) in watch.execute(
                    "select pid from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'"
                    " and %s = any(pg_blocking_pids(pid)) and query ilike %s",
                    (blocker_pid, like),
                ).fetchall()
            ]
            for pid in pids:
                watch.execute("select pg_terminate_backend(%s)", (pid,))
            if pids and not killed:
                deadline = time.monotonic() + settle_s
            killed += pids
            time.sleep(0.05)
    assert killed, f"no backend blocked on {like!r} within {timeout_s:.0f}s"
    return killed


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["result"] = fn()
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, out


def test_silver_merge_survives_a_terminated_backend(settings: Settings, spark) -> None:
    """PostgreSQL kills the Silver job's connection in the middle of its merge: a clear transient error, staging
    and the manifest untouched (one transaction), and the next run loads everything."""
    from ingestion import stage

    stage.run(settings, source="replay", city_ids=NYC, start=START, end=START + dt.timedelta(days=1))
    bronze = bronze_sink.run(settings)
    silver_job.ensure_staging(settings)
    pg = settings.postgres
    staging = f'"{pg.staging_schema}"."weather_observations"'
    with psycopg.connect(pg.conninfo()) as blocker:  # writes wait for it; reads and the COPYs go on
        blocker.execute(f"lock table {staging} in share mode")
        thread, out = _in_thread(lambda: silver_job.run(settings, spark=spark))
        killed = _terminate_lock_waiters(pg, blocker, timeout_s=180, like=f"insert into {staging}%")
        blocker.rollback()
        thread.join(timeout=120)
    assert killed and isinstance(out.get("error"), ServiceUnavailable), out
    assert out["error"].transient and "failed mid-transaction (rolled back)" in str(out["error"])
    assert "Traceback" not in str(out["error"]) and pg.safe_url() in str(out["error"])
    with db.connect(pg) as conn:
        assert conn.execute(f"select count(*) from {staging}").fetchone()[0] == 0
        assert conn.execute(
            f'select count(*) from "{pg.ops_schema}".bronze_manifest where silver_processed_at is not null'
        ).fetchone() == (0,)
        status = conn.execute(
            f"select status from \"{pg.ops_schema}\".pipeline_runs where stage = 'silver' order by finished_at"
        ).fetchall()
    assert status == [("failed",)]
    again = silver_job.run(settings, spark=spark)
    assert again.status == "success" and again.rows_out == bronze.rows_out
    with db.connect(pg) as conn:
        assert conn.execute(f"select count(*) from {staging}").fetchone()[0] == bronze.rows_out
        leftovers = conn.execute(
            "select count(*) from pg_tables where schemaname = %s and starts_with(tablename, %s)",
            (pg.staging_schema, LOAD_PREFIX),
        ).fetchone()[0]
    assert leftovers == 0


def test_dbt_build_survives_terminated_backends(settings: Settings, spark) -> None:
    """PostgreSQL kills dbt's connections during an incremental `dbt build`: a clear transient error, the marts
    as they were (no partial Gold), and the next build completes and equals a full refresh."""
    from ingestion import stage
    from tests.test_gold import marts_hash

    warehouse = derive(settings, dbt={"schema_prefix": f"r{settings.postgres.staging_schema[-8:]}_"})
    try:
        for day in range(2):
            start = START + dt.timedelta(days=day)
            stage.run(warehouse, source="replay", city_ids=NYC, start=start, end=start + dt.timedelta(days=1))
            bronze_sink.run(warehouse)
            silver_job.run(warehouse, spark=spark)
            if day == 0:
                gold.run(warehouse)
                before = marts_hash(warehouse)
        pg = warehouse.postgres
        staging = f'"{pg.staging_schema}".weather_observations'
        with psycopg.connect(pg.conninfo()) as blocker:  # every reader of Silver's table waits
            blocker.execute(f"lock table {staging} in access exclusive mode")
            thread, out = _in_thread(lambda: gold.run(warehouse))
            # dbt's threads may queue up behind the same lock one after another: end them all
            killed = _terminate_lock_waiters(pg, blocker, timeout_s=120, like=f"%{pg.staging_schema}%", settle_s=1)
            blocker.rollback()
            thread.join(timeout=300)
        error = out.get("error")
        assert killed and isinstance(error, ServiceUnavailable), out
        assert error.transient and str(error).startswith("dbt build lost its PostgreSQL connection")
        assert marts_hash(warehouse) == before  # nothing downstream of the failed model was built
        after = gold.run(warehouse)
        assert after.status == "success"
        incremental = marts_hash(warehouse)
        assert incremental != before
        gold.run(warehouse, full_refresh=True)
        assert marts_hash(warehouse) == incremental
    finally:
        db.drop_schemas(settings.postgres, warehouse.dbt.schema_prefix)


def _publish_hours(settings: Settings, total: int) -> None:
    """``total`` valid envelopes, three cities per event hour: thousands of bronze objects."""
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


def _assert_bronze_exactly(settings: Settings, total: int) -> None:
    from tests.helpers import bronze_rows

    rows = bronze_rows(settings)
    assert len(rows) == total and len({r["event_id"] for r in rows}) == total
    with db.connect(settings.postgres.admin) as conn:
        manifest = conn.execute(f'select sum(row_count) from "{settings.postgres.ops_schema}".bronze_manifest')
        assert manifest.fetchone()[0] == total


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs: a disk that can really fill up (needs root and mount, as on our machines and CI)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(bytes(1 << 20))
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_bronze_on_a_full_disk_then_freed(settings: Settings, small_disk: Path) -> None:
    """The S3 store's disk (the stack's state folder) fills up: the drain fails with a clear transient error and
    commits nothing it did not write; once space is freed and the store restarted, the next drain leaves every
    message exactly once."""
    other = derive(
        settings,
        s3={"endpoint_url": f"http://127.0.0.1:{free_s3_port()}"},
        stack={"state_dir": small_disk / "stack"},
    )
    s3 = stack.S3Service(other)
    total = 3000
    _publish_hours(settings, total)
    try:
        s3.up()
        ObjectStore(other.s3).put("warm-up", bytes(1024))  # the store's volumes exist before the disk fills
        filler = _fill(small_disk)
        with pytest.raises(ServiceUnavailable) as failed:
            bronze_sink.run(other)
        assert failed.value.transient and other.s3.endpoint_url in str(failed.value), failed.value
        with db.connect(other.postgres.admin) as conn:
            written = conn.execute(f'select count(*) from "{other.postgres.ops_schema}".bronze_manifest').fetchone()
        assert written == (0,)  # nothing fitted, so nothing is recorded or committed
        filler.unlink()
        s3.down()  # SeaweedFS keeps the volumes it failed to write read-only until it restarts
        s3.up()
        assert bronze_sink.run(other).status == "success"
        _assert_bronze_exactly(other, total)
    finally:
        s3.down()


def test_stack_up_on_a_full_state_folder_is_one_line(small_disk: Path) -> None:
    """`stack up` cannot write its state folder: one line naming the folder and the cause, and no service is left
    running that no pid file records."""
    _fill(small_disk)
    kafka_port = free_port()
    env = {
        "WEATHERPIPE_STACK__STATE_DIR": str(small_disk / "state"),
        "WEATHERPIPE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
        "WEATHERPIPE_S3__ENDPOINT_URL": f"http://127.0.0.1:{free_s3_port()}",
    }
    out = run_cli("stack", "up", env=env)
    lines = [line for line in out.stderr.splitlines() if line.strip() and '"level"' not in line]
    assert out.returncode == 1 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "cannot write the stack's state folder" in lines[0] and "No space left on device" in lines[0], lines
    time.sleep(0.5)
    assert not stack._port_open("127.0.0.1", kafka_port)


def test_bronze_survives_s3_stopped_mid_write_and_restarted(settings: Settings, tmp_path: Path) -> None:
    """A second S3 store (its own SeaweedFS) is stopped while the sink's workers are writing: the stage fails with
    a clear transient error; once the store is back, the next drain leaves every message in bronze exactly once."""
    other = derive(
        settings,
        s3={"endpoint_url": f"http://127.0.0.1:{free_s3_port()}"},
        stack={"state_dir": tmp_path / "stack"},
    )
    s3 = stack.S3Service(other)
    total = 6000  # ~2,000 event hours: thousands of objects, seconds of writing
    _publish_hours(settings, total)
    try:
        s3.up()
        thread, out = _in_thread(lambda: bronze_sink.run(other))
        with db.connect(other.postgres.admin, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while (
                time.monotonic() < deadline
                and not conn.execute(f'select count(*) from "{other.postgres.ops_schema}".bronze_manifest').fetchone()[
                    0
                ]
            ):
                time.sleep(0.05)
        s3.down()  # mid-write: the first ranges are in, most are not
        thread.join(timeout=300)
        error = out.get("error")
        assert isinstance(error, ServiceUnavailable) and error.transient, out
        assert other.s3.endpoint_url in str(error) and "Traceback" not in str(error)
        s3.up()
        again = bronze_sink.run(other)
        assert again.status == "success"
        _assert_bronze_exactly(other, total)
    finally:
        s3.down()


def test_ingest_survives_kafka_stopped_mid_publish_and_restarted(settings: Settings, tmp_path: Path) -> None:
    """A second broker (its own Tansu) is stopped in the middle of an ingest: the stage fails with a clear
    transient error saying how much was confirmed; after a restart, re-ingesting the same window (deterministic
    event ids) leaves every observation in bronze exactly once."""
    from ingestion import stage
    from ingestion.sources.replay import ReplaySource
    from tests.helpers import bronze_rows
    from weatherpipe.errors import DeliveryError

    other = derive(
        settings,
        kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}", "request_timeout_ms": 3000, "delivery_timeout_s": 5},
        stack={"state_dir": tmp_path / "stack"},
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
            stage.run(other, source="replay", weather_source=StopsTheBroker(), **window)
        assert err.value.transient and str(err.value).startswith("Kafka confirmed ")
        assert "Traceback" not in str(err.value)
        kafka.up()  # memory storage: the restarted broker is empty, the window is ingested again
        again = stage.run(other, source="replay", **window)
        assert again.status == "success" and again.rows_out == again.rows_in > 400
        drained = bronze_sink.run(other)
        rows = bronze_rows(other)
        assert drained.rows_out == len(rows) == again.rows_out
        assert len({r["event_id"] for r in rows}) == len(rows)
    finally:
        kafka.down()
