"""The Kafka message: a versioned envelope around the provider's raw payload.

``event_id`` is derived from (source, city, observed time) only, so fetching the same observation twice gives the
same id — that is what lets Bronze and Silver recognise a re-fetch as the same event.

The envelope is a ``msgspec.Struct``: decoding validates every field in one pass (fast enough for the bronze sink
to keep up with the broker), and ``payload`` is kept as ``msgspec.Raw`` — the provider's JSON bytes exactly as
received, never re-serialised.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import msgspec

SCHEMA_VERSION = 1
SOURCES = ("openweather", "open-meteo", "open-meteo-archive", "replay", "synthetic")
Source = Literal["openweather", "open-meteo", "open-meteo-archive", "replay", "synthetic"]
_NAMESPACE = uuid.UUID("6f1c3a52-8d0e-4f4b-9a57-3c2d9b0e7a11")

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_Time = Annotated[dt.datetime, msgspec.Meta(tz=True)]


class EnvelopeError(ValueError):
    """A message that is not a valid envelope; the text is the reason recorded in the dead letter."""


def event_id(source: str, city_id: str, observed_at: dt.datetime) -> str:
    stamp = observed_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(uuid.uuid5(_NAMESPACE, f"{source}|{city_id}|{stamp}"))


class Envelope(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    schema_version: Literal[1]
    event_id: _Id
    source: Source
    city_id: _Id
    observed_at: _Time
    ingested_at: _Time
    run_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    payload: msgspec.Raw

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
        raw_payload: bytes | None = None,
    ) -> Envelope:
        """``raw_payload``, when given, is the provider's JSON object exactly as received and is carried byte for
        byte (``payload`` is then only its parsed form); otherwise ``payload`` is encoded."""
        return cls(
            schema_version=SCHEMA_VERSION,
            event_id=event_id(source, city_id, observed_at),
            source=source,  # type: ignore[arg-type]
            city_id=city_id,
            observed_at=observed_at.astimezone(dt.UTC),
            ingested_at=(ingested_at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC),
            run_id=run_id,
            payload=msgspec.Raw(raw_payload if raw_payload is not None else _encoder.encode(payload)),
        )

    def to_bytes(self) -> bytes:
        return _encoder.encode(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        """Parse and validate, or raise ``EnvelopeError`` saying why."""
        try:
            env = _decoder.decode(raw)
        except msgspec.ValidationError as exc:
            raise EnvelopeError(f"schema: {exc}") from None
        except msgspec.DecodeError as exc:
            raise EnvelopeError(f"invalid JSON: {exc}") from None
        except UnicodeDecodeError as exc:
            raise EnvelopeError(f"invalid JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from None
        if not bytes(env.payload).lstrip()[:1] == b"{":
            raise EnvelopeError("schema: payload must be a JSON object - at `$.payload`")
        return env

    def data(self) -> dict[str, Any]:
        """The payload, decoded."""
        return msgspec.json.decode(self.payload)

    def payload_text(self) -> str:
        return bytes(self.payload).decode("utf-8")


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Envelope)
