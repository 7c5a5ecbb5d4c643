"""The bronze stage: drain (or follow) the topic into bronze, and its result."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from ingestion.bronze.sink import sink_partitions
from ingestion.bronze.workers import drain_in_workers, drain_workers
from weatherpipe.audit import stage_scope
from weatherpipe.resources import Resources
from weatherpipe.results import Check, Counts, Metrics, StageResult, new_run_id
from weatherpipe.settings import Settings


@dataclass
class BronzeMetrics(Metrics):
    """``rows_in`` messages read, ``rows_out`` written to bronze objects, ``rows_rejected`` dead-lettered."""

    deadletter_reasons: dict[str, int] = field(default_factory=dict)
    mode: str = "drain"
    workers: int = 1

    def checks(self, counts: Counts) -> list[Check]:
        total = counts.rows_out + counts.rows_rejected
        return [
            Check(
                "bronze: read = written + dead-lettered",
                counts.rows_in == total,
                f"{counts.rows_in} read = {counts.rows_out} + {counts.rows_rejected}",
            )
        ]


def run(
    settings: Settings, *, follow: bool = False, run_id: str | None = None, resources: Resources | None = None
) -> StageResult[BronzeMetrics]:
    """Drain (or follow) the topic into bronze. A drain runs in ``drain_workers`` processes; follow in this one."""
    run_id = run_id or new_run_id("bronze")
    result = StageResult("bronze", run_id, metrics=BronzeMetrics())
    res = Resources.of(settings, resources)
    with stage_scope(settings, result):
        workers = 1 if follow else drain_workers(settings)
        if workers == 1:
            outcome = sink_partitions(settings, res.store, run_id, follow=follow)
        else:
            outcome = drain_in_workers(settings, run_id, workers)  # its children build their own client
        result.rows_in = outcome.read
        result.rows_out = sum(w.rows for w in outcome.written if w.hour is not None)
        result.rows_rejected = sum(w.rows for w in outcome.written if w.hour is None)
        result.objects = [w.key for w in outcome.written]
        result.offsets = {
            str(p): {"from": o, "to": outcome.positions.get(p, o)} for p, o in sorted(outcome.start.items())
        }
        reasons: dict[str, int] = defaultdict(int)
        for w in outcome.written:
            for reason, n in w.reasons.items():
                reasons[reason] += n
        result.metrics = BronzeMetrics(dict(reasons), "follow" if follow else "drain", workers)
        if result.rows_rejected:
            result.status = "partial"
    return result
