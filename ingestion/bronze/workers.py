"""A drain in worker processes: one per share of the topic's partitions, each dying with its parent."""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import signal
from multiprocessing.connection import Connection
from typing import Any

import pyarrow as pa

from ingestion.bronze.sink import SinkOutcome, sink_partitions
from weatherpipe import progress
from weatherpipe.errors import PipelineError, TransientError
from weatherpipe.settings import Settings
from weatherpipe.storage import ObjectStore


def drain_workers(settings: Settings) -> int:
    """Worker processes for a drain: one per partition (the topic's configured count), at most two per core;
    ``bronze.workers`` overrides. Like a Kafka Connect sink's tasks, each owns its partitions outright."""
    if settings.bronze.workers:
        return settings.bronze.workers
    return max(1, min(settings.kafka.partitions, 2 * (os.cpu_count() or 1)))


def drain_in_workers(settings: Settings, run_id: str, workers: int) -> SinkOutcome:
    """Fork one process per share of partitions. Each dies with this process (PR_SET_PDEATHSIG), so a killed
    sink never leaves a worker writing behind a restarted one; exactly-once holds per partition as in one process."""
    ctx = multiprocessing.get_context("fork")  # the imports are done: a worker starts in milliseconds
    # one-time costs paid here, not once per worker: pyarrow imports pandas on its first array (0.5 s), botocore
    # loads its service model on the first client (0.2 s) and builds each client (15 ms). The workers inherit the
    # client: it has opened no connection yet, so each child starts with an empty pool of its own. (Not the entry
    # point's client: an earlier stage may have left connections in its pool, and two children must never share
    # an inherited socket.)
    pa.array([0])
    store = ObjectStore(settings.s3)
    prctl = _prctl()
    parent = os.getpid()
    tally = SharedTally(ctx)
    bar = progress.meter("bronze", "messages")
    procs = []
    for worker in range(workers):
        receiver, sender = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_worker_main,
            args=(sender, parent, prctl, settings, run_id, worker, workers, store, tally),
            name=f"bronze-worker-{worker}",
            daemon=True,
        )
        proc.start()
        sender.close()
        procs.append((proc, receiver))
    outcome, errors = SinkOutcome(), []
    for worker, (proc, receiver) in enumerate(procs):
        while not receiver.poll(0.2):  # the workers' counts on the bar meanwhile
            bar.update(completed=tally.read.value, total=tally.total.value or None)
        bar.update(completed=tally.read.value, total=tally.total.value or None)
        try:
            kind, value = receiver.recv()
        except EOFError:
            kind, value = "died", None
        proc.join()
        if kind == "ok":
            outcome.merge(value)
        elif kind == "error":
            cls, message, hint = value
            errors.append(cls(message, hint=hint) if issubclass(cls, PipelineError) else RuntimeError(message))
        else:
            errors.append(
                TransientError(
                    f"bronze worker {worker} died (exit code {proc.exitcode}); its offsets were not "
                    "committed, so the next run rewrites its objects"
                )
            )
    if errors:
        raise errors[0]
    return outcome


def _worker_main(
    sender: Connection,
    parent: int,
    prctl: Any,
    settings: Settings,
    run_id: str,
    worker: int,
    workers: int,
    store: ObjectStore,
    tally: SharedTally,
) -> None:
    _die_with(parent, prctl)
    # what the parent built stays put: the collector never walks it (and never dirties its copy-on-write pages),
    # and collects rarely among the sink's many short-lived, acyclic objects
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    try:
        outcome = sink_partitions(settings, store, run_id, follow=False, worker=worker, workers=workers, tally=tally)
        message: tuple[str, Any] = ("ok", outcome)
    except BaseException as exc:  # sent to the parent, which raises it
        message = (
            "error",
            (type(exc), str(exc) if not isinstance(exc, PipelineError) else exc.message, getattr(exc, "hint", None)),
        )
    try:
        sender.send(message)
    finally:
        sender.close()
        os._exit(0)  # no atexit/finalisers: the parent's inherited connections are not ours to close


class SharedTally:
    """The workers' progress in shared memory, for the parent's bar."""

    def __init__(self, ctx: Any) -> None:
        self.total = ctx.Value("q", 0)
        self.read = ctx.Value("q", 0)

    def add_total(self, n: int) -> None:
        with self.total.get_lock():
            self.total.value += n

    def advance(self, n: int) -> None:
        with self.read.get_lock():
            self.read.value += n


def _prctl() -> Any:
    """libc's prctl, resolved in the parent: ``ctypes.util.find_library`` runs ldconfig in a subprocess, a fork of a
    large process per worker. The running program's own symbols include libc's on Linux."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _die_with(parent: int, prctl: Any) -> None:
    """SIGKILL this process when its parent dies (Linux); exit at once if it already has."""
    if prctl is not None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)
