"""Loading the project's YAML lists (cities, expectations) into typed models, with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from weatherpipe.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def load_models(path: Path, key: str, model: type[M], what: str) -> list[M]:
    """``path``'s list under ``key`` as ``model`` instances; unreadable files, bad entries and duplicate names
    (the model's first field) are ``ConfigError``s naming the file."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        items = [model.model_validate(item) for item in raw.get(key, [])]
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"invalid {what} in {path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    name = next(iter(model.model_fields))
    if len({getattr(i, name) for i in items}) != len(items):
        raise ConfigError(f"duplicate {what} {name}s in {path}")
    return items
