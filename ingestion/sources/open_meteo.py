"""Open-Meteo (no key): current conditions for many cities in one call, and the archive for backfills.

A multi-location answer is a JSON list in request order; each city's payload is its element's bytes exactly as
received. The provider has been seen to emit bodies that are not JSON (a bare ``nan``): such a batch is asked
again one city per request, so only the city whose own answer is bad fails (its body kept in the dead letter).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import msgspec

from ingestion.sources.base import (
    BadBody,
    CityFailed,
    FetchFailure,
    FetchItem,
    HttpClient,
    Observation,
    ProviderUnreachable,
)
from weatherpipe.cities import City
from weatherpipe.errors import PipelineError
from weatherpipe.settings import Settings

CURRENT_VARIABLES = (
    "temperature_2m",
    "relative_humidity_2m",
    "apparent_temperature",
    "is_day",
    "precipitation",
    "rain",
    "snowfall",
    "weather_code",
    "cloud_cover",
    "pressure_msl",
    "surface_pressure",
    "wind_speed_10m",
    "wind_direction_10m",
    "wind_gusts_10m",
)
HOURLY_VARIABLES = (*CURRENT_VARIABLES, "visibility")
BATCH = 50  # locations per request


def _error(status: int, body: Any) -> str:
    reason = body.get("reason") if isinstance(body, dict) else None
    return f"Open-Meteo HTTP {status}: {reason or 'no reason given'}"


def _as_list(body: Any) -> list[dict[str, Any]]:
    """One location answers with an object, several with a list in request order."""
    items = body if isinstance(body, list) else [body]
    if not all(isinstance(i, dict) for i in items):
        raise CityFailed("Open-Meteo answered with an unexpected body shape")
    return items


def _raw_items(raw: bytes) -> list[bytes]:
    """The bytes of each location's object, as received (one object, or a list of them)."""
    if raw.lstrip()[:1] == b"[":
        return [bytes(item) for item in msgspec.json.decode(raw, type=list[msgspec.Raw])]
    return [raw]


def _parse_time(value: Any, utc_offset_s: Any) -> dt.datetime:
    local = dt.datetime.fromisoformat(str(value))
    offset = dt.timedelta(seconds=int(utc_offset_s or 0))
    return (local - offset).replace(tzinfo=dt.UTC)


class OpenMeteoSource:
    """Current conditions (``/v1/forecast?current=…``) for every city, 50 locations per call."""

    name = "open-meteo"

    def __init__(self, settings: Settings) -> None:
        self.api = settings.api
        self.http = HttpClient(self.api, "Open-Meteo")

    def fetch(
        self, cities: list[City], start: dt.datetime | None = None, end: dt.datetime | None = None
    ) -> Iterator[FetchItem]:
        url = f"{self.api.open_meteo_base_url.rstrip('/')}/v1/forecast"
        for i in range(0, len(cities), BATCH):
            yield from self._batch(url, cities[i : i + BATCH])

    def _batch(self, url: str, batch: list[City]) -> Iterator[FetchItem]:
        params = {
            "latitude": ",".join(f"{c.lat:g}" for c in batch),
            "longitude": ",".join(f"{c.lon:g}" for c in batch),
            "current": ",".join(CURRENT_VARIABLES),
            "timezone": "GMT",
        }
        try:
            answer = self.http.get_json(url, params, f"{len(batch)} locations")
            if answer.status != 200:
                raise CityFailed(_error(answer.status, answer.body))
            items = _as_list(answer.body)
            if len(items) != len(batch):
                raise CityFailed(f"Open-Meteo returned {len(items)} locations for {len(batch)} requested")
            raws = _raw_items(answer.raw)
        except ProviderUnreachable:
            raise
        except BadBody as exc:
            if len(batch) > 1:  # one bad token must not fail every city of the request: ask one by one
                for city in batch:
                    yield from self._batch(url, [city])
                return
            yield FetchFailure(batch[0].id, str(exc), exc.transient, exc.body)
            return
        except PipelineError as exc:
            yield from (FetchFailure(c.id, str(exc), exc.transient) for c in batch)
            return
        for city, item, raw in zip(batch, items, raws, strict=True):
            current = item.get("current")
            if not isinstance(current, dict) or "time" not in current:
                yield FetchFailure(city.id, "Open-Meteo payload has no current.time", False, raw)
                continue
            try:
                observed = _parse_time(current["time"], item.get("utc_offset_seconds"))
            except (TypeError, ValueError, OverflowError):
                yield FetchFailure(city.id, f"Open-Meteo current.time is not a time: {current['time']!r}", False, raw)
                continue
            yield Observation(city.id, observed, item, raw)


class OpenMeteoArchiveSource:
    """Historical hourly data (``/v1/archive``) for backfills of any date range.

    The archive answers with columns (``hourly.time[i]``, ``hourly.temperature_2m[i]``…). Each observation's
    payload is the provider's response restricted to row ``i``: the same keys, scalar values instead of arrays.
    """

    name = "open-meteo-archive"

    def __init__(self, settings: Settings) -> None:
        self.api = settings.api
        self.http = HttpClient(self.api, "Open-Meteo archive")

    def fetch(self, cities: list[City], start: dt.datetime | None, end: dt.datetime | None) -> Iterator[FetchItem]:
        if start is None or end is None:
            raise CityFailed("the Open-Meteo archive needs --start and --end")
        url = f"{self.api.open_meteo_archive_url.rstrip('/')}/v1/archive"
        last_day = (end - dt.timedelta(microseconds=1)).date()
        for city in cities:
            params = {
                "latitude": f"{city.lat:g}",
                "longitude": f"{city.lon:g}",
                "start_date": start.date().isoformat(),
                "end_date": last_day.isoformat(),
                "hourly": ",".join(HOURLY_VARIABLES),
                "timezone": "GMT",
            }
            try:
                answer = self.http.get_json(url, params, f"city {city.id}")
                if answer.status != 200:
                    raise CityFailed(_error(answer.status, answer.body))
                item = _as_list(answer.body)[0]
                hourly = item.get("hourly") or {}
                times = hourly.get("time") or []
            except ProviderUnreachable:
                raise
            except BadBody as exc:
                yield FetchFailure(city.id, str(exc), exc.transient, exc.body)
                continue
            except PipelineError as exc:
                yield FetchFailure(city.id, str(exc), exc.transient)
                continue
            head = {k: v for k, v in item.items() if k != "hourly"}
            for i, stamp in enumerate(times):
                try:
                    observed = _parse_time(stamp, item.get("utc_offset_seconds"))
                except (TypeError, ValueError, OverflowError):
                    yield FetchFailure(city.id, f"Open-Meteo archive time is not a time: {stamp!r}", False)
                    continue
                if not start <= observed < end:
                    continue
                row = {k: (v[i] if isinstance(v, list) and i < len(v) else None) for k, v in hourly.items()}
                yield Observation(city.id, observed, {**head, "hourly": row})
