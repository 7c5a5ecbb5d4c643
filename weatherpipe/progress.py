"""Progress of long stages: a bar where someone watches a terminal, nothing anywhere else.

A stage asks for a ``Meter`` (``meter("bronze", "messages", total)``) and advances it as it works; it never knows
whether anything is shown. An entry point that talks to a terminal wraps the run in ``showing()``: then each meter is
a bar with its count, rate and ETA (a spinner while the total is unknown). Elsewhere — Airflow tasks, tests, logs —
every meter is a no-op. The display lives in a context variable; a meter, once made, may be advanced from any
thread.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class Meter(Protocol):
    def advance(self, n: int = 1) -> None: ...
    def update(self, *, completed: int | None = None, total: int | None = None) -> None: ...


class _Silent:
    def advance(self, n: int = 1) -> None:
        pass

    def update(self, *, completed: int | None = None, total: int | None = None) -> None:
        pass


class _Bar:
    def __init__(self, display: Any, task: Any) -> None:
        self.display, self.task = display, task

    def advance(self, n: int = 1) -> None:
        self.display.advance(self.task, n)

    def update(self, *, completed: int | None = None, total: int | None = None) -> None:
        fields: dict[str, int] = {}
        if completed is not None:
            fields["completed"] = completed
        if total is not None:
            fields["total"] = total
        self.display.update(self.task, **fields)


_display: contextvars.ContextVar[Any] = contextvars.ContextVar("weatherpipe_progress", default=None)


def current() -> Any:
    """The display meters are shown on (a ``rich.progress.Progress``), or None."""
    return _display.get()


def meter(stage: str, unit: str, total: int | None = None) -> Meter:
    """A meter of ``unit`` for ``stage``: a bar under ``showing()``, else a no-op."""
    display = _display.get()
    if display is None:
        return _Silent()
    return _Bar(display, display.add_task(f"{stage}: {unit}", total=total))


def echo(markup: str) -> None:
    """A line above the bars (rich markup), or on stderr when none are shown."""
    display = _display.get()
    if display is not None:
        display.console.print(markup)
        return
    from rich.console import Console  # noqa: PLC0415

    Console(stderr=True).print(markup)


@contextmanager
def showing(enabled: bool | None = None) -> Iterator[None]:
    """Show every meter made inside as a bar on stderr (by default only when stderr is a terminal)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield
        return
    from rich.console import Console  # noqa: PLC0415 - only where a terminal watches
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    display = Progress(
        SpinnerColumn(),
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    token = _display.set(display)
    try:
        with display:
            yield
    finally:
        _display.reset(token)
