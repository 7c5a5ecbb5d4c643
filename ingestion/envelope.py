"""The Kafka message: a versioned envelope around the provider's raw payload.

``event_id`` is derived from (source, city, observed time) only, so fetching the same observation twice gives the
same id — that is what lets Bronze and Silver recognise a re-fetch as the same event.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1
SOURCES = ("openweather", "open-meteo", "open-meteo-archive", "replay")
Source = Literal["openweather", "open-meteo", "open-meteo-archive", "replay"]
_NAMESPACE = uuid.UUID("6f1c3a52-8d0e-4f4b-9a57-3c2d9b0e7a11")


def event_id(source: str, city_id: str, observed_at: dt.datetime) -> str:
    stamp = observed_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(uuid.uuid5(_NAMESPACE, f"{source}|{city_id}|{stamp}"))


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str = Field(min_length=1, max_length=64)
    source: Source
    city_id: str = Field(min_length=1, max_length=64)
    observed_at: dt.datetime
    ingested_at: dt.datetime
    run_id: str = Field(min_length=1, max_length=200)
    payload: dict[str, Any]

    @field_validator("observed_at", "ingested_at")
    @classmethod
    def _utc(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("must carry a UTC offset")
        return value.astimezone(dt.UTC)

    @classmethod
    def build(
        cls,
        *,
        source: str,
        city_id: str,
        observed_at: dt.datetime,
        run_id: str,
        payload: dict[str, Any],
        ingested_at: dt.datetime | None = None,
    ) -> Envelope:
        return cls(
            event_id=event_id(source, city_id, observed_at),
            source=source,  # type: ignore[arg-type]
            city_id=city_id,
            observed_at=observed_at,
            ingested_at=ingested_at or dt.datetime.now(dt.UTC),
            run_id=run_id,
            payload=payload,
        )

    def to_bytes(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        """Parse and validate; raises ``ValueError`` (incl. pydantic's) with the reason on bad input."""
        return cls.model_validate_json(raw)
