"""The code quality gates, run as tests so that `make test` (and CI) enforce them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

BIN = Path(sys.executable).parent


def _run(*cmd: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False, timeout=600)


def test_ruff_lint_and_import_order() -> None:
    out = _run(str(BIN / "ruff"), "check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format() -> None:
    out = _run(str(BIN / "ruff"), "format", "--check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
def test_import_layers() -> None:
    """The ground floor imports no stage, stages import no entry point nor one another (pyproject's contracts)."""
    out = _run(str(BIN / "lint-imports"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_sqlfluff_lint_dbt_project(local_stack) -> None:
    out = _run(str(BIN / "sqlfluff"), "lint", "models", "snapshots", "tests", cwd=ROOT / "dbt_project")
    assert out.returncode == 0, out.stdout[-4000:]


def test_every_bench_imports() -> None:
    """`make bench` runs outside the suite: a renamed module must fail here, not in the next person's bench run."""
    import importlib

    from bench.__main__ import BENCHES

    for name in BENCHES:
        importlib.import_module(name)
