"""Airflow on this machine, without Docker: ``airflow standalone`` against the local stack, with the project's DAGs.

Its metadata lives in PostgreSQL — a database and a login of its own on the warehouse's server, as Airflow's
documentation recommends beyond a demo — and a LocalExecutor runs tasks in parallel (SQLite would force one at a
time). ``AirflowClient`` drives a running instance through its REST API (the hourly bench and the scheduler test).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from weatherpipe import db
from weatherpipe.errors import ServiceUnavailable
from weatherpipe.settings import ROOT, Settings

LOCAL_SETTINGS_DIR = ROOT / "airflow" / "config"  # airflow_local_settings.py


def metadata_url(settings: Settings, driver: str = "psycopg2") -> str:
    """SQLAlchemy's URL of Airflow's metadata database (with the password: for Airflow's env only, never logs).
    Airflow's async engine takes ``driver="psycopg"`` (psycopg 3 is installed; its default, asyncpg, is not)."""
    af, pg = settings.airflow, settings.postgres
    auth = quote(af.user, safe="")
    if af.password is not None and af.password.get_secret_value():
        auth += ":" + quote(af.password.get_secret_value(), safe="")
    return f"postgresql+{driver}://{auth}@{pg.host}:{pg.port}/{quote(af.database, safe='')}"


def provision_metadata(settings: Settings) -> None:
    """As the warehouse's admin login: Airflow's login and its database, owned by it (idempotent)."""
    af, pg = settings.airflow, settings.postgres
    with db.connect(pg.admin, pg.maintenance_database, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(hashtext('weatherpipe.provision.airflow'))")
        try:
            db.ensure_login(conn, af.user, af.password)
            if not conn.execute("select 1 from pg_database where datname = %s", (af.database,)).fetchone():
                with suppress(psycopg.errors.DuplicateDatabase):
                    conn.execute(
                        sql.SQL("create database {} owner {}").format(
                            sql.Identifier(af.database), sql.Identifier(af.user)
                        )
                    )
        finally:
            conn.execute("select pg_advisory_unlock(hashtext('weatherpipe.provision.airflow'))")
    with db.connect(pg.admin, af.database) as conn:  # the login is NOINHERIT: owning the database is not enough
        conn.execute(sql.SQL("grant usage, create on schema public to {}").format(sql.Identifier(af.user)))


def drop_metadata(settings: Settings) -> None:
    """Drop Airflow's metadata database (a test's or a bench's own, to start from no DAG run at all)."""
    pg = settings.postgres
    with db.connect(pg.admin, pg.maintenance_database, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(settings.airflow.database))
        )


def airflow_env(settings: Settings, home: Path | None = None, port: int | None = None) -> dict[str, str]:
    home = home or settings.state_dir / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    port = port or settings.airflow.port
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "airflow" / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url(settings),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": metadata_url(settings, "psycopg"),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(settings.airflow.parallelism),
        # the scheduler looks for ready tasks every 0.2 s instead of every second: a DAG run is a chain of short
        # tasks (one per model level), each waiting one scheduler loop for its turn
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        # where task processes report to: the default is port 8080 whatever the API server's port
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # standalone runs `airflow`
        # airflow_local_settings: the scheduler imports what tasks import, so each forked task starts with it loaded
        "PYTHONPATH": os.pathsep.join(filter(None, [str(LOCAL_SETTINGS_DIR), os.environ.get("PYTHONPATH")])),
        # Cosmos's watcher rewrites an Airflow Variable holding every XCom of the build after each XCom it pushes, so
        # that a retried build can restore them; the build is never retried (retries=0 in the DAG), and Cosmos still
        # writes that Variable once if the build fails
        "AIRFLOW__COSMOS__ENABLE_WATCHER_RELIABLE_RETRY": "False",
        "DO_NOT_TRACK": "1",
        "SCARF_ANALYTICS": "false",
        "PYSPARK_PYTHON": sys.executable,
        "WEATHERPIPE_DBT_EXECUTABLE": str(Path(sys.executable).with_name("dbt")),
    }


