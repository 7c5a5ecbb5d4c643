"""Progress meters: bars only where a display is shown, no-ops elsewhere."""

from __future__ import annotations

from weatherpipe import progress


def test_meters_are_silent_without_a_display() -> None:
    meter = progress.meter("bronze", "messages", total=10)
    meter.advance(3)
    meter.update(completed=5, total=20)  # nothing to see, nothing raised
    with progress.showing(enabled=False):
        assert progress.current() is None


def test_a_shown_meter_is_a_bar_with_its_count_and_total() -> None:
    with progress.showing(enabled=True):
        display = progress.current()
        meter = progress.meter("bronze", "messages", total=10)
        meter.advance(3)
        meter.advance(4)
        spinner = progress.meter("ingest", "observations")  # a total not known yet
        spinner.update(completed=12, total=12)
        bar, done = display.tasks
        assert (bar.description, bar.completed, bar.total) == ("bronze: messages", 7, 10)
        assert (done.description, done.completed, done.finished) == ("ingest: observations", 12, True)
    assert progress.current() is None
