"""Rule predicates: SQL over a unit's columns, parsed once by polars' SQL front end.

    expr = compile_predicate("priority = 'high' AND length(body) > 2000")
    predicate_columns("priority = 'high'")          # ['priority']

The spec validates every predicate with this (a typo fails `tierline validate`), and the
`rules` router evaluates the same expressions, so the two can never disagree.
"""

from __future__ import annotations

from functools import lru_cache

import polars as pl

from schemas.problems import reason


@lru_cache(maxsize=256)
def compile_predicate(sql: str) -> pl.Expr:
    """Parse one predicate; a ValueError names the predicate and what polars said."""
    text = sql.strip()
    if not text:
        raise ValueError("rule predicate is empty")
    try:
        expr = pl.sql_expr(text)
    except Exception as exc:  # polars raises several SQL error types
        raise ValueError(
            f"cannot parse rule {sql!r}: {reason(exc)}; write one SQL condition over input "
            "columns, e.g. priority = 'high' AND length(body) > 1500"
        ) from None
    return expr


def predicate_columns(sql: str) -> list[str]:
    """Columns a predicate reads, for checking them against the input schema."""
    return sorted(set(compile_predicate(sql).meta.root_names()))
