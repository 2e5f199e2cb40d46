"""The `rules` policy: SQL predicates over a unit's columns, first match wins.

    tiers = route_by_rules(df, [Rule(when="priority = 'high'", tier="flagship")], "cheap")

Predicates are parsed by polars' SQL front end into expressions and evaluated vectorised
over the whole unit; a predicate that is null for a row (null column values) is false.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import polars as pl

from schemas.predicates import compile_predicate, predicate_columns

__all__ = ["compile_predicate", "predicate_columns", "route_by_rules"]

if TYPE_CHECKING:
    from schemas.job import Rule


def route_by_rules(df: pl.DataFrame, rules: Sequence[Rule], default: str) -> pl.Series:
    """One tier name per row of `df` (a String series named `tier`)."""
    if not rules:
        return pl.Series("tier", [default] * df.height, dtype=pl.String)
    chain: pl.Expr | None = None
    for rule in rules:
        cond = compile_predicate(rule.when).fill_null(False)
        chain = (
            pl.when(cond).then(pl.lit(rule.tier))
            if chain is None
            else chain.when(cond).then(pl.lit(rule.tier))  # type: ignore[attr-defined]
        )
    assert chain is not None
    expr = chain.otherwise(pl.lit(default)).alias("tier")  # type: ignore[attr-defined]
    return df.select(expr).to_series().cast(pl.String)
