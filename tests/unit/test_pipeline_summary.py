"""The one-screen summary `weatherpipe run` prints."""

from __future__ import annotations

from weatherpipe.pipeline import PipelineSummary, render_summary
from weatherpipe.settings import load_settings


def test_the_run_summary_states_its_window_in_utc() -> None:
    """The default window is given in New York's local time; the summary line says UTC, so it must convert."""
    settings = load_settings(_env_file=None)
    pipeline = settings.pipeline
    summary = PipelineSummary("r", "replay", pipeline.replay_default_start, pipeline.replay_default_end)
    first = render_summary(settings, summary).splitlines()[0]
    assert first.endswith("source replay, 2013-01-01 05:00 → 2013-02-01 05:00 UTC")


def test_each_stage_reconciles_its_own_counts_and_reads_back_typed() -> None:
    """The checks come from each stage's metrics class; an audit row's JSON reads back as the same metrics."""
    from ingestion.bronze.stage import BronzeMetrics
    from ingestion.ingest import IngestMetrics
    from spark_jobs.silver import SilverMetrics
    from weatherpipe.pipeline import reconcile
    from weatherpipe.results import StageResult

    silver = SilverMetrics(inserted=5, updated=1, stale_vs_staging=2, duplicates_in_batch=3)
    results = {
        "ingest": StageResult("ingest", "r", rows_in=12, rows_out=12, metrics=IngestMetrics(source="replay")),
        "bronze": StageResult("bronze", "r", rows_in=12, rows_out=11, rows_rejected=1, metrics=BronzeMetrics()),
        "silver": StageResult("silver", "r", rows_in=11, rows_out=6, rows_rejected=0, metrics=silver),
    }
    checks = reconcile(results)
    assert [c.name for c in checks if not c.ok] == []
    results["silver"].rows_in = 12  # one row unaccounted for
    failed = [c for c in reconcile(results) if not c.ok]
    assert [c.name for c in failed] == ["silver: read = upserted + stale + duplicates + quarantined"]
    assert failed[0].detail == "12 = 5 + 1 + 2 + 3 + 0"
    assert SilverMetrics.from_dict({**silver.to_dict(), "from_a_newer_version": 1}) == silver
