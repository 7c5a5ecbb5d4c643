"""The typed result every stage returns (``StageResult[Metrics]``), and the run identity stages share.

Every stage fills the common counts (rows in, out, rejected; objects) and its own ``Metrics`` dataclass, which owns
the stage's reconciliation (``Metrics.checks``): what its counts must add up to. The audit row stores the metrics
as JSON; ``Metrics.from_dict`` reads them back typed (``weatherpipe status``, the Airflow reconcile task)."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Generic, Literal, TypeVar

Status = Literal["success", "partial", "failed"]
log = logging.getLogger("weatherpipe.stage")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_run_id(prefix: str = "manual") -> str:
    return f"{prefix}__{utcnow():%Y%m%dT%H%M%SZ}__{uuid.uuid4().hex[:8]}"


@dataclass
class Check:
    """One reconciliation check: its name, whether it holds, and the numbers that say so."""

    name: str
    ok: bool
    detail: str


@dataclass
class Counts:
    """The counts every stage reports (its audit row's columns), as reconciliation reads them."""

    rows_in: int = 0
    rows_out: int = 0
    rows_rejected: int = 0


@dataclass
class Metrics:
    """A stage's own facts beyond the common counts. Subclasses are dataclasses of JSON-able fields."""

    def checks(self, counts: Counts) -> list[Check]:
        """What this stage's counts must add up to (none by default)."""
        return []

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Metrics:
        """The metrics of an audit row (fields unknown to this version are ignored, missing ones default)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in names})


M = TypeVar("M", bound=Metrics)


@dataclass
class StageResult(Generic[M]):
    stage: str
    run_id: str
    status: Status = "success"
    rows_in: int = 0
    rows_out: int = 0
    rows_rejected: int = 0
    objects: list[str] = field(default_factory=list)
    offsets: dict[str, Any] = field(default_factory=dict)
    interval_start: dt.datetime | None = None
    interval_end: dt.datetime | None = None
    started_at: dt.datetime = field(default_factory=utcnow)
    finished_at: dt.datetime | None = None
    metrics: M = field(default_factory=Metrics)  # type: ignore[assignment]  # each stage sets its own class
    error: str | None = None

    @property
    def counts(self) -> Counts:
        return Counts(self.rows_in, self.rows_out, self.rows_rejected)

    @property
    def duration_s(self) -> float:
        end = self.finished_at or utcnow()
        return round((end - self.started_at).total_seconds(), 3)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "metrics"}
        data["metrics"] = self.metrics.to_dict()
        data["duration_s"] = self.duration_s
        return data

    def summary(self) -> dict[str, Any]:
        """What goes on the one log line per stage result."""
        return {
            "status": self.status,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rows_rejected": self.rows_rejected,
            "objects": len(self.objects),
            "duration_s": self.duration_s,
        }


@contextmanager
def timed(result: StageResult, on_finish: Callable[[StageResult], None] | None = None) -> Iterator[StageResult]:
    """Stamps start/finish, marks the result failed on error, logs exactly one line for it, then calls
    ``on_finish`` (the audit) with the final result."""
    result.started_at = utcnow()
    t0 = time.perf_counter()
    try:
        yield result
    except BaseException as exc:
        result.status = "failed"
        result.error = str(exc) or type(exc).__name__
        raise
    finally:
        result.finished_at = result.started_at + dt.timedelta(seconds=time.perf_counter() - t0)
        level = logging.INFO if result.status == "success" else logging.WARNING
        log.log(
            level,
            "stage %s %s",
            result.stage,
            result.status,
            extra={"stage": result.stage, "run_id": result.run_id, **result.summary()},
        )
        if on_finish is not None:
            on_finish(result)
