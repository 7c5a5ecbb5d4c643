"""Declared schemas for every layer Spark touches. Nothing is ever inferred; bronze's comes from its contract."""

from __future__ import annotations

from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from weatherpipe.contracts import bronze_read_schema

# -- bronze, as Silver reads it: derived from the one contract (weatherpipe.contracts) ------------------------------
BRONZE = from_arrow_schema(bronze_read_schema(), prefer_timestamp_ntz=False)

# -- provider payloads (only the fields Silver reads; the rest stays in bronze) --------------------------------
OPENWEATHER = StructType(
    [
        StructField("dt", LongType()),
        StructField("timezone", IntegerType()),
        StructField("visibility", DoubleType()),
        StructField(
            "main",
            StructType(
                [
                    StructField("temp", DoubleType()),
                    StructField("feels_like", DoubleType()),
                    StructField("temp_min", DoubleType()),
                    StructField("temp_max", DoubleType()),
                    StructField("pressure", DoubleType()),
                    StructField("humidity", DoubleType()),
                ]
            ),
        ),
        StructField(
            "wind",
            StructType(
                [
                    StructField("speed", DoubleType()),
                    StructField("deg", DoubleType()),
                    StructField("gust", DoubleType()),
                ]
            ),
        ),
        StructField("clouds", StructType([StructField("all", DoubleType())])),
        StructField("rain", StructType([StructField("1h", DoubleType()), StructField("3h", DoubleType())])),
        StructField("snow", StructType([StructField("1h", DoubleType()), StructField("3h", DoubleType())])),
        StructField(
            "weather",
            ArrayType(
                StructType(
                    [
                        StructField("id", IntegerType()),
                        StructField("main", StringType()),
                        StructField("description", StringType()),
                    ]
                )
            ),
        ),
        StructField(
            "sys",
            StructType([StructField("sunrise", LongType()), StructField("sunset", LongType())]),
        ),
    ]
)

_OM_VARS = [
    ("time", StringType()),
    ("interval", IntegerType()),
    ("temperature_2m", DoubleType()),
    ("relative_humidity_2m", DoubleType()),
    ("apparent_temperature", DoubleType()),
    ("precipitation", DoubleType()),
    ("rain", DoubleType()),
    ("snowfall", DoubleType()),
    ("weather_code", IntegerType()),
    ("cloud_cover", DoubleType()),
    ("pressure_msl", DoubleType()),
    ("wind_speed_10m", DoubleType()),
    ("wind_direction_10m", DoubleType()),
    ("wind_gusts_10m", DoubleType()),
    ("visibility", DoubleType()),
]
_OM_UNITS = StructType([StructField(name, StringType()) for name, _ in _OM_VARS])
_OM_VALUES = StructType([StructField(name, kind) for name, kind in _OM_VARS])

OPEN_METEO = StructType(
    [
        StructField("utc_offset_seconds", IntegerType()),
        StructField("current_units", _OM_UNITS),
        StructField("current", _OM_VALUES),
        StructField("hourly_units", _OM_UNITS),
        StructField("hourly", _OM_VALUES),
    ]
)

REPLAY = StructType(
    [
        StructField(name, StringType())
        for name in (
            "origin",
            "temp",
            "dewp",
            "humid",
            "wind_dir",
            "wind_speed",
            "wind_gust",
            "precip",
            "pressure",
            "visib",
            "time_hour",
        )
    ]
)

# -- Silver: the one canonical, typed observation ----------------------------------------------------------------
MEASURES = [
    StructField("temperature_c", DoubleType()),
    StructField("feels_like_c", DoubleType()),
    StructField("temp_min_c", DoubleType()),
    StructField("temp_max_c", DoubleType()),
    StructField("dew_point_c", DoubleType()),
    StructField("pressure_hpa", DoubleType()),
    StructField("humidity_pct", DoubleType()),
    StructField("wind_speed_ms", DoubleType()),
    StructField("wind_gust_ms", DoubleType()),
    StructField("wind_deg", DoubleType()),
    StructField("clouds_pct", DoubleType()),
    StructField("rain_1h_mm", DoubleType()),
    StructField("snow_1h_mm", DoubleType()),
    StructField("precipitation_1h_mm", DoubleType()),
    StructField("precipitation_mm", DoubleType()),
    StructField("precipitation_interval_s", IntegerType()),
    StructField("visibility_m", DoubleType()),
    StructField("weather_code", IntegerType()),
    StructField("weather_code_system", StringType()),
    StructField("weather_main", StringType()),
    StructField("weather_description", StringType()),
    StructField("sunrise_at", TimestampType()),
    StructField("sunset_at", TimestampType()),
    StructField("tz_offset_s", IntegerType()),
]

LINEAGE = [
    StructField("source", StringType(), False),
    StructField("event_id", StringType(), False),
    StructField("ingested_at", TimestampType(), False),
    StructField("bronze_object", StringType(), False),
    StructField("kafka_partition", IntegerType(), False),
    StructField("kafka_offset", LongType(), False),
]

CANONICAL = StructType(
    [
        StructField("city_id", StringType(), False),
        StructField("observed_at", TimestampType(), False),
        *MEASURES,
        *LINEAGE,
        StructField("payload_parsed", IntegerType(), False),
        StructField("payload", StringType(), False),
    ]
)

CITIES = StructType(
    [
        StructField("city_id", StringType(), False),
        StructField("city_name", StringType(), False),
        StructField("country", StringType(), False),
        StructField("latitude", DoubleType(), False),
        StructField("longitude", DoubleType(), False),
        StructField("timezone", StringType(), False),
    ]
)
