"""Standard ``logging`` set up once: JSON lines (or a human format on a terminal), with secrets redacted.

``stage`` and ``run_id`` come from context variables set by ``log_context`` so every line a stage emits
carries them without threading them through each call.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from weatherpipe.settings import Settings, load_settings

_stage: contextvars.ContextVar[str | None] = contextvars.ContextVar("stage", default=None)
_run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)

REDACTED = "***"
# The OpenWeather key travels in the query string; catch it even when it is not (yet) a configured secret.
_QUERY_SECRET = re.compile(r"(?i)\b(appid|api_key|apikey|password|secret|token)=([^&\s'\"]+)")
_STD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "stage", "run_id"}


@contextlib.contextmanager
def log_context(stage: str | None = None, run_id: str | None = None) -> Iterator[None]:
    tokens = []
    if stage is not None:
        tokens.append((_stage, _stage.set(stage)))
    if run_id is not None:
        tokens.append((_run_id, _run_id.set(run_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class Redactor:
    """Replaces configured secret values and ``appid=...``-style query secrets in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def add(self, *secrets: str) -> None:
        self._secrets = sorted(set(self._secrets) | {s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _QUERY_SECRET.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


REDACT = Redactor()


class RedactingFilter(logging.Filter):
    """Rewrites the message, its arguments and any exception text before a handler formats them."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = REDACT(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = REDACT(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        for key, value in list(vars(record).items()):
            if key not in _STD_ATTRS and isinstance(value, str):
                setattr(record, key, REDACT(value))
        record.stage = getattr(record, "stage", None) or _stage.get()
        record.run_id = getattr(record, "run_id", None) or _run_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "stage": getattr(record, "stage", None),
            "run_id": getattr(record, "run_id", None),
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and key not in out:
                out[key] = value
        if record.exc_text:
            out["exception"] = record.exc_text
        return REDACT(json.dumps(out, default=str, ensure_ascii=False))


class HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stage = getattr(record, "stage", None)
        head = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {f'[{stage}] ' if stage else ''}"
        extras = {k: v for k, v in vars(record).items() if k not in _STD_ATTRS}
        tail = " " + " ".join(f"{k}={v}" for k, v in extras.items()) if extras else ""
        text = head + record.getMessage() + tail
        if record.exc_text:
            text += "\n" + record.exc_text
        return REDACT(text)


def configure_logging(level: str = "INFO", fmt: str = "auto", secrets: Iterable[str] = ()) -> None:
    """Idempotent: replaces the handler this function installed before, leaves others alone."""
    REDACT.add(*secrets)
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        if getattr(handler, "_weatherpipe", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._weatherpipe = True  # type: ignore[attr-defined]
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler.setFormatter(JsonFormatter() if use_json else HumanFormatter())
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    for noisy in ("kafka", "botocore", "urllib3", "py4j", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # kafka-python's event loop warns whenever a task runs over 100 ms: on a busy 2-core machine, every big publish
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
    # and its client logs an ERROR when closing cancels a metadata refresh in flight: not an error of ours
    logging.getLogger("kafka.cluster").addFilter(_not_a_cancelled_refresh)


def _not_a_cancelled_refresh(record: logging.LogRecord) -> bool:
    return not record.getMessage().endswith("failed Cancelled")


def bootstrap(fmt: str | None = None) -> Settings:
    """How every entry point starts (CLI, Airflow task bodies, ``python -m`` of a stage): load the settings, then
    configure logging from them — level, format (``fmt`` overrides, e.g. JSON for task logs) and the secrets to
    redact."""
    settings = load_settings()
    configure_logging(settings.log_level, fmt or settings.log_format, settings.secrets())
    return settings
