"""Hourly: the `weather_pipeline` DAG under the real scheduler (`weatherpipe airflow`: metadata in PostgreSQL,
LocalExecutor), 100 cities from the fake OpenWeather server, then 3 cities; each DAG run's wall time read through
Airflow's REST API, median of 3 runs, and each stage's share. Gold's task group is compared with one plain
`dbt build` of the same project on the same data, in the same run.

The first 100-city run is the DAG's scheduled hour (unpausing a DAG with catchup off runs its last complete hour);
the others are manual runs of the hours before it. The fake server has no rate limit, so the OpenWeather client's
limit is raised for the bench (the free plan's 60 calls a minute would make 100 cities take 100 s by design).
With Chromium on the machine (Debian's `chromium`), the run's graph is captured headless to
`.stack/bench/airflow-graph.png` (outside git). Every run's task instances (queued, start and end of each task) are
kept in `.stack/bench/hourly-runs.json`, to see where a run's time went.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import BenchRow, isolated
from tests.support import derive, free_port
from tests.support.fake_weather_api import API_KEY, FakeWeatherApi, many_cities, write_cities
from weatherpipe import db
from weatherpipe.airflow_local import AirflowClient, drop_metadata, running
from weatherpipe.cities import load_cities
from weatherpipe.settings import ROOT, Settings

DAG = "weather_pipeline"
AIRFLOW_DB = "weatherpipe_airflow_bench"
RUNS = 3
BUDGET_S = 30.0  # the target for one hourly DAG run of 100 cities on the 2-core machine
STAGES = ("ingest", "bronze", "silver", "gold", "reconcile")


def _env(settings: Settings, state: Path, cities: Path, fake: FakeWeatherApi, prefix: str) -> dict[str, str]:
    """The bench's slice of the stack, its own Airflow database, and every provider at the fake server."""
    pg, s3, kafka = settings.postgres, settings.s3, settings.kafka
    return {
        **os.environ,
        "WEATHERPIPE_STACK__STATE_DIR": str(state),
        "WEATHERPIPE_AIRFLOW__DATABASE": AIRFLOW_DB,
        "WEATHERPIPE_KAFKA__TOPIC": kafka.topic,
        "WEATHERPIPE_KAFKA__CONSUMER_GROUP": kafka.consumer_group,
        "WEATHERPIPE_S3__BRONZE_PREFIX": s3.bronze_prefix,
        "WEATHERPIPE_S3__DEADLETTER_PREFIX": s3.deadletter_prefix,
        "WEATHERPIPE_POSTGRES__STAGING_SCHEMA": pg.staging_schema,
        "WEATHERPIPE_POSTGRES__OPS_SCHEMA": pg.ops_schema,
        "WEATHERPIPE_DBT__SCHEMA_PREFIX": prefix,
        "WEATHERPIPE_PATHS__CITIES_FILE": str(cities),
        "WEATHERPIPE_PIPELINE__SOURCE": "openweather",
        "WEATHERPIPE_API__OPENWEATHER_BASE_URL": fake.url,
        "WEATHERPIPE_API__OPENWEATHER_API_KEY": API_KEY,
        "WEATHERPIPE_API__CALLS_PER_MINUTE": "100000",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # the headless screenshot needs no login
        "DBT_QUIET": "true",
    }


def _seconds(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()


def _measure(client: AirflowClient, run_id: str) -> dict[str, Any]:
    """One finished run: its wall time, each stage's time (Gold: its task group, first start to last end), and
    whether every task succeeded."""
    run = client.wait(DAG, run_id, timeout_s=1800)
    tis = client.task_instances(DAG, run_id)
    out: dict[str, Any] = {"wall": _seconds(run["start_date"], run["end_date"]), "state": run["state"]}
    for stage in STAGES:
        ours = [t for t in tis if t["task_id"] == stage or t["task_id"].startswith(f"{stage}.")]
        starts = [t["start_date"] for t in ours if t["start_date"]]
        ends = [t["end_date"] for t in ours if t["end_date"]]
        out[stage] = _seconds(min(starts), max(ends)) if starts and ends else 0.0
    producer = [t for t in tis if t["task_id"].endswith("dbt_producer_watcher")]
    out["producer"] = _seconds(producer[0]["start_date"], producer[0]["end_date"]) if producer else 0.0
    out["failed"] = sorted(t["task_id"] for t in tis if t["state"] != "success")
    out["tasks"] = len(tis)
    out["timeline"] = [
        {k: t[k] for k in ("task_id", "state", "try_number", "queued_when", "start_date", "end_date")} for t in tis
    ]
    return out


def _hour(now: dt.datetime, back: int) -> tuple[dt.datetime, dt.datetime]:
    end = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=back)
    return end - dt.timedelta(hours=1), end


