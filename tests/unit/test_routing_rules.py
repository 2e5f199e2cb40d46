from __future__ import annotations

import polars as pl
import pytest

from pipeline.routing.policy import choose_tiers, routing_columns
from pipeline.routing.rules import compile_predicate, predicate_columns
from schemas.job import RoutingSpec, Rule


def test_first_matching_rule_wins_and_nulls_fall_through() -> None:
    df = pl.DataFrame(
        {
            "priority": ["high", "normal", None, "high", "normal"],
            "body": ["x" * 2000, "x" * 2000, "short", None, "short"],
        }
    )
    routing = RoutingSpec(
        rules=[
            Rule(when="priority = 'high'", tier="flagship"),
            Rule(when="length(body) > 1500", tier="mid"),
        ],
        default="cheap",
    )
    assert choose_tiers(df, routing).to_list() == ["flagship", "mid", "cheap", "flagship", "cheap"]


def test_no_rules_routes_everything_to_default() -> None:
    df = pl.DataFrame({"a": [1, 2, 3]})
    assert choose_tiers(df, RoutingSpec(default="mid")).to_list() == ["mid"] * 3


def test_predicate_columns_and_errors() -> None:
    assert predicate_columns("priority IN ('high', 'urgent') AND length(body) > 10") == [
        "body",
        "priority",
    ]
    routing = RoutingSpec(rules=[Rule(when="lower(segment) LIKE 'ent%'", tier="mid")])
    assert routing_columns(routing) == ["segment"]
    with pytest.raises(ValueError, match="cannot parse rule"):
        compile_predicate("priority = = 'x'")
