"""The unit layer runs with no service, no Spark and no subprocess: any attempt fails the test that made it."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _no_services_no_subprocesses(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(what: str) -> Any:
        def _refused(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError(f"a unit test tried to {what}: it belongs in tests/integration")

        return _refused

    monkeypatch.setattr(socket.socket, "connect", refuse("open a network connection"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("open a network connection"))
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("start a subprocess"))
    yield
