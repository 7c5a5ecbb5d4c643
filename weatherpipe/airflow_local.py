"""Airflow on this machine, without Docker: ``airflow standalone`` against the local stack, with the project's
DAGs, its metadata in SQLite under the stack's state folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from weatherpipe.settings import ROOT, Settings


def airflow_env(settings: Settings, home: Path | None = None, port: int = 8080) -> dict[str, str]:
    home = home or settings.state_dir / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "airflow" / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # standalone runs `airflow`
        "DO_NOT_TRACK": "1",
        "SCARF_ANALYTICS": "false",
        "PYSPARK_PYTHON": sys.executable,
        "WEATHERPIPE_DBT_EXECUTABLE": str(Path(sys.executable).with_name("dbt")),
    }


def prepare(env: dict[str, str]) -> None:
    """Migrate the metadata database and create the API pool (idempotent)."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run(
        [airflow, "pools", "set", "weather_api", "1", "OpenWeather: 60 calls/min, one ingest at a time"],
        env=env,
        check=True,
        capture_output=True,
    )


def standalone(settings: Settings, port: int = 8080) -> None:
    from weatherpipe import gold

    gold.parse(settings)
    env = airflow_env(settings, port=port)
    prepare(env)
    print(f"Airflow UI: http://127.0.0.1:{port}/  login: admin (password in {env['AIRFLOW_HOME']}/passwords.json)")
    os.execvpe(str(Path(sys.executable).with_name("airflow")), ["airflow", "standalone"], env)  # noqa: S606
