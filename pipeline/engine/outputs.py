"""A unit's outcomes as the tables its files hold: results, costs (priced), errors.

    results, costs, errors = unit_tables(7, outcomes, spec.price_table())
    row_costs(outcomes, prices)          # USD per outcome, as its cost rows will say
    spend_by_model(costs)                # {(provider, model): usd}

Pricing goes through `pipeline.costs.add_cost_column`, the function the summary and the
forecast use; reused answers (cache hits, identical rows) cost $0 and keep their tokens,
so what they saved can be priced.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import polars as pl
import pyarrow as pa

from jobs.base import JobKind
from pipeline.calls.cache import FREE_STATUSES
from pipeline.calls.outcome import RowOutcome
from pipeline.costs import add_cost_column
from schemas.prices import PriceTable
from schemas.records import COSTS, ERRORS, RESULTS, RETRYABLE_ERRORS


def results_schema(kind: JobKind | None = None) -> pa.Schema:
    """RESULTS, and after it the kind's typed columns (extract: out_<field>)."""
    typed = kind.typed_columns([]) if kind is not None else None
    if typed is None:
        return RESULTS
    return pa.schema([*RESULTS, *typed.schema])


def unit_tables(
    unit: int, outcomes: list[RowOutcome], prices: PriceTable, kind: JobKind | None = None
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """A unit's results, costs (priced) and errors, one row per outcome (and per call);
    results carry the kind's typed columns after the common ones."""
    now = datetime.now(UTC)
    ok = [o for o in outcomes if o.ok]
    bad = [o for o in outcomes if not o.ok]
    results = pa.Table.from_pylist(
        [
            {
                "id": o.id,
                "output": o.output,
                "tier": o.tier,
                "routed_tier": o.routed_tier or o.tier,
                "provider": o.provider,
                "model": o.model,
                "prompt_version": o.prompt_version,
                "status": "ok",
                "attempts": o.attempts,
                "retries": o.retries,
                "rate_limited": o.rate_limited,
                "accepted_attempt": o.accepted_attempt,
                "accepted_reason": o.accepted_reason,
                "latency_ms": o.latency_ms,
                "unit": unit,
                "completed_at": now,
            }
            for o in ok
        ],
        schema=RESULTS,
    )
    typed = kind.typed_columns([o.output for o in ok]) if kind is not None else None
    if typed is not None:
        for field, column in zip(typed.schema, typed.columns, strict=True):
            results = results.append_column(field, column)
    errors = pa.Table.from_pylist(
        [
            {
                "id": o.id,
                "error_type": o.error_type,
                "message": o.message,
                "attempts": o.attempts,
                "tier": o.tier or None,
                "provider": o.provider,
                "model": o.model,
                "retryable": o.error_type in RETRYABLE_ERRORS,
                "unit": unit,
            }
            for o in bad
        ],
        schema=ERRORS,
    )
    costs = price_calls(call_rows(outcomes, unit), prices)
    return results, costs, errors


def call_rows(outcomes: list[RowOutcome], unit: int) -> list[dict[str, object]]:
    return [c.cost_row(o.id, unit) for o in outcomes for c in o.calls]


def row_costs(outcomes: Sequence[RowOutcome], prices: PriceTable) -> list[float]:
    """USD each outcome's calls cost, priced as its cost rows will be."""
    costs = price_calls(call_rows(list(outcomes), 0), prices)
    by_id: dict[str, float] = {}
    for rid, usd in zip(costs["id"].to_pylist(), costs["cost_usd"].to_pylist(), strict=True):
        by_id[rid] = by_id.get(rid, 0.0) + float(usd or 0.0)
    return [by_id.get(o.id, 0.0) for o in outcomes]


def price_calls(rows: list[dict[str, object]], prices: PriceTable) -> pa.Table:
    if not rows:
        return COSTS.empty_table()
    df = add_cost_column(pl.DataFrame(rows), prices)
    # Reused answers cost nothing; their tokens stay, so savings can be priced.
    free = pl.col("call_status").is_in(list(FREE_STATUSES))
    df = df.with_columns(pl.when(free).then(0.0).otherwise(pl.col("cost_usd")).alias("cost_usd"))
    return df.select(COSTS.names).to_arrow().cast(COSTS)


def spend_by_model(costs: pa.Table) -> dict[tuple[str, str], float]:
    if costs.num_rows == 0:
        return {}
    df = pl.from_arrow(costs.select(["provider", "model", "cost_usd"]))
    assert isinstance(df, pl.DataFrame)
    grouped = df.group_by("provider", "model").agg(pl.col("cost_usd").sum())
    return {(p, m): float(c) for p, m, c in grouped.iter_rows()}
