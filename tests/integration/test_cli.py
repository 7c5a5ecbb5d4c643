"""The CLI's error contract, as a user meets it (a subprocess): one line, never a traceback or a secret."""

from __future__ import annotations

import json

from tests.support import run_cli
from weatherpipe.errors import ConfigError
from weatherpipe.settings import Settings


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