def prepare(settings: Settings, env: dict[str, str]) -> None:
    """Provision and migrate the metadata database and create the API pool (idempotent)."""
    provision_metadata(settings)
    airflow = str(Path(sys.executable).with_name("airflow"))
    for args in (
        ["db", "migrate"],
        ["pools", "set", "weather_api", "1", "OpenWeather: 60 calls/min, one ingest at a time"],
    ):
        done = subprocess.run([airflow, *args], env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ServiceUnavailable(f"`airflow {args[0]} {args[1]}` failed: {tail[0][:300]}")


def standalone(settings: Settings, port: int | None = None) -> None:
    from weatherpipe import gold

    gold.parse(settings)
    env = airflow_env(settings, port=port)
    prepare(settings, env)
    print(
        f"Airflow UI: http://127.0.0.1:{env['AIRFLOW__API__PORT']}/  login: admin "
        f"(password in {env['AIRFLOW_HOME']}/passwords.json)"
    )
    os.execvpe(str(Path(sys.executable).with_name("airflow")), ["airflow", "standalone"], env)  # noqa: S606


class AirflowClient:
    """Airflow's REST API (v2) as the simple auth manager's ``admin``: trigger runs, read their task instances."""

    def __init__(self, base_url: str, password: Callable[[], str] | None, user: str = "admin") -> None:
        """``password`` is read when the client first logs in (the API server writes it as it starts); ``None``
        when Airflow runs with ``simple_auth_manager_all_admins`` (every request is the admin's, no login)."""
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"not an HTTP URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._user, self._password = user, password
        self._token: str | None = None

    def _request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth and self._password is not None:
            headers["Authorization"] = f"Bearer {self._login()}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)  # noqa: S310
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - http(s) only, checked above
            return json.loads(resp.read() or b"null")

    def _login(self) -> str:
        assert self._password is not None
        if self._token is None:
            credentials = {"username": self._user, "password": self._password()}
            self._token = self._request("POST", "/auth/token", credentials, auth=False)["access_token"]
        return self._token

    def wait_until_up(self, timeout_s: float, proc: subprocess.Popen[Any] | None = None) -> str:
        """The API's version once it answers and a DAG has been parsed; ``ServiceUnavailable`` after the timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise ServiceUnavailable(f"Airflow exited with code {proc.returncode} while starting")
            with suppress(OSError, KeyError, ValueError):  # not up yet, or no password file yet
                version = self._request("GET", "/api/v2/version", auth=False)["version"]
                if self._request("GET", "/api/v2/dags")["total_entries"]:
                    return str(version)
            time.sleep(1)
        raise ServiceUnavailable(f"Airflow did not answer at {self.base_url} within {timeout_s:.0f} s")

    def unpause(self, dag_id: str) -> None:
        self._request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, start: dt.datetime, end: dt.datetime, run_id: str) -> str:
        """A manual run for the data interval [start, end); returns its run id."""
        body = {
            "dag_run_id": run_id,
            "logical_date": start.isoformat(),  # the timetable's: a data interval's start
            "data_interval_start": start.isoformat(),
            "data_interval_end": end.isoformat(),
        }
        return str(self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)["dag_run_id"])

    def scheduled_run(self, dag_id: str, timeout_s: float) -> str:
        """The id of the DAG's first scheduled run (not a manual one), once the scheduler has created it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            runs = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=logical_date")["dag_runs"]
            scheduled = [r for r in runs if r.get("run_type") == "scheduled"]
            if scheduled:
                return str(scheduled[0]["dag_run_id"])
            time.sleep(1)
        raise ServiceUnavailable(f"the scheduler created no run of {dag_id} within {timeout_s:.0f} s")

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"))

    def wait(self, dag_id: str, run_id: str, timeout_s: float) -> dict[str, Any]:
        """The run once it is finished (success or failed), or ``ServiceUnavailable`` after the timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = self.run(dag_id, run_id)
            if run["state"] in {"success", "failed"}:
                return run
            # the run's times come from Airflow, not from this loop; each request costs the API server that the
            # run's tasks talk to tens of milliseconds of a core, so polling faster would slow what it measures
            time.sleep(2)
        raise ServiceUnavailable(f"DAG run {run_id} did not finish within {timeout_s:.0f} s")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances?limit=1000"
        return list(self._request("GET", path)["task_instances"])


@contextmanager
def running(env: dict[str, str], port: int, log: Path, timeout_s: float = 300) -> Iterator[AirflowClient]:
    """``weatherpipe airflow`` (every Airflow service) in a process group of its own, its output in ``log``, for the
    block's duration; a client logged in once the API answers and the DAGs are parsed. Stopped at the end: SIGTERM,
    then SIGKILL after 40 s."""
    home = Path(env.get("WEATHERPIPE_STACK__STATE_DIR", ROOT / ".stack")) / "airflow"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("weatherpipe")), "airflow", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        all_admins = env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "").lower() == "true"
        client = AirflowClient(f"http://127.0.0.1:{port}", None if all_admins else lambda: admin_password(home))
        client.wait_until_up(timeout_s, proc)
        yield client
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen[Any]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:  # the api-server, scheduler, ... shut down gracefully
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        proc.poll()
        time.sleep(0.5)
    else:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def admin_password(home: Path) -> str:
    """The generated password of the simple auth manager's ``admin`` (written when the API server starts)."""
    return str(json.loads((home / "passwords.json").read_text())["admin"])
