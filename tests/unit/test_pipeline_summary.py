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
