"""Data-quality expectations as data (``config/expectations.yaml``), applied as pure DataFrame transforms."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from weatherpipe.config_files import load_models

Action = Literal["warn", "drop", "fail"]


class Expectation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    predicate: str = Field(min_length=1)
    action: Action


def load_expectations(path: Path) -> list[Expectation]:
    return load_models(path, "expectations", Expectation, "expectation")


def _broken(rule: Expectation) -> F.Column:
    """TRUE when the row breaks the rule; a NULL predicate counts as broken (NULL-safe by construction)."""
    return ~F.coalesce(F.expr(f"({rule.predicate})"), F.lit(False))


def evaluate(df: DataFrame, rules: list[Expectation]) -> DataFrame:
    """Adds ``failed_rules`` (drop rules broken), ``warned_rules`` and ``fatal_rules`` (arrays of names)."""

    def names(action: str) -> F.Column:
        picked = [F.when(_broken(r), F.lit(r.name)) for r in rules if r.action == action]
        if not picked:
            return F.array().cast("array<string>")
        return F.filter(F.array(*picked), lambda x: x.isNotNull())

    return (
        df.withColumn("failed_rules", names("drop"))
        .withColumn("warned_rules", names("warn"))
        .withColumn("fatal_rules", names("fail"))
    )


def rule_counts(df: DataFrame, rules: list[Expectation]) -> dict[str, int]:
    """How many rows broke each rule (one aggregation pass over the evaluated frame)."""
    if not rules:
        return {}
    aggs = [F.sum(F.when(_broken(r), 1).otherwise(0)).alias(r.name) for r in rules]
    row = df.agg(*aggs).collect()[0]
    return {r.name: int(row[r.name] or 0) for r in rules}


def split(evaluated: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(clean, quarantined): every row lands in exactly one of them."""
    broken = F.size("failed_rules") > 0
    return evaluated.filter(~broken), evaluated.filter(broken)
