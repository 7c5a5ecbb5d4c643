"""The weather-source interface and the HTTP plumbing the real providers share.

A source yields ``Observation`` (one city at one time, with the provider's raw payload) or ``FetchFailure`` (one
city that failed, with the reason) — a failing city never stops the others. Terminal problems that concern every
city (a refused key, an exhausted budget) raise instead.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from tenacity import RetryCallState, retry, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from ingestion.cities import City
from weatherpipe.errors import PipelineError, SourceError, TerminalError
from weatherpipe.settings import ApiSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Observation:
    city_id: str
    observed_at: dt.datetime
    payload: dict[str, Any]


@dataclass(frozen=True)
class FetchFailure:
    city_id: str
    reason: str
    transient: bool


FetchItem = Observation | FetchFailure


class WeatherSource(Protocol):
    name: str

    def fetch(self, cities: list[City], start: dt.datetime | None, end: dt.datetime | None) -> Iterator[FetchItem]:
        """Observations for ``cities`` (within ``[start, end)`` where the source has history)."""
        ...


class CityFailed(TerminalError):
    """This city's request failed for good (404, bad body): reported, the others go on."""


class HttpStatusError(SourceError):
    def __init__(self, message: str, status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RateLimiter:
    """At most ``calls`` per ``period`` seconds (sliding window), shared by the threads of one process."""

    def __init__(self, calls: int, period: float = 60.0) -> None:
        self.calls, self.period = calls, period
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Blocks until a call is allowed; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                while self._stamps and now - self._stamps[0] >= self.period:
                    self._stamps.popleft()
                if len(self._stamps) < self.calls:
                    self._stamps.append(now)
                    return waited
                pause = self.period - (now - self._stamps[0])
            time.sleep(pause)
            waited += pause


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _wait_strategy(api: ApiSettings) -> Any:
    exponential = wait_exponential_jitter(initial=api.backoff_initial_s, max=api.backoff_max_s)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(float(retry_after), api.backoff_max_s)
        return float(exponential(state))

    return wait


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning(
        "transient API error, retrying",
        extra={"attempt": state.attempt_number, "error": str(exc), "sleep_s": round(state.upcoming_sleep, 2)},
    )


class HttpClient:
    """GET JSON with bounded retries (tenacity: exponential backoff + jitter, honouring ``Retry-After``) on
    429, 5xx, timeouts and connection errors only. Error texts never include the request URL: it may carry
    the API key."""

    def __init__(self, api: ApiSettings, provider: str, limiter: RateLimiter | None = None) -> None:
        self.api = api
        self.provider = provider
        self.limiter = limiter
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "weatherpipe/0.1"
        self.calls = 0
        self._get = retry(
            retry=retry_if_exception(lambda e: isinstance(e, PipelineError) and e.transient),
            stop=stop_after_attempt(api.max_attempts),
            wait=_wait_strategy(api),
            before_sleep=_log_retry,
            reraise=True,
        )(self._get_once)

    def get_json(self, url: str, params: dict[str, Any], what: str) -> tuple[int, Any]:
        """Returns (status, body) for 2xx and for 4xx other than 429; raises on transient errors after retries."""
        return self._get(url, params, what)

    def _get_once(self, url: str, params: dict[str, Any], what: str) -> tuple[int, Any]:
        if self.limiter is not None:
            self.limiter.acquire()
        self.calls += 1
        try:
            resp = self.session.get(url, params=params, timeout=self.api.timeout_s)
        except requests.Timeout:
            raise SourceError(f"{self.provider}: timeout after {self.api.timeout_s:g}s for {what}") from None
        except requests.ConnectionError:
            raise SourceError(f"{self.provider}: cannot connect to {_host(url)} for {what}") from None
        except requests.RequestException as exc:
            raise SourceError(f"{self.provider}: request failed for {what} ({type(exc).__name__})") from None
        if resp.status_code == 429 or resp.status_code >= 500:
            raise HttpStatusError(
                f"{self.provider}: HTTP {resp.status_code} for {what}",
                resp.status_code,
                parse_retry_after(resp.headers.get("Retry-After")),
            )
        try:
            body = resp.json()
        except (ValueError, json.JSONDecodeError):
            if resp.ok:
                raise CityFailed(f"{self.provider}: response for {what} is not JSON") from None
            body = None
        return resp.status_code, body


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc
