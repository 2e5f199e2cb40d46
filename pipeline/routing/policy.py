"""Chooses a tier for every row of a unit, by the spec's routing policy.

    tiers = choose_tiers(df, spec.routing)    # pl.Series of 'cheap' | 'mid' | 'flagship'

Policies register here by name; the worker never dispatches on the policy itself.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from pipeline.routing.rules import predicate_columns, route_by_rules
from schemas.job import RoutingSpec

PolicyFn = Callable[[pl.DataFrame, RoutingSpec], pl.Series]


def _rules(df: pl.DataFrame, routing: RoutingSpec) -> pl.Series:
    return route_by_rules(df, routing.rules, routing.default)


def _learned(df: pl.DataFrame, routing: RoutingSpec) -> pl.Series:
    # Imported on first use: numpy/scipy/scikit-learn load only for jobs that route this way.
    from pipeline.routing.learned import learned_policy

    return learned_policy(df, routing)


POLICIES: dict[str, PolicyFn] = {"rules": _rules, "learned": _learned}


def choose_tiers(df: pl.DataFrame, routing: RoutingSpec) -> pl.Series:
    return POLICIES[routing.policy](df, routing)


def routing_columns(routing: RoutingSpec) -> list[str]:
    """Input columns the policy reads (checked against each shard's schema at plan time)."""
    cols: set[str] = set()
    for rule in routing.rules:
        cols.update(predicate_columns(rule.when))
    cols.update(getattr(routing, "features", None) or [])  # the learned policy's metadata
    return sorted(cols)
