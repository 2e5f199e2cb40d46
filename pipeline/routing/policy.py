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


POLICIES: dict[str, PolicyFn] = {"rules": _rules}


def choose_tiers(df: pl.DataFrame, routing: RoutingSpec) -> pl.Series:
    return POLICIES[routing.policy](df, routing)


def routing_columns(routing: RoutingSpec) -> list[str]:
    """Input columns the policy reads (checked against each shard's schema at plan time)."""
    cols: set[str] = set()
    for rule in routing.rules:
        cols.update(predicate_columns(rule.when))
    return sorted(cols)
