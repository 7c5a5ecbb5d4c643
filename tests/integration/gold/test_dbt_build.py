"""Gold: dbt build on data produced by the real Silver job from the replay source."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.support import ROOT, derive, drop_warehouse, marts_hash, query, warehouse_settings
from tests.support import load_replay as load
from weatherpipe import db, gold
from weatherpipe.errors import StageFailed
from weatherpipe.settings import Settings

pytestmark = [pytest.mark.spark, pytest.mark.slow]
DAY = dt.timedelta(days=1)
START = dt.datetime(2013, 2, 11, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def warehouse(local_stack: Settings, spark) -> Iterator[Settings]:
    settings = warehouse_settings(local_stack, uuid.uuid4().hex[:8], bi_password="bi-canary-pass")
    db.provision(settings)
    load(settings, spark, START, START + 3 * DAY)
    yield settings
    drop_warehouse(settings)


def test_build_passes_and_marts_are_consistent(warehouse: Settings) -> None:
    result = gold.run(warehouse, run_id="gold-1")
    assert result.status == "success"
    nodes = result.metrics.nodes
    assert not any(k.endswith((":error", ":fail")) for k in nodes), nodes
    assert nodes.get("snapshot:success") == 1 and nodes.get("model:success", 0) >= 9
    assert nodes.get("test:pass", 0) >= 40
    silver_rows = query(warehouse, "select count(*) from {s}.weather_observations")[0][0]
    assert result.rows_in == silver_rows and result.rows_out == silver_rows  # replay is exactly hourly
    days = query(warehouse, "select count(*), sum(observation_count) from {m}.gold_weather_aggregates")[0]
    assert days[1] == silver_rows and days[0] >= 9  # 3 cities x 3+ local days
    sample = query(
        warehouse,
        "select city_name, dominant_condition, observation_count from {m}.gold_weather_aggregates "
        "where city_id = 'nyc-jfk' and local_date = '2013-02-12'",
    )
    assert sample and sample[0][0] == "New York JFK" and sample[0][2] == 24


def test_incremental_adds_only_new_rows_and_equals_full_refresh(warehouse: Settings, spark) -> None:
    no_lookback = derive(warehouse, dbt={"lookback_hours": 0})  # everything here was loaded minutes ago
    gold.run(no_lookback)
    before = dict(query(warehouse, "select observation_id, xmin::text from {m}.fct_weather_observations"))
    load(warehouse, spark, START + 3 * DAY, START + 4 * DAY)
    gold.run(no_lookback)
    after = dict(query(warehouse, "select observation_id, xmin::text from {m}.fct_weather_observations"))
    new = set(after) - set(before)
    assert 60 <= len(new) <= 72  # one more day of 3 stations (less the record's gaps)
    assert [k for k in before if after[k] != before[k]] == []  # old facts were not rewritten
    incremental = marts_hash(warehouse)
    gold.run(warehouse, full_refresh=True)
    assert marts_hash(warehouse) == incremental


def test_tests_check_recent_loads_and_full_tests_check_every_row(warehouse: Settings) -> None:
    """An old fact gone bad (loaded long ago, outside the test window) passes the hourly build's windowed tests and
    fails the audit; a full refresh rebuilds it from Silver and tests everything."""
    gold.run(warehouse)
    city, hour = query(warehouse, "select city_id, observed_at from {m}.fct_weather_observations order by 2 limit 1")[0]
    # loaded a month ago (so no incremental run revisits it), then bad
    with db.connect(warehouse.postgres.admin) as conn:
        conn.execute(
            f'update "{warehouse.postgres.staging_schema}".weather_observations '
            "set loaded_at = loaded_at - interval '30 days' where city_id = %s and observed_at = %s",
            (city, hour),
        )
        conn.execute(
            f'update "{warehouse.dbt.schema("marts")}".fct_weather_observations '
            "set source = 'bogus', loaded_at = loaded_at - interval '30 days' "  # constraints refuse 150 % humidity
            "where city_id = %s and observed_at = %s",
            (city, hour),
        )
    assert gold.run(warehouse).status == "success"
    with pytest.raises(StageFailed, match="accepted_values_fct_weather_observations_source"):
        gold.run(warehouse, full_tests=True)
    result = gold.run(warehouse, full_refresh=True)
    assert result.status == "success" and result.metrics.nodes.get("test:pass", 0) >= 40
    assert query(warehouse, "select count(*) from {m}.fct_weather_observations where source = 'bogus'") == [(0,)]


def test_snapshot_closes_a_changed_city(warehouse: Settings, spark, tmp_path: Path) -> None:
    gold.run(warehouse)
    cities = yaml.safe_load((ROOT / "config" / "cities.yaml").read_text())
    for c in cities["cities"]:
        if c["id"] == "nyc-jfk":
            c["name"] = "New York John F. Kennedy"
    changed = tmp_path / "cities.yaml"
    changed.write_text(yaml.safe_dump(cities, allow_unicode=True))
    renamed = derive(warehouse, paths={"cities_file": changed})
    load(renamed, spark, START + 4 * DAY, START + 5 * DAY)
    gold.run(renamed)
    versions = query(
        warehouse,
        "select city_name, is_current, valid_to < '9999-01-01' from {m}.dim_city "
        "where city_id = 'nyc-jfk' order by version_number",
    )
    assert versions == [("New York JFK", False, True), ("New York John F. Kennedy", True, False)]
    current_name = query(
        warehouse, "select distinct city_name from {m}.gold_weather_aggregates where city_id = 'nyc-jfk'"
    )
    assert current_name == [("New York John F. Kennedy",)]


def test_bi_role_reads_marts_only(warehouse: Settings) -> None:
    gold.run(warehouse)
    pg = warehouse.postgres
    marts = warehouse.dbt.schema("marts")
    with psycopg.connect(
        host=pg.host, port=pg.port, dbname=pg.database, user=pg.bi_role, password="bi-canary-pass", autocommit=True
    ) as conn:
        assert conn.execute(f'select count(*) from "{marts}".gold_weather_aggregates').fetchone()[0] > 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"insert into \"{marts}\".dim_hour values (99, 'x', 'night')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f'select * from "{pg.staging_schema}".weather_observations limit 1')
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f'create table "{marts}".intruder (x int)')


def _refused(conn: psycopg.Connection, statement: str) -> bool:
    try:
        conn.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


def test_pipeline_roles_have_only_what_they_need(warehouse: Settings) -> None:
    """The whole pipeline above ran as the loader and the transformer (the owners prove it); each of them is a
    plain login that can do its own stage's work and is refused everything else."""
    gold.run(warehouse)
    pg = warehouse.postgres
    marts, stg, ops = warehouse.dbt.schema("marts"), f'"{pg.staging_schema}"', f'"{pg.ops_schema}"'
    with db.connect(pg.admin) as conn:  # someone gave the loader more: setup takes it back
        conn.execute(f'alter role "{pg.user}" createdb createrole')
    db.provision(warehouse)
    with db.connect(pg.admin) as conn:
        owners = dict(
            conn.execute(
                "select schemaname || '.' || tablename, tableowner from pg_tables where schemaname in (%s, %s, %s)",
                (pg.staging_schema, pg.ops_schema, marts),
            ).fetchall()
        )
        attributes = conn.execute(
            "select rolname, rolsuper or rolcreaterole or rolcreatedb or rolreplication or rolbypassrls, "
            "(select count(*) from pg_auth_members m where m.member = r.oid) from pg_roles r "
            "where rolname in (%s, %s, %s) order by rolname",
            (pg.user, pg.transformer_user, pg.bi_role),
        ).fetchall()
    assert owners[f"{pg.staging_schema}.weather_observations"] == pg.user
    assert owners[f"{pg.ops_schema}.bronze_manifest"] == pg.user
    assert owners[f"{marts}.fct_weather_observations"] == pg.transformer_user
    assert attributes == sorted([(pg.bi_role, False, 0), (pg.user, False, 0), (pg.transformer_user, False, 0)])

    with db.connect(pg, autocommit=True) as loader:
        assert loader.execute(f"select count(*) from {stg}.weather_observations").fetchone()[0] > 0
        for statement in (
            f'select * from "{marts}".fct_weather_observations limit 1',
            f'drop table "{marts}".dim_city',
            "create schema intruder",
            "create table public.intruder (x int)",
            "create role intruder",
        ):
            assert _refused(loader, statement), statement
    with db.connect(pg.transformer, autocommit=True) as transformer:
        assert transformer.execute(f"select count(*) from {stg}.weather_observations").fetchone()[0] > 0
        for statement in (
            f"insert into {stg}.cities select * from {stg}.cities limit 1",
            f"update {stg}.weather_observations set temperature_c = 0",
            f"delete from {stg}.weather_observations",
            f"truncate {stg}.weather_observations",
            f"create table {stg}.intruder (x int)",
            f"select * from {ops}.bronze_manifest limit 1",
            f"select * from {ops}.pipeline_runs limit 1",
            "create role intruder",
        ):
            assert _refused(transformer, statement), statement


def test_docs_build_offline_and_every_column_is_described(warehouse: Settings) -> None:
    gold.run(warehouse)
    target = gold.build_docs(warehouse)
    assert (target / "index.html").exists() and (target / "catalog.json").exists()
    catalog = json.loads((target / "catalog.json").read_text())["nodes"]
    manifest = json.loads((target / "manifest.json").read_text())["nodes"]
    assert "model.weather_dw.gold_weather_aggregates" in catalog
    undocumented = []
    for unique_id, node in manifest.items():
        if node["resource_type"] not in {"model", "snapshot"}:
            continue
        if not node["description"].strip():
            undocumented.append(unique_id)
        described = {c for c, meta in node["columns"].items() if meta["description"].strip()}
        built = {c.lower() for c in catalog.get(unique_id, {}).get("columns", {})}
        undocumented += [f"{unique_id}.{c}" for c in sorted(built - described)]
    assert undocumented == []
