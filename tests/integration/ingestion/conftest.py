"""The fake provider server and settings that point every source at it (shared by this folder's tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import derive
from tests.support.fake_weather_api import API_KEY, FakeWeatherApi
from weatherpipe.cities import load_cities
from weatherpipe.settings import Settings


@pytest.fixture
def fake(settings: Settings) -> Iterator[FakeWeatherApi]:
    with FakeWeatherApi(load_cities(settings)) as api:
        api.api_key = API_KEY
        yield api


@pytest.fixture
def api_settings(settings: Settings, fake: FakeWeatherApi) -> Settings:
    """Every provider at the fake server, with the key it accepts, quick timeouts and tiny backoffs."""
    return derive(
        settings,
        api={
            "openweather_base_url": fake.url,
            "open_meteo_base_url": fake.url,
            "open_meteo_archive_url": fake.url,
            "openweather_api_key": API_KEY,
            "timeout_s": 0.5,
            "max_attempts": 4,
            "backoff_initial_s": 0.01,
            "backoff_max_s": 0.05,
        },
    )
