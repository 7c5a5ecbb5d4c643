"""Bronze under repeated SIGKILLs of the sink, and of a compaction: every message in bronze exactly once.

Each kill lands after the restarted sink has committed new work (watched in the manifest), at a random moment
after that, and the backlog is topped up whenever the sink gets close to its end — so each crash loop reaches its
kill count on a fast machine and on a slow one alike. ``BRONZE_CRASH_SPEED=fast|slow`` (test-only) makes the sink
under test faster (large chunks: few PUTs) or slower (tiny chunks: many PUTs) to show exactly that."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ingestion import bronze
from tests.support import (
    ROOT,
    bronze_rows,
    deadletters,
    derive,
    envelope_bytes,
    is_zombie,
    live_bronze,
    manifest_total,
    mark_processed,
    publish_raw,
    wait_for,
)
from weatherpipe import db
from weatherpipe.settings import Settings
from weatherpipe.storage import ObjectStore

pytestmark = pytest.mark.slow
SPEED = os.environ.get("BRONZE_CRASH_SPEED", "normal")
# The sink's cost is per object, so its chunk size sets how fast it drains: (following chunk_records,
# draining chunk_records, draining flush_records).
FOLLOW_CHUNK, DRAIN_CHUNK, DRAIN_FLUSH = {"fast": (500, 2000, 500), "normal": (37, 200, 50), "slow": (5, 20, 5)}[SPEED]
MAX_RUNS = 60  # restarts allowed to reach the kill count (runs that finish before their kill top up and retry)


class Backlog:
    """Messages 0, 1, 2, … on the test's topic: every ``bad_every``-th is garbage, the rest valid envelopes
    spread over ``hours`` event hours."""

    def __init__(self, settings: Settings, bad_every: int, hours: int) -> None:
        self.settings, self.bad_every, self.hours = settings, bad_every, hours
        self.published = 0

    def publish(self, count: int) -> None:
        numbers = range(self.published, self.published + count)
        publish_raw(
            self.settings,
            [b"garbage %d" % i if i % self.bad_every == 0 else envelope_bytes(i, i % self.hours) for i in numbers],
        )
        self.published += count

    @property
    def bad(self) -> int:
        return len(range(0, self.published, self.bad_every))

    @property
    def good(self) -> int:
        return self.published - self.bad


class Manifest:
    """Rows the bronze manifest holds, read on one autocommit connection (polled often)."""

    def __init__(self, settings: Settings) -> None:
        self.conn = db.open_connection(settings.postgres.admin, autocommit=True)
        self.table = f'"{settings.postgres.ops_schema}".bronze_manifest'

    def rows(self) -> int:
        try:
            return int(self.conn.execute(f"select coalesce(sum(row_count), 0) from {self.table}").fetchone()[0])
        except psycopg.errors.UndefinedTable:  # the first sink has not created it yet
            return 0

    def close(self) -> None:
        self.conn.close()


def _start_sink(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "ingestion.bronze", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill_after_progress(proc: subprocess.Popen[bytes], manifest: Manifest, rng: random.Random) -> bool:
    """Wait until ``proc`` has committed something new, then SIGKILL it at a random moment shortly after.
    False when it ended by itself first (it drained everything)."""
    before = manifest.rows()
    wait_for(lambda: manifest.rows() > before or proc.poll() is not None, what="the restarted sink committed work")
    threading.Event().wait(rng.uniform(0, 0.15))
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def test_exactly_once_under_repeated_sigkill(settings: Settings) -> None:
    """Kill a following sink with SIGKILL (12 times) while messages flow, restart it each time, then assert every
    message is in bronze exactly once."""
    crashy, env = _sink_env(settings, chunk_records=FOLLOW_CHUNK, flush_interval_s=0.2, poll_timeout_ms=100)
    backlog = Backlog(crashy, bad_every=97, hours=5)
    backlog.publish(80)
    manifest, manifest_watch = Manifest(crashy), Manifest(crashy)  # the producer thread has its own connection
    stop = threading.Event()

    def produce() -> None:  # keeps a few hundred messages ahead of the sink, however fast it is
        while not stop.is_set():
            if backlog.good - manifest_watch.rows() < 400:
                backlog.publish(80)
            stop.wait(0.05)

    producer = threading.Thread(target=produce)
    producer.start()
    rng = random.Random(1234)
    kills = 0
    try:
        while kills < 12:
            proc = _start_sink(env, "--follow")
            assert _kill_after_progress(proc, manifest, rng), "a following sink stopped by itself"
            kills += 1
    finally:
        stop.set()
        producer.join()
        manifest_watch.close()
    moved_by_killed_sinks = manifest.rows()
    print(f"follow: {kills} kills over {backlog.published} messages, {moved_by_killed_sinks} rows moved by them")
    manifest.close()
    final = bronze.run(crashy)  # restart once more, in drain mode, to finish the backlog
    assert final.status in {"success", "partial"}
    assert moved_by_killed_sinks > 0 and kills == 12
    _assert_exactly_once(crashy, backlog)


def _sink_processes(topic_env: dict[str, str]) -> list[int]:
    """Live (not zombie) processes running ``python -m ingestion.bronze`` with this test's topic."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if b"\x00ingestion.bronze\x00" not in (proc / "cmdline").read_bytes():
                continue
            if topic_env["WEATHERPIPE_KAFKA__TOPIC"].encode() not in (proc / "environ").read_bytes():
                continue
            if not is_zombie(int(proc.name)):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_drain_workers_exactly_once_under_repeated_sigkill(settings: Settings) -> None:
    """A drain runs in one worker process per partition. Kill the sink (the parent) with SIGKILL (10 times) while
    its workers write a backlog: the workers die with it, never writing behind the restarted sink, and every
    message ends up in bronze exactly once."""
    crashy, env = _sink_env(settings, chunk_records=DRAIN_CHUNK, flush_records=DRAIN_FLUSH, workers=3)
    backlog = Backlog(crashy, bad_every=101, hours=7)
    top_up = 3000
    backlog.publish(top_up)
    manifest = Manifest(crashy)
    rng = random.Random(4321)
    kills = runs = 0
    while kills < 10:
        runs += 1
        assert runs <= MAX_RUNS, f"only {kills} kills in {runs} runs: every other run drained its backlog"
        if backlog.good - manifest.rows() < top_up // 2:
            backlog.publish(top_up)  # close to the end: more backlog before the next run
        proc = _start_sink(env)
        if not _kill_after_progress(proc, manifest, rng):
            top_up *= 2  # this machine drains faster than the backlog lasted: a larger one next time
            continue
        kills += 1
        # the workers die with their parent (PR_SET_PDEATHSIG); an orphan would go on draining
        wait_for(lambda: not _sink_processes(env), what="the killed sink's workers to die")
    print(f"drain: {kills} kills in {runs} runs over {backlog.published} messages")  # shown with -s / -rP
    manifest.close()
    final = bronze.run(crashy)
    assert final.metrics.workers == 3
    _assert_exactly_once(crashy, backlog)


