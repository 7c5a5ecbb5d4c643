"""JSON logging: one line per record with its context, every secret redacted."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging

from weatherpipe.log import REDACT, JsonFormatter, RedactingFilter, configure_logging, log_context


# -- logging --------------------------------------------------------------------------------------------------
def _capture(secret: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger(f"test.redact.{secret}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    REDACT.add(secret)
    return logger, stream


def test_json_lines_carry_stage_and_run_id() -> None:
    logger, stream = _capture("unused-secret-xyz")
    with log_context(stage="ingest", run_id="r-1"):
        logger.info("fetched %d cities", 3, extra={"source": "replay"})
    record = json.loads(stream.getvalue())
    assert record["stage"] == "ingest" and record["run_id"] == "r-1"
    assert record["message"] == "fetched 3 cities" and record["source"] == "replay"
    assert dt.datetime.fromisoformat(record["time"]).tzinfo is not None


def test_secrets_redacted_in_message_args_extras_and_exceptions() -> None:
    secret = "sekret-canary-9f8e7d"
    logger, stream = _capture(secret)
    logger.info("calling https://api.example/data?appid=%s&q=x", secret, extra={"url": f"x?appid={secret}"})
    try:
        raise RuntimeError(f"boom with {secret}")
    except RuntimeError:
        logger.exception("failed")
    logger.info("an unconfigured key in a URL: https://h/p?lat=1&appid=abcdef0123456789")
    text = stream.getvalue()
    assert secret not in text
    assert "abcdef0123456789" not in text
    assert text.count("***") >= 4


def test_configure_logging_is_idempotent() -> None:
    configure_logging("INFO", "json")
    configure_logging("INFO", "json")
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_weatherpipe", False)]
    assert len(ours) == 1
