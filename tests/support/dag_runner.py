"""Runs ``dag.test()`` for weather_pipeline in a clean process (Airflow reads its config at import)."""

from __future__ import annotations

import datetime as dt
import json
import sys

from airflow.dag_processing.dagbag import DagBag

from weatherpipe.settings import ROOT

logical = dt.datetime.fromisoformat(sys.argv[1])
dag = DagBag(dag_folder=str(ROOT / "airflow" / "dags")).get_dag("weather_pipeline")
run = dag.test(logical_date=logical)
print(json.dumps({"state": str(run.state), "run_id": run.run_id}))