def _phase(
    client: AirflowClient, fake: FakeWeatherApi, now: dt.datetime, first_back: int, scheduled: bool
) -> list[dict[str, Any]]:
    results = []
    for i in range(RUNS):
        start, end = _hour(now, first_back + i)
        fake.now = end - dt.timedelta(minutes=10)  # the observation inside the hour the run covers
        if scheduled and i == 0:
            client.unpause(DAG)  # the scheduler starts the last complete hour at once
            run_id = client.scheduled_run(DAG, timeout_s=120)
        else:
            run_id = client.trigger(DAG, start, end, f"bench_{int(end.timestamp())}")
        results.append({"run_id": run_id, **_measure(client, run_id)})
    return results


def _plain_dbt_build(env: dict[str, str], fake: FakeWeatherApi, hour: dt.datetime) -> float:
    """One more hour through the CLI (ingest, bronze, Silver), then `weatherpipe gold` — a plain `dbt build` of the
    project, process start included — timed, median of 3 builds: the same work as a DAG run's Gold task group."""
    weatherpipe = str(Path(sys.executable).with_name("weatherpipe"))
    fake.now = hour

    def cli(*args: str) -> None:
        subprocess.run([weatherpipe, *args], env=env, cwd=ROOT, check=True, capture_output=True)

    cli("ingest", "--source", "openweather")
    cli("bronze")
    cli("silver")
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        cli("gold")
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _screenshot(port: int, run_id: str, out: Path) -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return "no screenshot (install Debian's chromium)"
    out.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}/dags/{DAG}/runs/{run_id}?mode=graph"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1800,2000",  # tall enough for every task of the run
            "--virtual-time-budget=20000",
            f"--screenshot={out}",
            url,
        ],
        check=False,
        capture_output=True,
        timeout=120,
    )
    return f"graph: {out}" if out.exists() else "screenshot failed"


def _note(runs: list[dict[str, Any]]) -> str:
    wall = statistics.median(r["wall"] for r in runs)
    shares = ", ".join(f"{s} {statistics.median(r[s] for r in runs):.1f}" for s in STAGES)
    failed = sorted({t for r in runs for t in r["failed"]})
    walls = "/".join(f"{r['wall']:.1f}" for r in runs)
    between = wall - sum(statistics.median(r[s] for r in runs) for s in STAGES)
    note = f"runs {walls} s; median per stage (s): {shares}; {between:.1f} s between tasks"
    return note + (f"; NOT SUCCESSFUL: {failed}" if failed else "")


def run() -> list[BenchRow]:
    rows: list[BenchRow] = []
    with isolated("hourly") as settings, tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        prefix = f"h{settings.postgres.staging_schema[-6:]}_"
        hundred = many_cities(100, load_cities(settings))
        cities = write_cities(state / "cities.yaml", hundred)
        port = free_port()
        drop_metadata(derive(settings, airflow={"database": AIRFLOW_DB}))  # no run from an earlier bench
        try:
            with FakeWeatherApi(hundred) as fake:
                fake.api_key = API_KEY
                env = _env(settings, state, cities, fake, prefix)
                with running(env, port, state / "airflow.log", timeout_s=600) as client:
                    # one clock for every hour the bench picks: a bench crossing an hour must not pick one twice
                    now = dt.datetime.now(dt.UTC)
                    wide = _phase(client, fake, now, first_back=0, scheduled=True)
                    plain = _plain_dbt_build(env, fake, _hour(now, 2 * RUNS)[1])
                    shot = _screenshot(port, wide[-1]["run_id"], settings.state_dir / "bench" / "airflow-graph.png")
                    write_cities(cities, hundred[:3])
                    narrow = _phase(client, fake, now, first_back=RUNS, scheduled=False)
        finally:
            db.drop_schemas(settings.postgres, prefix)
        timelines = settings.state_dir / "bench" / "hourly-runs.json"
        timelines.parent.mkdir(parents=True, exist_ok=True)
        timelines.write_text(json.dumps({"100 cities": wide, "3 cities": narrow}, indent=1))
    gold_s = statistics.median(r["gold"] for r in wide)
    for n, runs in ((100, wide), (3, narrow)):
        wall = statistics.median(r["wall"] for r in runs)
        rows.append(
            BenchRow(
                "hourly",
                f"DAG run under the scheduler, {n} cities, vs the 30 s budget (s)",
                wall,
                BUDGET_S,
                wall / BUDGET_S,
                "<= 1.0",
                f"median of {RUNS}; {_note(runs)}",
            )
        )
    rows.append(
        BenchRow(
            "hourly",
            "gold task group (watcher) vs one plain `dbt build` (s)",
            gold_s,
            plain,
            gold_s / plain,
            "<= 1.5",
            f"100 cities, median of {RUNS} (the plain build's too); of which the one `dbt build` task "
            f"{statistics.median(r['producer'] for r in wide):.1f} s; {shot}",
        )
    )
    return rows


if __name__ == "__main__":
    from bench.__main__ import main

    sys.exit(main(["bench.bench_hourly"]))
