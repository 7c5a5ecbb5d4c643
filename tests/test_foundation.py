"""Settings, logging/redaction, the audit table and the CLI's error contract."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from pathlib import Path

import pytest

from tests.helpers import run_cli
from weatherpipe import audit, db
from weatherpipe.errors import ConfigError, PipelineError, TransientError
from weatherpipe.log import REDACT, JsonFormatter, RedactingFilter, configure_logging, log_context
from weatherpipe.results import StageResult, new_run_id, timed
from weatherpipe.settings import Settings, load_settings


# -- settings -------------------------------------------------------------------------------------------------
def test_defaults_come_from_config_yaml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka:\n  topic: from-yaml\n  partitions: 7\n")
    monkeypatch.setenv("WEATHERPIPE_CONFIG", str(cfg))
    s = load_settings(_env_file=None)
    assert s.kafka.topic == "from-yaml" and s.kafka.partitions == 7
    assert s.s3.bucket == Settings.model_fields["s3"].default.bucket  # untouched default


def test_precedence_env_over_dotenv_over_yaml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka:\n  topic: yaml\n  partitions: 2\n  consumer_group: yaml-group\n")
    dotenv = tmp_path / ".env"
    dotenv.write_text("WEATHERPIPE_KAFKA__PARTITIONS=5\nWEATHERPIPE_KAFKA__CONSUMER_GROUP=dotenv-group\n")
    monkeypatch.setenv("WEATHERPIPE_CONFIG", str(cfg))
    monkeypatch.setenv("WEATHERPIPE_KAFKA__PARTITIONS", "9")
    s = load_settings(_env_file=str(dotenv))
    assert s.kafka.partitions == 9  # env beats .env
    assert s.kafka.consumer_group == "dotenv-group"  # .env beats yaml
    assert s.kafka.topic == "yaml"  # yaml beats defaults


def test_openweather_key_alias_and_secret_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENWEATHER_API_KEY", "canary-key-123456")
    s = load_settings(_env_file=None)
    assert s.api.openweather_api_key is not None
    assert s.api.openweather_api_key.get_secret_value() == "canary-key-123456"
    assert "canary-key-123456" not in json.dumps(s.redacted())
    assert "canary-key-123456" not in repr(s)
    assert "canary-key-123456" in s.secrets()


def test_wrong_type_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEATHERPIPE_KAFKA__PARTITIONS", "many")
    with pytest.raises(ConfigError) as err:
        load_settings(_env_file=None)
    assert "kafka.partitions" in str(err.value)
    assert "WEATHERPIPE_KAFKA__PARTITIONS" in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_key_in_yaml_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka:\n  topik: typo\n")
    monkeypatch.setenv("WEATHERPIPE_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match=r"kafka\.topik: unknown setting"):
        load_settings(_env_file=None)


def test_cli_bad_config_is_one_line_not_a_traceback() -> None:
    out = run_cli("config", "show", env={"WEATHERPIPE_POSTGRES__PORT": "not-a-port"})
    assert out.returncode == ConfigError.exit_code
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "postgres.port" in lines[0], out.stderr


def test_cli_unknown_login_is_one_line_naming_the_fix(local_stack: Settings) -> None:
    out = run_cli("status", env={"WEATHERPIPE_POSTGRES__USER": "wp_no_such_role"})
    assert out.returncode == ConfigError.exit_code, out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "refused the login 'wp_no_such_role'" in lines[0] and "weatherpipe db setup" in lines[0]


def test_cli_config_show_redacts_every_secret() -> None:
    env = {
        "OPENWEATHER_API_KEY": "owm-canary-0000",
        "WEATHERPIPE_S3__SECRET_KEY": "s3-canary-1111",
        "WEATHERPIPE_POSTGRES__PASSWORD": "pg-canary-2222",
        "WEATHERPIPE_POSTGRES__TRANSFORMER_PASSWORD": "pg-canary-3333",
        "WEATHERPIPE_POSTGRES__ADMIN_PASSWORD": "pg-canary-4444",
    }
    out = run_cli("config", "show", env=env)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    for canary in env.values():
        assert canary not in out.stdout + out.stderr
    assert shown["s3"]["secret_key"] == "**********"
    assert shown["api"]["openweather_api_key"] == "**********"


def test_every_command_has_help() -> None:
    from typer.main import get_command

    from weatherpipe.cli import app

    root = get_command(app)
    names = list(root.commands)  # type: ignore[attr-defined]
    assert {"stack", "config", "ingest", "bronze", "silver", "gold", "run", "status", "retention"} <= set(names)
    for name in names:
        out = run_cli(name, "--help")
        assert out.returncode == 0 and "Usage" in out.stdout, name


# -- logging --------------------------------------------------------------------------------------------------
def _capture(secret: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger(f"test.redact.{secret}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    REDACT.add(secret)
    return logger, stream


def test_json_lines_carry_stage_and_run_id() -> None:
    logger, stream = _capture("unused-secret-xyz")
    with log_context(stage="ingest", run_id="r-1"):
        logger.info("fetched %d cities", 3, extra={"source": "replay"})
    record = json.loads(stream.getvalue())
    assert record["stage"] == "ingest" and record["run_id"] == "r-1"
    assert record["message"] == "fetched 3 cities" and record["source"] == "replay"
    assert dt.datetime.fromisoformat(record["time"]).tzinfo is not None


def test_secrets_redacted_in_message_args_extras_and_exceptions() -> None:
    secret = "sekret-canary-9f8e7d"
    logger, stream = _capture(secret)
    logger.info("calling https://api.example/data?appid=%s&q=x", secret, extra={"url": f"x?appid={secret}"})
    try:
        raise RuntimeError(f"boom with {secret}")
    except RuntimeError:
        logger.exception("failed")
    logger.info("an unconfigured key in a URL: https://h/p?lat=1&appid=abcdef0123456789")
    text = stream.getvalue()
    assert secret not in text
    assert "abcdef0123456789" not in text
    assert text.count("***") >= 4


def test_configure_logging_is_idempotent() -> None:
    configure_logging("INFO", "json")
    configure_logging("INFO", "json")
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_weatherpipe", False)]
    assert len(ours) == 1


# -- errors and results ---------------------------------------------------------------------------------------
def test_error_hierarchy_says_transient_or_terminal() -> None:
    from weatherpipe import errors

    assert errors.ServiceUnavailable("x").transient and errors.SourceError("x").transient
    for terminal in (
        errors.ConfigError,
        errors.SourceAuthError,
        errors.BudgetExceeded,
        errors.ExpectationFailed,
    ):
        assert not terminal("x").transient
        assert issubclass(terminal, PipelineError) and not issubclass(terminal, TransientError)


def test_timed_marks_failure_and_duration() -> None:
    result = StageResult("demo", new_run_id("test"))
    with pytest.raises(ValueError), timed(result):
        raise ValueError("bad")
    assert result.status == "failed" and result.error == "bad"
    assert result.finished_at is not None and result.duration_s >= 0


def test_stage_result_recorded_and_upserted(settings: Settings) -> None:
    result = StageResult(
        "ingest",
        "run-audit-1",
        rows_in=10,
        rows_out=9,
        rows_rejected=1,
        objects=["a", "b"],
        offsets={"0": [0, 5]},
        details={"failed_cities": {"x": "city not found"}},
    )
    with timed(result):
        pass
    audit.record_result(settings, result)
    result.rows_out = 10
    audit.record_result(settings, result)  # a rerun replaces the row
    with db.connect(settings.postgres.admin) as conn:
        rows = conn.execute(
            f'select rows_in, rows_out, rows_rejected, object_count, details from "{settings.postgres.ops_schema}"'
            ".pipeline_runs where run_id = 'run-audit-1'"
        ).fetchall()
    assert rows == [(10, 10, 1, 2, {"failed_cities": {"x": "city not found"}})]
