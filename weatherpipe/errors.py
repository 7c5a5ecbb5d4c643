"""One error hierarchy for the whole pipeline.

Every error a user can hit is a ``PipelineError`` with a one-line message. ``transient`` says whether retrying
the same call later may succeed (a service down, a 429/5xx): orchestration retries those and fails fast on the
rest (bad key, bad config, a failed ``fail`` expectation).
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class: a clear, one-line, secret-free message for the user."""

    transient: bool = False
    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class TransientError(PipelineError):
    """Retrying later may succeed."""

    transient = True
    exit_code = 75  # EX_TEMPFAIL


class TerminalError(PipelineError):
    """Retrying will not help until something is changed."""

    exit_code = 1


class ConfigError(TerminalError):
    exit_code = 78  # EX_CONFIG


class ServiceUnavailable(TransientError):
    """Kafka, S3 or Postgres cannot be reached."""


class SourceError(TransientError):
    """A weather API failed in a way that may pass (429, 5xx, timeout, connection refused)."""


class SourceAuthError(TerminalError):
    """The weather API refused the key (401)."""


class BudgetExceeded(TerminalError):
    """The persisted monthly API call budget would be overspent."""


class DeliveryError(TransientError):
    """Not every message was confirmed by the broker."""


class ExpectationFailed(TerminalError):
    """A data-quality rule with action ``fail`` was broken: nothing was written."""


class StageFailed(TerminalError):
    """A downstream tool (dbt, Spark) reported failure."""
