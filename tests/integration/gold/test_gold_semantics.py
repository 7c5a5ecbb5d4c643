"""What a BI user reads off the marts: completeness against the local day and month, full-precision amounts, keys
unique across marts, results independent of the session time zone, and contracts PostgreSQL enforces."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.support import derive, drop_warehouse, load_replay, marts_hash, query, warehouse_settings
from weatherpipe import db, gold
from weatherpipe.settings import Settings

pytestmark = [pytest.mark.spark, pytest.mark.slow]
# New York's local days 1-10 March 2013 (EST, UTC-5): the 1st opens a month, the 10th has 23 hours (DST starts).
START = dt.datetime(2013, 3, 1, 5, tzinfo=dt.UTC)
END = dt.datetime(2013, 3, 11, 4, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def built(local_stack: Settings, spark) -> Iterator[Settings]:
    settings = warehouse_settings(local_stack, uuid.uuid4().hex[:8])
    db.provision(settings)
    load_replay(settings, spark, START, END)
    result = gold.run(settings)
    assert result.status == "success"
    yield settings
    drop_warehouse(settings)


def test_daily_rows_say_how_complete_they_are(built: Settings) -> None:
    rows = query(
        built,
        "select local_date, expected_hours, observed_hours, is_complete, temperature_hours, pressure_hours "
        "from {m}.gold_weather_aggregates where city_id = 'nyc-jfk' order by local_date",
    )
    assert [r[0] for r in rows] == [dt.date(2013, 3, d) for d in range(1, 11)]  # whole local days, none cut
    assert {r[0].day: r[1] for r in rows} == {d: 23 if d == 10 else 24 for d in range(1, 11)}
    assert all(r[3] == (r[2] == r[1]) for r in rows)
    assert all(r[4] <= r[2] and r[5] <= r[2] for r in rows)
    everywhere = query(built, "select bool_and(pressure_hours <= observed_hours) from {m}.gold_weather_aggregates")
    assert everywhere == [(True,)]
    month = query(
        built,
        "select expected_hours, days_in_month, days_observed, complete_days, observed_hours, is_complete "
        "from {m}.agg_weather_monthly where city_id = 'nyc-jfk'",
    )
    complete = sum(1 for r in rows if r[3])
    assert month == [(743, 31, 10, complete, sum(r[2] for r in rows), False)]  # 31 x 24 - 1 (DST)


def test_precipitation_totals_keep_full_precision(built: Settings) -> None:
    """Each day's total equals Silver's own sum (0.01 in = 0.254 mm, never rounded to 0.25 before summing)."""
    silver = dict(
        query(
            built,
            "select (observed_at at time zone 'America/New_York')::date, sum(precipitation_1h_mm) "
            "from {s}.weather_observations where city_id = 'nyc-lga' group by 1",
        )
    )
    marts = dict(
        query(
            built,
            "select local_date, total_precipitation_mm from {m}.gold_weather_aggregates where city_id = 'nyc-lga'",
        )
    )
    assert any(v for v in silver.values()), "the window should hold some precipitation"
    assert {d: float(v or 0) for d, v in marts.items()} == pytest.approx(
        {d: float(v or 0) for d, v in silver.items()}, abs=1e-9
    )


def test_keys_are_unique_across_the_marts(built: Settings) -> None:
    shared = query(
        built,
        "select count(*) from (select daily_id as k from {m}.gold_weather_aggregates "
        "intersect select monthly_id from {m}.agg_weather_monthly "
        "union all (select daily_id from {m}.gold_weather_aggregates "
        "intersect select observation_id from {m}.fct_weather_observations)) as both_sides",
    )
    assert shared == [(0,)]


def test_results_do_not_depend_on_the_session_time_zone(built: Settings) -> None:
    """The transformer's default zone set to India (UTC+05:30, half-hour offset): the marts are identical."""
    other = derive(built, dbt={"schema_prefix": built.dbt.schema_prefix.replace("t", "z", 1)})
    role = built.postgres.transformer_user
    try:
        with db.connect(built.postgres.admin, autocommit=True) as conn:
            conn.execute(f"alter role \"{role}\" set timezone = 'Asia/Kolkata'")
        assert gold.run(other).status == "success"
        assert _zone_sensitive(other) == _zone_sensitive(built)
    finally:
        with db.connect(built.postgres.admin, autocommit=True) as conn:
            conn.execute(f'alter role "{role}" reset timezone')
        db.drop_schemas(built.postgres, other.dbt.schema_prefix)


def _zone_sensitive(settings: Settings) -> tuple:
    """The marts' content, less what differs between two builds anyway (city_key hashes the snapshot's time)."""
    facts = query(
        settings,
        "select md5(string_agg(t::text, '|' order by t::text)) from (select observation_id, observation_hour, "
        "local_date, date_key, hour_key, temperature_c, precipitation_1h_mm from {m}.fct_weather_observations) t",
    )
    return (facts[0][0], *marts_hash(settings)[1:])


def _constraints(settings: Settings, table: str) -> list[str]:
    return sorted(
        kind
        for (kind,) in query(
            settings,
            "select contype::text from pg_constraint where conrelid = %s::regclass",
            (f'"{settings.dbt.schema("marts")}".{table}',),
        )
    )


def test_marts_enforce_their_contracts(built: Settings) -> None:
    """Primary keys, foreign keys to the dimensions and range checks live in PostgreSQL, and survive an
    incremental run (dimensions are merged, never dropped with their referencing constraints)."""
    assert gold.run(built).status == "success"  # an incremental run
    fct = _constraints(built, "fct_weather_observations")
    assert fct.count("p") == 1 and fct.count("f") == 3 and fct.count("c") >= 5
    assert _constraints(built, "gold_weather_aggregates").count("f") == 1
    assert "p" in _constraints(built, "agg_weather_monthly") and "p" in _constraints(built, "dim_city")
    marts = f'"{built.dbt.schema("marts")}"'
    with db.connect(built.postgres.admin) as conn, pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute(f"update {marts}.fct_weather_observations set city_key = 'no-such-city-version'")
    with db.connect(built.postgres.admin) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(f"update {marts}.gold_weather_aggregates set observed_hours = 26")


def test_dbt_unit_tests_run_in_every_build(built: Settings) -> None:
    nodes = gold.run(built).metrics.nodes
    assert nodes.get("unit_test:pass", 0) >= 3 and not any(
        k.startswith("unit_test:") and k != "unit_test:pass" for k in nodes
    )
