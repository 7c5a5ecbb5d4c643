"""The ingest rate limiter."""

from __future__ import annotations

import time

from ingestion.sources.base import RateLimiter


def test_rate_limiter_spaces_calls() -> None:
    limiter = RateLimiter(calls=3, period=0.5)
    t0 = time.monotonic()
    for _ in range(7):
        limiter.acquire()
    assert time.monotonic() - t0 >= 1.0  # calls 4-6 wait one window, call 7 a second one
