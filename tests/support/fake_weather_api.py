"""A local HTTP server that answers like OpenWeather and Open-Meteo, as their documentation shows —
including their errors (401/404/429/5xx), slow answers and malformed bodies.

Replies can be scripted per city (by our city id): each request for that city takes the next reply in its
list; when the list is empty the city gets a normal answer.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from weatherpipe.cities import City


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list -> JSON; bytes -> sent raw; None -> the normal payload
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


API_KEY = "owm-canary-7b1e9c44d2"  # the key the fake accepts in tests (a canary: it must never leak anywhere)
OW_401 = {
    "cod": 401,
    "message": "Invalid API key. Please see https://openweathermap.org/faq#error401 for more info.",
}
OW_404 = {"cod": "404", "message": "city not found"}
OW_429 = {
    "cod": 429,
    "message": "Your account is temporary blocked due to exceeding of requests limitation of "
    "your subscription type. Please choose the proper subscription https://openweathermap.org/price",
}
OW_500 = {"cod": "500", "message": "Internal server error"}
OM_400 = {
    "error": True,
    "reason": "Cannot initialize WeatherVariable from invalid String value tempeture_2m for key current",
}


def openweather_payload(city: City, when: dt.datetime, temp_k: float = 283.15) -> dict[str, Any]:
    """A current-weather answer shaped as documented (Kelvin by default; rain/gust present here, optional)."""
    ts = int(when.timestamp())
    return {
        "coord": {"lon": city.lon, "lat": city.lat},
        "weather": [{"id": 501, "main": "Rain", "description": "moderate rain", "icon": "10d"}],
        "base": "stations",
        "main": {
            "temp": temp_k,
            "feels_like": temp_k - 1.2,
            "temp_min": temp_k - 2,
            "temp_max": temp_k + 1.5,
            "pressure": 1015,
            "humidity": 64,
            "sea_level": 1015,
            "grnd_level": 933,
        },
        "visibility": 10000,
        "wind": {"speed": 4.63, "deg": 250, "gust": 9.26},
        "rain": {"1h": 3.16},
        "clouds": {"all": 100},
        "dt": ts,
        "sys": {
            "type": 2,
            "id": 2075663,
            "country": city.country,
            "sunrise": ts - 20000,
            "sunset": ts + 20000,
        },
        "timezone": 3600,
        "id": city.openweather_id or 0,
        "name": city.name,
        "cod": 200,
    }


def open_meteo_current(city: City, when: dt.datetime) -> dict[str, Any]:
    return {
        "latitude": round(city.lat, 2),
        "longitude": round(city.lon, 2),
        "generationtime_ms": 0.05,
        "utc_offset_seconds": 0,
        "timezone": "GMT",
        "timezone_abbreviation": "GMT",
        "elevation": 38.0,
        "current_units": {
            "time": "iso8601",
            "interval": "seconds",
            "temperature_2m": "°C",
            "relative_humidity_2m": "%",
            "apparent_temperature": "°C",
            "is_day": "",
            "precipitation": "mm",
            "rain": "mm",
            "snowfall": "cm",
            "weather_code": "wmo code",
            "cloud_cover": "%",
            "pressure_msl": "hPa",
            "surface_pressure": "hPa",
            "wind_speed_10m": "km/h",
            "wind_direction_10m": "°",
            "wind_gusts_10m": "km/h",
        },
        "current": {
            "time": when.strftime("%Y-%m-%dT%H:%M"),
            "interval": 900,
            "temperature_2m": 12.4,
            "relative_humidity_2m": 71,
            "apparent_temperature": 10.9,
            "is_day": 1,
            "precipitation": 0.2,
            "rain": 0.2,
            "snowfall": 0.0,
            "weather_code": 61,
            "cloud_cover": 88,
            "pressure_msl": 1012.3,
            "surface_pressure": 1007.9,
            "wind_speed_10m": 18.0,
            "wind_direction_10m": 240,
            "wind_gusts_10m": 36.0,
        },
    }


def open_meteo_archive(city: City, start: dt.date, end: dt.date) -> dict[str, Any]:
    hours = []
    t = dt.datetime.combine(start, dt.time())
    while t.date() <= end:
        hours.append(t)
        t += dt.timedelta(hours=1)
    n = len(hours)
    return {
        "latitude": round(city.lat, 2),
        "longitude": round(city.lon, 2),
        "generationtime_ms": 1.2,
        "utc_offset_seconds": 0,
        "timezone": "GMT",
        "timezone_abbreviation": "GMT",
        "elevation": 38.0,
        "hourly_units": {
            "time": "iso8601",
            "temperature_2m": "°C",
            "relative_humidity_2m": "%",
            "wind_speed_10m": "km/h",
            "pressure_msl": "hPa",
            "visibility": "m",
        },
        "hourly": {
            "time": [h.strftime("%Y-%m-%dT%H:%M") for h in hours],
            "temperature_2m": [round(5 + (i % 24) * 0.5, 1) for i in range(n)],
            "relative_humidity_2m": [80 - (i % 24) for i in range(n)],
            "wind_speed_10m": [10.8] * n,
            "pressure_msl": [1013.0] * n,
            "visibility": [24140.0] * n,
        },
    }


def many_cities(n: int, base: list[City]) -> list[City]:
    """``n`` distinct cities for scale: the configured ones, then copies of them moved a few kilometres apart
    (``paris-2``, ``paris-3``, ...), each with its own coordinates and OpenWeather id. Deterministic."""
    cities = list(base[:n])
    copy = 2
    while len(cities) < n:
        for city in base[: n - len(cities)]:
            shift = 0.05 * (copy - 1)
            cities.append(
                city.model_copy(
                    update={
                        "id": f"{city.id}-{copy}",
                        "name": f"{city.name} {copy}",
                        "lat": round(max(-89.9, min(89.9, city.lat + shift)), 4),
                        "lon": round(city.lon + shift if city.lon + shift <= 180 else city.lon - shift, 4),
                        "openweather_id": None if city.openweather_id is None else city.openweather_id * 100 + copy,
                        "replay_station": None,
                    }
                )
            )
        copy += 1
    return cities


def write_cities(path: Path, cities: list[City]) -> Path:
    """A cities file (the shape of ``config/cities.yaml``) for ``paths.cities_file``."""
    rows = [c.model_dump(exclude_none=True) for c in cities]
    path.write_text(yaml.safe_dump({"cities": rows}, allow_unicode=True, sort_keys=False))
    return path


class FakeWeatherApi:
    def __init__(self, cities: list[City], now: dt.datetime | None = None) -> None:
        self.cities = cities
        self.now = now or dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
        self.script: dict[str, list[Reply]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.api_key = "fake-key-ok"
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeWeatherApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def queue(self, city_id: str, *replies: Reply) -> None:
        self.script.setdefault(city_id, []).extend(replies)

    def openweather(self, city_id: str) -> dict[str, Any]:
        """The normal answer for one city (to alter and queue as a scripted reply)."""
        return openweather_payload(next(c for c in self.cities if c.id == city_id), self.now)

    def calls(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    def _city(self, q: dict[str, str]) -> City | None:
        if "id" in q:
            return next((c for c in self.cities if str(c.openweather_id) == q["id"]), None)
        try:
            lat, lon = (
                float(q["latitude" if "latitude" in q else "lat"]),
                float(q["longitude" if "longitude" in q else "lon"]),
            )
        except (KeyError, ValueError):
            return None
        return next((c for c in self.cities if abs(c.lat - lat) < 1e-3 and abs(c.lon - lon) < 1e-3), None)

    def _next(self, city_id: str) -> Reply | None:
        with self._lock:
            queue = self.script.get(city_id)
            return queue.pop(0) if queue else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _reply(self, city_id: str, normal: Any) -> None:
                reply = api._next(city_id)
                if reply is None:
                    self._send(200, normal)
                    return
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                self._send(reply.status, normal if reply.body is None else reply.body, reply.headers)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                with api._lock:
                    api.requests.append((parts.path, q))
                if parts.path == "/data/2.5/weather":
                    self._openweather(q)
                elif parts.path == "/v1/forecast":
                    self._forecast(q)
                elif parts.path == "/v1/archive":
                    self._archive(q)
                else:
                    self._send(404, {"cod": "404", "message": "Internal error"})

            def _openweather(self, q: dict[str, str]) -> None:
                if q.get("appid") != api.api_key:
                    self._send(401, OW_401)
                    return
                city = api._city(q)
                if city is None:
                    self._send(404, OW_404)
                    return
                self._reply(city.id, openweather_payload(city, api.now))

            def _forecast(self, q: dict[str, str]) -> None:
                lats, lons = q.get("latitude", "").split(","), q.get("longitude", "").split(",")
                if "current" not in q or len(lats) != len(lons):
                    self._send(
                        400,
                        {
                            "error": True,
                            "reason": "Parameter 'latitude' and 'longitude' must have the same number of elements",
                        },
                    )
                    return
                cities = [api._city({"latitude": a, "longitude": o}) for a, o in zip(lats, lons, strict=True)]
                items = [open_meteo_current(c, api.now) for c in cities if c is not None]
                body: Any = items if len(items) > 1 else items[0]
                self._reply(cities[0].id if cities and cities[0] else "", body)

            def _archive(self, q: dict[str, str]) -> None:
                city = api._city(q)
                try:
                    start = dt.date.fromisoformat(q["start_date"])
                    end = dt.date.fromisoformat(q["end_date"])
                except (KeyError, ValueError):
                    self._send(400, {"error": True, "reason": "Parameter 'start_date' is invalid"})
                    return
                if city is None:
                    self._send(400, {"error": True, "reason": "Latitude must be in range of -90 to 90°."})
                    return
                self._reply(city.id, open_meteo_archive(city, start, end))

        return Handler
