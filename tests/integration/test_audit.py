"""The run audit in ops.pipeline_runs."""

from __future__ import annotations

from ingestion.ingest import IngestMetrics
from weatherpipe import audit, db
from weatherpipe.results import StageResult, timed
from weatherpipe.settings import Settings


def test_stage_result_recorded_and_upserted(settings: Settings) -> None:
    result = StageResult(
        "ingest",
        "run-audit-1",
        rows_in=10,
        rows_out=9,
        rows_rejected=1,
        objects=["a", "b"],
        offsets={"0": [0, 5]},
        metrics=IngestMetrics(source="replay", failed_cities={"x": "city not found"}),
    )
    with timed(result):
        pass
    audit.record_result(settings, result)
    result.rows_out = 10
    audit.record_result(settings, result)  # a rerun replaces the row
    with db.connect(settings.postgres.admin) as conn:
        rows = conn.execute(
            f'select rows_in, rows_out, rows_rejected, object_count, details from "{settings.postgres.ops_schema}"'
            ".pipeline_runs where run_id = 'run-audit-1'"
        ).fetchall()
    assert rows == [(10, 10, 1, 2, result.metrics.to_dict())]
    assert IngestMetrics.from_dict(rows[0][4]) == result.metrics  # read back typed
