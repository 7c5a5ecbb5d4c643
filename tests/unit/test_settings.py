"""Settings: precedence, secrets, and errors that name the setting and its variable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from weatherpipe.errors import ConfigError
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


def test_default_replay_window_is_whole_local_days_of_its_stations() -> None:
    """The replay's stations are in New York: a window in UTC days cut the last local day to 19 hours."""
    from zoneinfo import ZoneInfo

    pipeline = load_settings(_env_file=None).pipeline
    for edge in (pipeline.replay_default_start, pipeline.replay_default_end):
        local = edge.astimezone(ZoneInfo("America/New_York"))
        assert (local.hour, local.minute, local.day) == (0, 0, 1)
