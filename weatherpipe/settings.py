"""One typed settings object for every stage.

Precedence (highest first): explicit arguments, environment variables (``WEATHERPIPE_`` prefix, ``__`` between
nested sections, e.g. ``WEATHERPIPE_KAFKA__BOOTSTRAP_SERVERS``), the ``.env`` file, ``config/config.yaml``
(or the file named by ``WEATHERPIPE_CONFIG``), then the defaults below. Secrets are ``SecretStr`` and never
printed: ``weatherpipe config show`` redacts them.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from weatherpipe.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "WEATHERPIPE_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiSettings(_Section):
    """Weather providers. OpenWeather needs a key; Open-Meteo and the replay source do not."""

    openweather_base_url: str = "https://api.openweathermap.org"
    openweather_api_key: SecretStr | None = None
    open_meteo_base_url: str = "https://api.open-meteo.com"
    open_meteo_archive_url: str = "https://archive-api.open-meteo.com"
    timeout_s: float = Field(10.0, gt=0)
    max_attempts: int = Field(5, ge=1, le=20)
    backoff_initial_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    # a provider's Retry-After is honoured up to this wait; asked to wait longer, that call fails as transient
    max_retry_after_s: float = Field(120.0, ge=0)
    # after this many connection failures in a row (any city), the provider counts as unreachable: stop calling
    circuit_breaker_failures: int = Field(3, ge=1)
    calls_per_minute: int = Field(60, ge=1)
    monthly_call_budget: int = Field(1_000_000, ge=0)


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:19092"
    topic: str = "weather.observations.v1"
    partitions: int = Field(3, ge=1)
    replication_factor: int = Field(1, ge=1)
    consumer_group: str = "weatherpipe-bronze-sink"
    request_timeout_ms: int = Field(15_000, ge=1000)
    delivery_timeout_s: float = Field(30.0, gt=0)


class S3Settings(_Section):
    endpoint_url: str = "http://127.0.0.1:8333"
    region: str = "us-east-1"
    access_key: str = "weatherpipe"
    secret_key: SecretStr = SecretStr("weatherpipe-local-secret")
    bucket: str = "weather-lake"
    bronze_prefix: str = "bronze"
    deadletter_prefix: str = "deadletter"

    @property
    def host_port(self) -> str:
        return urlsplit(self.endpoint_url).netloc

    @property
    def scheme(self) -> str:
        return urlsplit(self.endpoint_url).scheme or "http"


class PostgresSettings(_Section):
    """Three logins, each with only what it needs (``weatherpipe db setup`` provisions them as ``admin_user``):
    ``user`` loads (ingest, Bronze manifest, Silver, audit: owns the ops and staging schemas), ``transformer_user``
    runs dbt (reads staging, owns the Gold schemas), ``bi_role`` reads the marts."""

    host: str = "127.0.0.1"
    port: int = Field(5432, ge=1, le=65535)
    user: str = "weatherpipe_loader"
    password: SecretStr | None = None
    transformer_user: str = "weatherpipe_transformer"
    transformer_password: SecretStr | None = None
    admin_user: str = "postgres"
    admin_password: SecretStr | None = None
    database: str = "weather_dw"
    maintenance_database: str = "postgres"
    staging_schema: str = "staging"
    ops_schema: str = "ops"
    bi_role: str = "bi_reader"
    bi_password: SecretStr | None = None
    connect_timeout_s: int = Field(5, ge=1)

    def conninfo(self, database: str | None = None) -> str:
        """A libpq URL including the password: for drivers only, never for logs (see ``safe_url``)."""
        auth = quote(self.user, safe="")
        if self.password is not None:
            auth += ":" + quote(self.password.get_secret_value(), safe="")
        return (
            f"postgresql://{auth}@{self.host}:{self.port}/{database or self.database}"
            f"?connect_timeout={self.connect_timeout_s}&application_name=weatherpipe"
        )

    def safe_url(self, database: str | None = None) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database or self.database}"

    def login_as(self, user: str, password: SecretStr | None) -> PostgresSettings:
        return self.model_copy(update={"user": user, "password": password})

    @property
    def admin(self) -> PostgresSettings:
        """The provisioning login (database, roles, schemas, grants): never used by a stage."""
        return self.login_as(self.admin_user, self.admin_password)

    @property
    def transformer(self) -> PostgresSettings:
        """dbt's login."""
        return self.login_as(self.transformer_user, self.transformer_password)


