"""The error hierarchy (transient or terminal) and stage results."""

from __future__ import annotations

import pytest

from weatherpipe.errors import PipelineError, TransientError
from weatherpipe.results import StageResult, new_run_id, timed


# -- errors and results ---------------------------------------------------------------------------------------
def test_error_hierarchy_says_transient_or_terminal() -> None:
    from weatherpipe import errors

    assert errors.ServiceUnavailable("x").transient and errors.SourceError("x").transient
    for terminal in (
        errors.ConfigError,
        errors.SourceAuthError,
        errors.BudgetExceeded,
        errors.ExpectationFailed,
    ):
        assert not terminal("x").transient
        assert issubclass(terminal, PipelineError) and not issubclass(terminal, TransientError)


def test_timed_marks_failure_and_duration() -> None:
    result = StageResult("demo", new_run_id("test"))
    with pytest.raises(ValueError), timed(result):
        raise ValueError("bad")
    assert result.status == "failed" and result.error == "bad"
    assert result.finished_at is not None and result.duration_s >= 0
