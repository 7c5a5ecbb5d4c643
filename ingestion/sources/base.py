"""The weather-source interface and the HTTP plumbing the real providers share.

A source yields ``Observation`` (one city at one time, with the provider's payload) or ``FetchFailure`` (one city
that failed, with the reason, and the body it was rejected for) — a failing city never stops the others, whatever
its answer holds. Terminal problems that concern every city (a refused key) raise instead.

Invariants of ``HttpClient``:
- every HTTP attempt, retries included, is paid for before it is made (``CallBudget.reserve(1)``): an attempt
  the monthly budget cannot afford is never started;
- a ``Retry-After`` is honoured as asked, up to ``api.max_retry_after_s``; asked to wait longer, the call fails
  as transient at once, without calling again;
- after ``api.circuit_breaker_failures`` connection failures in a row (across cities: refused, no route, DNS),
  the provider is ``ProviderUnreachable`` and no further call is made by this client;
- the body of a 2xx answer is returned as the bytes received, beside its parsed form, so the envelope carries the
  provider's payload byte for byte.
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
from urllib.parse import urlsplit

import requests
from tenacity import RetryCallState, retry, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from weatherpipe.cities import City
from weatherpipe.errors import PipelineError, SourceError, TerminalError
from weatherpipe.settings import ApiSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Observation:
    """One city at one time. ``raw`` is the payload's JSON bytes exactly as received (None where the source builds
    the payload itself: the replay's CSV rows, the archive's row views); ``payload`` is its parsed form."""

    city_id: str
    observed_at: dt.datetime
    payload: dict[str, Any]
    raw: bytes | None = None


@dataclass(frozen=True)
class FetchFailure:
    """One city that yielded nothing, and why. ``body`` is the answer it was rejected for, if any (kept in the
    source dead letter)."""

    city_id: str
    reason: str
    transient: bool
    body: bytes | None = None


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, parsed JSON body (None when not JSON) and the bytes received."""

    status: int
    body: Any
    raw: bytes


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


class BadBody(CityFailed):
    """A 2xx answer whose body cannot be used; the body travels with the error to the source dead letter."""

    def __init__(self, message: str, body: bytes) -> None:
        super().__init__(message)
        self.body = body


class ProviderUnreachable(SourceError):
    """Several connection failures in a row: the provider (or the network to it) is down. Transient, but never
    retried by the client that opened the circuit: the run stops calling."""


def epoch_seconds(value: Any, what: str) -> dt.datetime:
    """A provider's Unix time in seconds, checked: milliseconds, negative or absurd values fail that city."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CityFailed(f"{what} is not a Unix time: {value!r}")
    if not 0 <= value < 4_102_444_800:  # 1970-01-01 .. 2100-01-01, in seconds
        raise CityFailed(f"{what} is out of range for a Unix time in seconds: {value!r}")
    return dt.datetime.fromtimestamp(value, dt.UTC)


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


def _retry_after(state: RetryCallState) -> float | None:
    exc = state.outcome.exception() if state.outcome else None
    value = getattr(exc, "retry_after", None)
    return None if value is None else float(value)


def _wait_strategy(api: ApiSettings) -> Any:
    exponential = wait_exponential_jitter(multiplier=api.backoff_initial_s, max=api.backoff_max_s)

    def wait(state: RetryCallState) -> float:
        asked = _retry_after(state)
        return asked if asked is not None else float(exponential(state))  # the stop below caps what is asked

    return wait


def _stop_strategy(api: ApiSettings) -> Any:
    attempts = stop_after_attempt(api.max_attempts)

    def stop(state: RetryCallState) -> bool:
        asked = _retry_after(state)
        return attempts(state) or (asked is not None and asked > api.max_retry_after_s)

    return stop


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, PipelineError) and exc.transient and not isinstance(exc, ProviderUnreachable)


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning(
        "transient API error, retrying",
        extra={"attempt": state.attempt_number, "error": str(exc), "sleep_s": round(state.upcoming_sleep, 2)},
    )


class CallBudget(Protocol):
    def reserve(self, calls: int) -> int: ...


class HttpClient:
    """GET JSON with bounded retries (tenacity: exponential backoff + jitter, honouring ``Retry-After``) on
    429, 5xx, timeouts and connection errors only; see the module's invariants. Error texts never include the
    request URL: it may carry the API key."""

    def __init__(
        self,
        api: ApiSettings,
        provider: str,
        limiter: RateLimiter | None = None,
        budget: CallBudget | None = None,
    ) -> None:
        self.api = api
        self.provider = provider
        self.limiter = limiter
        self.budget = budget
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "weatherpipe/0.1"
        self.calls = 0
        self.connection_failures = 0  # in a row, across cities
        self._get = retry(
            retry=retry_if_exception(_retryable),
            stop=_stop_strategy(api),
            wait=_wait_strategy(api),
            before_sleep=_log_retry,
            reraise=True,
        )(self._get_once)

    def get_json(self, url: str, params: dict[str, Any], what: str) -> Answer:
        """The answer for 2xx and for 4xx other than 429; raises on transient errors after retries, and
        ``BadBody`` for a 2xx body that is not JSON."""
        return self._get(url, params, what)

    def _get_once(self, url: str, params: dict[str, Any], what: str) -> Answer:
        if self.connection_failures >= self.api.circuit_breaker_failures:
            raise self._unreachable(url)
        if self.budget is not None:
            self.budget.reserve(1)  # BudgetExceeded is terminal: never retried
        if self.limiter is not None:
            self.limiter.acquire()
        self.calls += 1
        try:
            resp = self.session.get(url, params=params, timeout=self.api.timeout_s)
        except (requests.ConnectionError, requests.ConnectTimeout):
            self.connection_failures += 1
            if self.connection_failures >= self.api.circuit_breaker_failures:
                raise self._unreachable(url) from None
            raise SourceError(f"{self.provider}: cannot connect to {_host(url)} for {what}") from None
        except requests.Timeout:
            self.connection_failures = 0  # it answered the connection
            raise SourceError(f"{self.provider}: timeout after {self.api.timeout_s:g}s for {what}") from None
        except requests.RequestException as exc:
            raise SourceError(f"{self.provider}: request failed for {what} ({type(exc).__name__})") from None
        self.connection_failures = 0
        if resp.status_code == 429 or resp.status_code >= 500:
            raise HttpStatusError(
                f"{self.provider}: HTTP {resp.status_code} for {what}",
                resp.status_code,
                parse_retry_after(resp.headers.get("Retry-After")),
            )
        raw = resp.content
        try:
            body = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            if resp.ok:
                raise BadBody(f"{self.provider}: response for {what} is not JSON ({_why(exc)})", raw) from None
            body = None
        return Answer(resp.status_code, body, raw)

    def _unreachable(self, url: str) -> ProviderUnreachable:
        return ProviderUnreachable(
            f"{self.provider} is unreachable at {_host(url)} ({self.connection_failures} connection failures in a row)",
            hint="check the network and the provider's status; the next run tries again",
        )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-JSON token {name}")


def _why(exc: Exception) -> str:
    return str(exc).split(":")[0] if isinstance(exc, json.JSONDecodeError) else str(exc)


def _host(url: str) -> str:
    return urlsplit(url).netloc