class Journal:
    """Compaction progress, read on one autocommit connection: journal rows written plus inputs retired."""

    def __init__(self, settings: Settings) -> None:
        self.conn = db.open_connection(settings.postgres.admin, autocommit=True)
        self.ops = f'"{settings.postgres.ops_schema}"'

    def steps(self) -> int:
        row = self.conn.execute(
            f"select (select count(*) from {self.ops}.bronze_compactions) + "
            f"(select count(*) from {self.ops}.bronze_manifest where retired_at is not null)"
        ).fetchone()
        return int(row[0])

    def close(self) -> None:
        self.conn.close()


def _wait_for_progress(proc: subprocess.Popen[bytes], journal: Journal) -> None:
    before = journal.steps()
    wait_for(lambda: journal.steps() != before or proc.poll() is not None, what="the compaction made progress")


def test_compaction_exactly_once_under_repeated_sigkill(settings: Settings) -> None:
    """Kill `python -m ingestion.bronze compact` with SIGKILL (10 times) at random moments after it made progress —
    between its journal row, its PUT, its manifest transaction and its deletes — restarting it each time; then
    every message is in the live objects exactly once, one object per date, and no object is left unnamed."""
    crashy, env = _sink_env(settings, chunk_records=2, flush_records=2, compact_lag_hours=0, compact_workers=2)
    env["WEATHERPIPE_BRONZE__COMPACT_GRACE_S"] = "0"  # retired objects are deleted in the same run: more to kill
    backlog = Backlog(crashy, bad_every=53, hours=1)
    dates, size = 0, 400

    def more_work(count: int) -> None:  # ``count`` messages over 20 new dates, in bronze and processed
        nonlocal dates
        first = backlog.published
        publish_raw(
            crashy,
            [
                b"garbage %d" % i if i % backlog.bad_every == 0 else envelope_bytes(i, 24 * (dates + i % 20))
                for i in range(first, first + count)
            ],
        )
        backlog.published += count
        dates += 20
        bronze.run(crashy)
        mark_processed(crashy)

    def late(date: int) -> None:  # one late event for a date that may be compacted already
        publish_raw(crashy, [envelope_bytes(backlog.published, 24 * date + 1)])
        backlog.published += 1
        bronze.run(crashy)
        mark_processed(crashy)

    more_work(size)
    journal = Journal(crashy)
    rng = random.Random(2468)
    kills = runs = 0
    while kills < 10:
        runs += 1
        assert runs <= MAX_RUNS, f"only {kills} kills in {runs} runs: every other run finished its compaction"
        proc = _start_sink(env, "compact")
        _wait_for_progress(proc, journal)
        threading.Event().wait(rng.uniform(0, 0.2))
        if proc.poll() is not None:
            size *= 2  # this machine compacts faster than the work lasted: more next time
            more_work(size)
            continue
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        late(rng.randrange(dates))  # the killed run's date may now have other inputs: its merged object is abandoned
    print(f"compaction: {kills} kills in {runs} runs over {backlog.published} messages, {dates} dates")
    journal.close()
    final = bronze.compact(crashy, grace_s=0)
    assert final.status == "success"
    live = live_bronze(crashy)
    ids = Counter(r["event_id"] for rows in live.values() for r in rows)
    assert sum(ids.values()) == backlog.good and max(ids.values()) == 1
    assert manifest_total(crashy) == backlog.good
    assert final.metrics.live_objects == final.metrics.dates_in_bronze == dates  # one object per date
    listed = {o.key for o in ObjectStore(crashy.s3).list(crashy.s3.bronze_prefix + "/")}
    assert listed == set(live)  # no merged object of a killed run, no retired object left behind
    with db.connect(crashy.postgres.admin) as conn:
        pending = conn.execute(f'select count(*) from "{crashy.postgres.ops_schema}".bronze_compactions '
                               "where committed_at is null").fetchone()[0]  # fmt: skip
    assert pending == 0


def _sink_env(settings: Settings, **bronze: Any) -> tuple[Settings, dict[str, str]]:
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


def _assert_exactly_once(crashy: Settings, backlog: Backlog) -> None:
    """Every good message in bronze once (by event id and by Kafka coordinates), every bad one dead-lettered
    once, and the manifest agrees."""
    rows = bronze_rows(crashy)
    assert len(rows) == backlog.good, f"{len(rows)} rows for {backlog.good} messages"
    assert max(Counter(r["event_id"] for r in rows).values()) == 1
    assert max(Counter((r["kafka_partition"], r["kafka_offset"]) for r in rows).values()) == 1
    dead = deadletters(crashy)
    assert len(dead) == backlog.bad
    assert len({(d["partition"], d["offset"]) for d in dead}) == len(dead)
    assert manifest_total(crashy) == backlog.good
