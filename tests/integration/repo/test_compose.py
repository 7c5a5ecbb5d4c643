"""docker-compose deployment, validated statically (no Docker engine runs here)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import ROOT
from weatherpipe.settings import load_settings

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"


def _documented() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if re.match(r"^[A-Z_0-9]+=", line)]
    return {k: v for k, v in pairs}


@pytest.fixture(scope="module")
def resolved() -> dict:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed (.ci/run installs Debian's package)")
    out = subprocess.run(
        [exe, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def test_compose_config_is_valid(resolved: dict) -> None:
    services = set(resolved["services"])
    assert {
        "kafka",
        "minio",
        "minio-init",
        "postgres",
        "spark-master",
        "spark-worker",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "kafka-ui",
    } <= services
    for name in ("kafka", "minio", "postgres", "spark-master", "airflow-apiserver"):
        assert "healthcheck" in resolved["services"][name], name
    assert resolved["services"]["airflow-scheduler"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert set(resolved["volumes"]) == {"kafka-data", "minio-data", "postgres-data"}


def test_every_compose_variable_is_documented() -> None:
    text = COMPOSE.read_text()
    used = set(re.findall(r"\$\{([A-Z_0-9]+)(?::?-[^}]*)?\}", text))
    missing = sorted(used - set(_documented()))
    assert missing == [], f"document these in .env.example: {missing}"


def test_settings_from_compose_environment_match_the_services(resolved: dict, monkeypatch) -> None:
    env = resolved["services"]["airflow-scheduler"]["environment"]
    for key in [k for k in list(__import__("os").environ) if k.startswith("WEATHERPIPE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("WEATHERPIPE_") or key == "OPENWEATHER_API_KEY":
            monkeypatch.setenv(key, str(value))
    settings = load_settings(_env_file=None)
    services = resolved["services"]
    kafka_host, kafka_port = settings.kafka.bootstrap_servers.split(":")
    assert kafka_host in services and f"INTERNAL://:{kafka_port}" in services["kafka"]["environment"]["KAFKA_LISTENERS"]
    assert settings.s3.endpoint_url == "http://minio:9000" and "minio" in services
    assert settings.s3.bucket == _documented()["S3_BUCKET"]
    assert settings.postgres.host in services and settings.postgres.port == 5432
    assert settings.postgres.password is not None and settings.stack.manage_postgres == "never"
    assert "weather_dw" in (ROOT / "docker" / "postgres" / "init.sql").read_text()


@pytest.mark.parametrize("dockerfile", ["docker/Dockerfile.airflow", "docker/Dockerfile.spark"])
def test_hadolint_clean(dockerfile: str) -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    out = subprocess.run([str(hadolint), dockerfile], cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfiles_pin_base_images_and_drop_root() -> None:
    for path in ("docker/Dockerfile.airflow", "docker/Dockerfile.spark"):
        text = (ROOT / path).read_text()
        base = re.search(r"^FROM (\S+)", text, re.M)
        assert base and ":" in base.group(1) and not base.group(1).endswith(":latest")
        users = re.findall(r"^USER (\S+)", text, re.M)
        assert users and users[-1] != "0", f"{path} must end as a non-root user"