class BronzeSettings(_Section):
    """The Kafka -> S3 sink. Chunks never cross multiples of ``chunk_records`` offsets (deterministic keys)."""

    chunk_records: int = Field(20_000, ge=1)
    # A drain hands a partition's buffer to the writer thread once it holds this many messages (and keeps polling).
    flush_records: int = Field(5_000, ge=1)
    flush_interval_s: float = Field(30.0, gt=0)
    poll_timeout_ms: int = Field(500, ge=10)
    drain_timeout_s: float = Field(600.0, gt=0)
    # a drain ends once it has reached the end offsets seen at start and a poll this long finds nothing more
    drain_idle_ms: int = Field(200, ge=10)
    # Processes for a drain, each owning a share of the partitions; 0: one per partition, at most two per core.
    workers: int = Field(0, ge=0)
    # Compaction merges a date's objects once the date ended this long ago (late events still arrive before that),
    compact_lag_hours: float = Field(6.0, ge=0)
    # deletes the objects it retired this long after (a Silver run that listed one before may still read it),
    compact_grace_s: float = Field(3600.0, ge=0)
    # and works on this many dates at once.
    compact_workers: int = Field(4, ge=1)


class SparkSettings(_Section):
    """Where Silver's Spark runs.

    ``connect`` (default): Silver is a thin client of the Spark Connect server at ``remote`` — the local stack starts
    one (``master`` is its master), or point ``remote`` at your own. ``local``: Spark runs inside the calling process
    (a JVM per run, no server). With ``cluster`` the stack also starts a standalone master and worker and its Connect
    server submits there."""

    mode: Literal["connect", "local"] = "connect"
    remote: str = "sc://127.0.0.1:15002"
    master: str = "local[2]"
    cluster: bool = False
    master_port: int = Field(7177, ge=1, le=65535)
    master_ui_port: int = Field(8180, ge=1, le=65535)  # the master's JSON at /json/; the worker's UI is the next port
    connect_ui_port: int = Field(4050, ge=1, le=65535)  # the Connect server's Spark UI and REST API
    worker_cores: int = Field(2, ge=1)
    worker_memory: str = "2g"
    # where the Spark processes the stack starts listen, and the address executors reach the driver at
    driver_host: str = "127.0.0.1"
    bind_address: str = "127.0.0.1"
    # the Python executors run; None: the stack's own, which sees third-party packages but none of ours (our code
    # travels as a Spark Connect artifact, as it must to another host)
    executor_python: Path | None = None
    shuffle_partitions: int = Field(4, ge=1)
    driver_memory: str = "2g"
    read_partitions: int = Field(4, ge=1)

    @field_validator("remote")
    @classmethod
    def _remote_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "sc" or not parts.hostname:
            raise ValueError("must look like sc://host:port (a Spark Connect endpoint)")
        return value

    @property
    def remote_host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.remote)
        return parts.hostname or "127.0.0.1", parts.port or 15002

    @property
    def master_url(self) -> str:
        """What the stack's Connect server submits to."""
        return f"spark://{self.bind_address}:{self.master_port}" if self.cluster else self.master


class DbtSettings(_Section):
    """The Gold layer's dbt project. Every schema dbt builds is ``schema_prefix`` + its name (marts, ...)."""

    target_schema: str = "gold"
    schema_prefix: str = ""
    threads: int = Field(4, ge=1)
    lookback_hours: int = Field(72, ge=0)
    # dbt's target folder (artefacts and the partial-parse cache); None: dbt_project/target. dbt re-parses the whole
    # project whenever its vars change, so runs with another schema prefix (tests, benches) keep their own.
    target_path: Path | None = None

    def schema(self, name: str) -> str:
        return f"{self.schema_prefix}{name}"

    def built_schemas(self) -> list[str]:
        """Every schema the dbt project builds into (dbt_project.yml's ``+schema`` values and the target)."""
        return [self.schema(n) for n in (self.target_schema, "staging_views", "intermediate", "marts", "snapshots")]


class PipelineSettings(_Section):
    """How a whole run is driven (``weatherpipe run`` and the Airflow DAG)."""

    source: Literal["auto", "openweather", "open-meteo", "replay"] = "auto"
    # The offline replay has 2013 only: an interval of any other year replays the same hours of this year.
    replay_year: int = 2013
    # January 2013 in New York's local days (EST, UTC-5): the replay's stations, so no daily row is cut short
    replay_default_start: dt.datetime = dt.datetime(2013, 1, 1, 5, tzinfo=dt.UTC)
    replay_default_end: dt.datetime = dt.datetime(2013, 2, 1, 5, tzinfo=dt.UTC)


class StackSettings(_Section):
    """Local, Docker-free services (``weatherpipe stack up``)."""

    state_dir: Path = Path(".stack")
    # auto: use the configured server when it answers, else start a private one on the same host:port
    manage_postgres: Literal["auto", "never", "always"] = "auto"
    startup_timeout_s: float = Field(60.0, gt=0)
    # the broker's storage: s3 keeps every acknowledged message, committed offset and topic in the stack's own S3
    # store (bucket below) across a kill or a reboot; memory is faster and forgets everything when it stops
    kafka_storage: Literal["s3", "memory"] = "s3"
    kafka_bucket: str = "weatherpipe-kafka"


