"""Prices x usage -> USD. Pure arithmetic, no I/O.

    price = load_prices().lookup("gpt-4o")
    cost_usd(price, input_tokens=1_000, output_tokens=500)       # 0.0075
    worst_case_cost_usd(price, input_tokens=1_000, max_output_tokens=256)
    costs = add_cost_column(usage_frame, table)                   # + cost_usd, price_version

Units: prices are USD per 1,000,000 tokens (the table's `*_per_mtok` fields); every cost
returned is USD, unrounded (full float precision: round only for display).

Token convention: `input_tokens` is every input token of the call, including those read
from the prompt cache; `cached_input_tokens` is the part of it billed at the cached price.
That is OpenAI's usage shape (`prompt_tokens` includes `cached_tokens`); an Anthropic
adapter adds `cache_read_input_tokens` into `input_tokens`. Anthropic cache *writes*
(1.25x input) are billed here at the plain input price.
"""

from __future__ import annotations

import polars as pl

from schemas.prices import ModelPrice, PriceTable

_PER_MTOK = 1_000_000.0


def _batch_factor(price: ModelPrice, batch: bool) -> float:
    return 1.0 - price.batch_discount if batch else 1.0


def cost_usd(
    price: ModelPrice,
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
    *,
    batch: bool = False,
) -> float:
    """USD of one call. `batch=True` applies the provider's batch-API discount.

    cost_usd(gpt_4o, 1_000, 500)  # 1000 * 2.50/1e6 + 500 * 10.00/1e6 = 0.0075
    """
    if input_tokens < 0 or output_tokens < 0 or cached_input_tokens < 0:
        raise ValueError("token counts must be >= 0")
    if cached_input_tokens > input_tokens:
        raise ValueError(
            f"cached_input_tokens ({cached_input_tokens}) exceeds input_tokens ({input_tokens});"
            " input_tokens must include the cached ones"
        )
    usd = (
        (input_tokens - cached_input_tokens) * price.input_per_mtok
        + cached_input_tokens * price.cached_input_price
        + output_tokens * price.output_per_mtok
    ) / _PER_MTOK
    return usd * _batch_factor(price, batch)


def worst_case_cost_usd(
    price: ModelPrice, input_tokens: int, max_output_tokens: int, *, batch: bool = False
) -> float:
    """The most one call can cost: no cache hits, and the answer runs to its cap.

    The cap is the request's `max_output_tokens`, bounded by the model's own limit (the
    provider cannot bill past it). The budget reserves this before the call.
    """
    output = min(max_output_tokens, price.max_output_tokens)
    return cost_usd(price, input_tokens, output, batch=batch)


def price_frame(table: PriceTable, models: list[str]) -> pl.DataFrame:
    """One row per model name as it appears in usage, with its prices (USD per 1M tokens).

    Raises `UnknownPrice` for the first name the table does not know.
    """
    prices = [table.lookup(m) for m in models]
    return pl.DataFrame(
        {
            "model": models,
            "_in": [p.input_per_mtok for p in prices],
            "_cached": [p.cached_input_price for p in prices],
            "_out": [p.output_per_mtok for p in prices],
            "_batch_factor": [1.0 - p.batch_discount for p in prices],
        },
        schema={
            "model": pl.String,
            "_in": pl.Float64,
            "_cached": pl.Float64,
            "_out": pl.Float64,
            "_batch_factor": pl.Float64,
        },
    )


def add_cost_column(df: pl.DataFrame, table: PriceTable, *, batch: bool = False) -> pl.DataFrame:
    """Add `cost_usd` (Float64, USD) and `price_version` (String) to a usage frame.

    `df` needs columns model, input_tokens, output_tokens and may have
    cached_input_tokens (a part of input_tokens). Prices are looked up once per distinct
    model; the arithmetic is one vectorised expression. A null token count
    gives a null cost. Existing cost_usd / price_version columns are replaced.
    """
    model = df.get_column("model")
    if model.null_count():
        raise ValueError("add_cost_column: a row has no model, so it has no price")
    prices = price_frame(table, model.unique(maintain_order=True).to_list())

    def price(column: str) -> pl.Expr:
        # A handful of models: a lookup per row, not a join (a join costs 3x as much).
        mapping = dict(zip(prices["model"], prices[column], strict=True))
        if not mapping:  # no rows
            return pl.lit(None, dtype=pl.Float64)
        return pl.col("model").replace_strict(mapping, return_dtype=pl.Float64)

    cached = (
        pl.col("cached_input_tokens").cast(pl.Float64)
        if "cached_input_tokens" in df.columns
        else pl.lit(0.0)
    )
    # The formula of cost_usd; results agree with it to the last bit or two.
    usd = (
        (pl.col("input_tokens").cast(pl.Float64) - cached) * price("_in")
        + cached * price("_cached")
        + pl.col("output_tokens").cast(pl.Float64) * price("_out")
    ) / _PER_MTOK
    if batch:
        usd = usd * price("_batch_factor")
    return df.drop("cost_usd", "price_version", strict=False).with_columns(
        usd.alias("cost_usd"),
        pl.lit(table.version, dtype=pl.String).alias("price_version"),
    )
