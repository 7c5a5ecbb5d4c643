"""OpenWeather "current weather" (``/data/2.5/weather``): one call per city, within the plan's limits.

Documented behaviour honoured here: 60 calls/minute (client-side limiter) and a monthly budget (persisted in
Postgres, refusing to overspend: a run that cannot afford one call per city does not start, and every attempt,
retries included, is paid for before it is made); 401 stops everything with one clear line; 404 fails that city
only; 429/5xx/timeouts are retried with backoff. ``cod`` is an int on success and often a string on errors.

Always requested in standard units (Kelvin, m/s, hPa): the payload carries no unit marker, so Silver's
conversions rely on this one request parameter — it is not a setting.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ingestion.sources.base import (
    BadBody,
    CityFailed,
    FetchFailure,
    FetchItem,
    HttpClient,
    Observation,
    ProviderUnreachable,
    RateLimiter,
    epoch_seconds,
)
from weatherpipe.cities import City
from weatherpipe.errors import BudgetExceeded, ConfigError, PipelineError, SourceAuthError
from weatherpipe.settings import Settings


class _Main(BaseModel):
    model_config = ConfigDict(extra="allow")
    temp: float
    humidity: float | None = None
    pressure: float | None = None


class _Sys(BaseModel):
    model_config = ConfigDict(extra="allow")
    country: str | None = None
    sunrise: int | None = None
    sunset: int | None = None


class CurrentWeather(BaseModel):
    """The fields we rely on; everything else in the payload is kept as received (``extra="allow"``)."""

    model_config = ConfigDict(extra="allow")
    dt: float
    main: _Main
    timezone: int | None = None
    sys: _Sys | None = None
    weather: list[dict[str, Any]] = []


class OpenWeatherSource:
    name = "openweather"

    def __init__(self, settings: Settings, budget: Any | None = None) -> None:
        api = settings.api
        if api.openweather_api_key is None or not api.openweather_api_key.get_secret_value():
            raise ConfigError(
                "the OpenWeather source needs an API key",
                hint="set OPENWEATHER_API_KEY (or use --source open-meteo / replay)",
            )
        self.api = api
        self.key = api.openweather_api_key.get_secret_value()
        self.http = HttpClient(api, "OpenWeather", RateLimiter(api.calls_per_minute, 60.0), budget)
        self.budget = budget

    def _params(self, city: City) -> dict[str, Any]:
        where: dict[str, Any] = {"lat": city.lat, "lon": city.lon}
        if city.openweather_id is not None:
            where = {"id": city.openweather_id}
        return {**where, "appid": self.key, "units": "standard"}

    def fetch(
        self, cities: list[City], start: dt.datetime | None = None, end: dt.datetime | None = None
    ) -> Iterator[FetchItem]:
        if self.budget is not None:
            self.budget.ensure_room(len(cities))  # at least one attempt per city, or the run does not start
        url = f"{self.api.openweather_base_url.rstrip('/')}/data/2.5/weather"
        for i, city in enumerate(cities):
            try:
                yield self._one(url, city)
            except (SourceAuthError, ProviderUnreachable):
                raise
            except BudgetExceeded as exc:  # no attempt is made that the budget cannot pay for
                yield from (FetchFailure(c.id, f"not fetched: {exc}", False) for c in cities[i:])
                return
            except BadBody as exc:
                yield FetchFailure(city.id, str(exc), exc.transient, exc.body)
            except PipelineError as exc:
                yield FetchFailure(city.id, str(exc), exc.transient)

    def _one(self, url: str, city: City) -> Observation:
        answer = self.http.get_json(url, self._params(city), f"city {city.id}")
        status, body = answer.status, answer.body
        message = body.get("message") if isinstance(body, dict) else None
        if status == 401:
            raise SourceAuthError(
                "OpenWeather refused the API key (401): "
                + (message.split(" Please see")[0] if isinstance(message, str) else "unauthorized"),
                hint="check OPENWEATHER_API_KEY; a new key can take up to 2 hours to activate",
            )
        if status != 200:
            raise CityFailed(f"OpenWeather HTTP {status}: {message or 'no message'}")
        try:
            parsed = CurrentWeather.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise BadBody(
                f"OpenWeather payload for {city.id} is malformed: {'.'.join(map(str, first['loc']))} {first['msg']}",
                answer.raw,
            ) from None
        try:
            observed = epoch_seconds(parsed.dt, f"OpenWeather dt for {city.id}")
        except CityFailed as exc:
            raise BadBody(str(exc), answer.raw) from None
        return Observation(city.id, observed, body, answer.raw)
