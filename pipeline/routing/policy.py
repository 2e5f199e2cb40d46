"""Chooses a tier for every row of a unit, by the spec's routing policy.

    tiers = choose_tiers(df, spec.routing)    # pl.Series of 'cheap' | 'mid' | 'flagship'

Policies register here by name; the worker never dispatches on the policy itself.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from pipeline.routing.rules import compile_predicate, predicate_columns, route_by_rules
from schemas.job import RoutingSpec

PolicyFn = Callable[[pl.DataFrame, RoutingSpec], pl.Series]


def _rules(df: pl.DataFrame, routing: RoutingSpec) -> pl.Series:
    return route_by_rules(df, routing.rules, routing.default)


def _learned(df: pl.DataFrame, routing: RoutingSpec) -> pl.Series:
    # Imported on first use: numpy/scipy/scikit-learn load only for jobs that route this way.
    from pipeline.routing.learned import learned_policy

    return learned_policy(df, routing)


def _cascade(df: pl.DataFrame, routing: RoutingSpec) -> pl.Series:
    # Every row starts at the cheapest tier; the executor escalates rejected answers.
    # Rules, when given, may still send rows higher from the start.
    return route_by_rules(df, routing.rules, routing.default)


POLICIES: dict[str, PolicyFn] = {"rules": _rules, "learned": _learned, "cascade": _cascade}


def choose_tiers(df: pl.DataFrame, routing: RoutingSpec) -> pl.Series:
    return POLICIES[routing.policy](df, routing)


def routing_columns(routing: RoutingSpec) -> list[str]:
    """Input columns the policy reads (checked against each shard's schema at plan time)."""
    cols: set[str] = set()
    for rule in routing.rules:
        cols.update(predicate_columns(rule.when))
    cols.update(getattr(routing, "features", None) or [])  # the learned policy's metadata
    if routing.sensitive is not None and routing.sensitive.when:
        cols.update(predicate_columns(routing.sensitive.when))
    return sorted(cols)


def sensitive_mask(df: pl.DataFrame, routing: RoutingSpec, text_col: str) -> pl.Series:
    """True for rows only `routing.sensitive.allowed_providers` may see."""
    rule = routing.sensitive
    if rule is None:
        return pl.Series("sensitive", [False] * df.height, dtype=pl.Boolean)
    expr = pl.lit(False)
    if rule.when:
        expr = expr | compile_predicate(rule.when).fill_null(False)
    if rule.pattern:
        expr = expr | pl.col(text_col).str.contains(rule.pattern).fill_null(False)
    return df.select(expr.alias("sensitive")).to_series()