class AirflowSettings(_Section):
    """Airflow on the local stack (``weatherpipe airflow``): its metadata in a database of its own, with a login of its
    own, on the warehouse's PostgreSQL server (``stack up`` provisions both), and a LocalExecutor that runs tasks in
    parallel."""

    database: str = "weatherpipe_airflow"
    user: str = "weatherpipe_airflow"
    password: SecretStr | None = None
    parallelism: int = Field(16, ge=1)  # task instances running at once (LocalExecutor worker processes)
    port: int = Field(8080, ge=1, le=65535)
    # the DAG's retry policy for transient errors: exponential backoff from retry_delay_s, at most 10 minutes
    retries: int = Field(3, ge=0)
    retry_delay_s: float = Field(30.0, gt=0)


class PathSettings(_Section):
    cities_file: Path = Path("config/cities.yaml")
    expectations_file: Path = Path("config/expectations.yaml")
    dbt_project_dir: Path = Path("dbt_project")


class _PrefixedDotEnv(DotEnvSettingsSource):
    """``.env`` is shared with docker compose, whose own variables (``POSTGRES_USER``, ports, ...) are not ours:
    only ``WEATHERPIPE_*`` keys are read (an unknown one is still an error, so typos surface), and
    ``OPENWEATHER_API_KEY`` as the alias of ``WEATHERPIPE_API__OPENWEATHER_API_KEY``."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        found = super()._load_env_vars()
        prefix = ENV_PREFIX.lower()
        ours = {k: v for k, v in found.items() if k.lower().startswith(prefix)}
        alias = found.get("openweather_api_key") or found.get("OPENWEATHER_API_KEY")
        if alias:
            ours.setdefault(f"{prefix}api__openweather_api_key", alias)
        return ours


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=str(ROOT / ".env"),
        env_file_encoding="utf-8",
        extra="forbid",
        frozen=True,
    )

    env: Literal["local", "compose", "ci", "prod"] = "local"
    log_format: Literal["json", "human", "auto"] = "auto"
    log_level: str = "INFO"
    api: ApiSettings = ApiSettings()
    kafka: KafkaSettings = KafkaSettings()
    s3: S3Settings = S3Settings()
    postgres: PostgresSettings = PostgresSettings()
    bronze: BronzeSettings = BronzeSettings()
    spark: SparkSettings = SparkSettings()
    dbt: DbtSettings = DbtSettings()
    pipeline: PipelineSettings = PipelineSettings()
    stack: StackSettings = StackSettings()
    airflow: AirflowSettings = AirflowSettings()
    paths: PathSettings = PathSettings()

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return upper

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_source = YamlConfigSettingsSource(settings_cls, yaml_file=config_file())
        dotenv = _PrefixedDotEnv(settings_cls, env_file=getattr(dotenv_settings, "env_file", None))
        return init_settings, env_settings, dotenv, yaml_source

    def path(self, relative: Path) -> Path:
        """Resolve a configured path against the project root (absolute paths pass through)."""
        return relative if relative.is_absolute() else ROOT / relative

    @property
    def state_dir(self) -> Path:
        return self.path(self.stack.state_dir)

    def secrets(self) -> list[str]:
        """Every configured secret value, for the log redaction filter."""
        values = [
            self.api.openweather_api_key,
            self.s3.secret_key,
            self.postgres.password,
            self.postgres.transformer_password,
            self.postgres.admin_password,
            self.postgres.bi_password,
            self.airflow.password,
        ]
        return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]

    def redacted(self) -> dict[str, Any]:
        """The effective settings as plain data with every secret replaced by ``'**********'``."""
        data = self.model_dump(mode="json")  # SecretStr dumps as '**********' in json mode
        return data


def config_file() -> Path:
    return Path(os.environ.get(f"{ENV_PREFIX}CONFIG", ROOT / "config" / "config.yaml"))


def _format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "settings"
        env_name = ENV_PREFIX + "__".join(str(p) for p in err["loc"]).upper()
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        parts.append(f"{loc}: {msg} (env {env_name})")
    return "invalid settings: " + "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning validation problems into one clear ``ConfigError`` line.

    ``OPENWEATHER_API_KEY`` (the name users know from the provider's docs) is honoured as an alias of
    ``WEATHERPIPE_API__OPENWEATHER_API_KEY``.
    """
    alias = os.environ.get("OPENWEATHER_API_KEY")
    if alias and f"{ENV_PREFIX}API__OPENWEATHER_API_KEY" not in os.environ:
        api = dict(overrides.pop("api", {}) or {})
        api.setdefault("openweather_api_key", alias)
        overrides["api"] = api
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None
    except (OSError, ValueError) as exc:  # unreadable or malformed YAML
        raise ConfigError(f"cannot read settings from {config_file()}: {exc}") from None
