"""A unit's outcomes as the tables its files hold: results, costs (priced), errors.

    results, costs, errors = unit_tables(7, outcomes, spec.price_table())
    row_costs(outcomes, prices)          # USD per outcome, as its cost rows will say
    spend_by_model(costs)                # {(provider, model): usd}

Pricing goes through `pipeline.costs.add_cost_column`, the function the summary and the
forecast use; reused answers (cache hits, identical rows) cost $0 and keep their tokens,
so what they saved can be priced.
"""

from __future__ import annotations

import json
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
    costs = price_calls(call_rows(outcomes, unit), prices)
    spent: dict[str, float] = {}
    for rid, usd in zip(costs["id"].to_pylist(), costs["cost_usd"].to_pylist(), strict=True):
        spent[rid] = spent.get(rid, 0.0) + float(usd or 0.0)

    def at(o: RowOutcome) -> datetime:
        return now if o.completed_at is None else datetime.fromtimestamp(o.completed_at, UTC)

    results = pa.Table.from_pylist(
        [_result_row(o, unit, spent.get(o.id, 0.0), at(o)) for o in outcomes if o.ok],
        schema=RESULTS,
    )
    typed = kind.typed_columns([o.output for o in outcomes if o.ok]) if kind is not None else None
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
                # A row that failed before any call (empty text, say) reached no tier.
                "tier": (o.tier or None) if o.attempts or o.calls else None,
                "routed_tier": o.routed_tier or o.tier or None,
                "provider": o.provider,
                "model": o.model,
                "retryable": o.error_type in RETRYABLE_ERRORS,
                "unit": unit,
                "completed_at": at(o),
            }
            for o in outcomes
            if not o.ok
        ],
        schema=ERRORS,
    )
    return results, costs, errors


def is_reused(o: RowOutcome) -> bool:
    """Answered without a call of its own: from the cache or by an identical row's call."""
    return bool(o.calls) and all(c.call_status in FREE_STATUSES for c in o.calls)


def _result_row(o: RowOutcome, unit: int, cost: float, at: datetime) -> dict[str, object]:
    # A reused answer made no call here: 0 attempts, and 0 (no call of its own) as the
    # attempt whose answer was kept, as its $0 cost rows say.
    reused = is_reused(o)
    return {
        "id": o.id,
        "output": o.output,
        "answered_tier": o.tier,
        "routed_tier": o.routed_tier or o.tier,
        "tier": o.tier,
        "provider": o.provider,
        "model": o.model,
        "prompt_version": o.prompt_version,
        "status": "ok",
        "attempts": 0 if reused else o.attempts,
        "retries": 0 if reused else o.retries,
        "rate_limited": 0 if reused else o.rate_limited,
        "rate_limited_by": None
        if reused or not o.limited_by
        else json.dumps(o.limited_by, sort_keys=True),
        "accepted_attempt": 0 if reused else o.accepted_attempt,
        "accepted_reason": o.accepted_reason,
        "latency_ms": o.latency_ms,
        "cost_usd": cost,
        "unit": unit,
        "completed_at": at,
    }


def conform_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns in its order; one an older writer lacks is null."""
    cols = [
        table[f.name] if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(cols, names=schema.names).cast(schema)


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
