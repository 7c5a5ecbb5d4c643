"""The typed result every stage returns, and the run identity stages share."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["success", "partial", "failed"]
log = logging.getLogger("weatherpipe.stage")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_run_id(prefix: str = "manual") -> str:
    return f"{prefix}__{utcnow():%Y%m%dT%H%M%SZ}__{uuid.uuid4().hex[:8]}"


@dataclass
class StageResult:
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
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def duration_s(self) -> float:
        end = self.finished_at or utcnow()
        return round((end - self.started_at).total_seconds(), 3)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
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
