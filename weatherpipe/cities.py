"""The configured list of cities (``config/cities.yaml``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from weatherpipe.config_files import load_models
from weatherpipe.errors import ConfigError
from weatherpipe.settings import Settings


class City(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    name: str
    country: str = Field(min_length=2, max_length=2)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    timezone: str
    openweather_id: int | None = None
    replay_station: str | None = None


def load_cities(settings: Settings, ids: list[str] | None = None, path: Path | None = None) -> list[City]:
    file = path or settings.path(settings.paths.cities_file)
    cities = load_models(file, "cities", City, "city")
    if ids is None:
        return cities
    known = {c.id: c for c in cities}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ConfigError(f"unknown city id(s): {', '.join(unknown)}", hint=f"see {file}")
    return [known[i] for i in ids]
