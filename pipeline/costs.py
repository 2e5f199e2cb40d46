"""Prices x usage -> USD. Pure arithmetic, no I/O.

    price = load_prices().lookup("gpt-4o")
    call_cost_usd(price, input_tokens=1_000, output_tokens=500)            # 0.0075
    call_cost_usd(price, 1_000, 500, cached_input_tokens=800, mode="batch")
    worst_case_batch_usd(price, [1_200, 900, 4_000], max_output_tokens=256)
    costs = add_cost_column(usage_frame, table)   # + cost_usd, price_version; per-row `mode`

`call_cost_usd` prices one call; the budget settles with it and `add_cost_column` (the cost
rows) is its vectorised twin over the same formula and the same `ModelPrice.rates`, so a
settled call and its cost row cannot disagree. `cost_usd` / `worst_case_cost_usd` are the
older spellings (`batch=True` is `mode="batch"`).

Units: prices are USD per 1,000,000 tokens (the table's `*_per_mtok` fields); every cost
returned is USD, unrounded (full float precision: round only for display).

Token convention: `input_tokens` is every input token of the call, including those read
from the prompt cache and those written to it; `cached_input_tokens` is the part of it
billed at the cached (cache-read) price, `cache_write_tokens` the part billed at the
cache-write price, and the rest is billed at the input price. That is OpenAI's usage shape
(`prompt_tokens` includes `cached_tokens`); an Anthropic adapter adds
`cache_read_input_tokens` and `cache_creation_input_tokens` into `input_tokens`. A model
without a cache-write price bills writes at the input price (OpenAI charges nothing extra).

Modes: "sync" is one request at a time; "batch" is the provider's batch API, priced by
`ModelPrice.rates("batch")` (explicit batch prices where the table lists them, else the
sync prices less `batch_discount`; Anthropic's cache prices stack with it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import polars as pl

from schemas.prices import CALL_MODES, CallMode, ModelPrice, PriceTable, Rates

_PER_MTOK = 1_000_000.0

# The arithmetic is written once, for a float or a polars expression alike, so the scalar
# and the vectorised costs take the same operations in the same order and agree bit for bit.
_Num = TypeVar("_Num", float, pl.Expr)


def _usd_x_mtok(
    uncached: _Num,
    cached: _Num,
    writes: _Num,
    output: _Num,
    r_in: _Num,
    r_cached: _Num,
    r_write: _Num,
    r_out: _Num,
) -> _Num:
    """USD x 1,000,000: tokens x price per 1M, summed. The caller divides by 1e6, last."""
    return uncached * r_in + cached * r_cached + writes * r_write + output * r_out


def _scalar_usd(uncached: int, cached: int, writes: int, output: int, r: Rates) -> float:
    usd_x_mtok = _usd_x_mtok(
        float(uncached),
        float(cached),
        float(writes),
        float(output),
        r.input,
        r.cached_input,
        r.cache_write,
        r.output,
    )
    return usd_x_mtok / _PER_MTOK


def _check_mode(mode: str) -> None:
    if mode not in CALL_MODES:
        raise ValueError(f"call mode must be one of {CALL_MODES}, not {mode!r}")


def call_cost_usd(
    price: ModelPrice,
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
    cache_write_tokens: int = 0,
    *,
    mode: CallMode = "sync",
) -> float:
    """USD of one call: the budget settles with this, and the cost row says the same.

    call_cost_usd(gpt_4o, 1_000, 500)  # 1000 * 2.50/1e6 + 500 * 10.00/1e6 = 0.0075
    """
    _check_mode(mode)
    if min(input_tokens, output_tokens, cached_input_tokens, cache_write_tokens) < 0:
        raise ValueError("token counts must be >= 0")
    if cached_input_tokens + cache_write_tokens > input_tokens:
        raise ValueError(
            f"cached_input_tokens ({cached_input_tokens}) + cache_write_tokens "
            f"({cache_write_tokens}) exceeds input_tokens ({input_tokens}); input_tokens "
            "must include the cached ones and the cache writes"
        )
    return _scalar_usd(
        input_tokens - cached_input_tokens - cache_write_tokens,
        cached_input_tokens,
        cache_write_tokens,
        output_tokens,
        price.rates(mode),
    )


def cost_usd(
    price: ModelPrice,
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
    *,
    batch: bool = False,
) -> float:
    """USD of one call without cache writes; `batch=True` prices it through the batch API.

    cost_usd(gpt_4o, 1_000, 500)  # == call_cost_usd(gpt_4o, 1_000, 500)
    """
    return call_cost_usd(
        price,
        input_tokens,
        output_tokens,
        cached_input_tokens,
        mode="batch" if batch else "sync",
    )


def _worst_rates(price: ModelPrice, mode: CallMode, caching: bool) -> Rates:
    """The rates of a call that gets no cache discount but may pay for cache writes.

    Every input token is priced at the dearest rate it could be billed at: plain input or
    a cache read (providers such as OpenAI read the cache unasked; the max keeps the bound
    even for a table whose cached price is not lower), and a cache write (Anthropic: 1.25x
    input) only when the request asks for caching.
    """
    r = price.rates(mode)
    worst_in = (
        max(r.input, r.cached_input, r.cache_write) if caching else max(r.input, r.cached_input)
    )
    return Rates(worst_in, worst_in, worst_in, r.output)


def worst_case_call_usd(
    price: ModelPrice,
    input_tokens: int,
    max_output_tokens: int,
    *,
    mode: CallMode = "sync",
    caching: bool = False,
) -> float:
    """The most one call can cost: the budget reserves this before the call goes out.

    No cache discount is assumed, the answer runs to its cap (the request's
    `max_output_tokens`, bounded by the model's own limit: the provider cannot bill past
    it), and with `caching=True` (the request carries a cache breakpoint) every input token
    may be a cache write.

        worst_case_call_usd(sonnet, 10_000, 512, caching=True)   # input at 3.75, not 3.00
    """
    _check_mode(mode)
    if input_tokens < 0 or max_output_tokens < 0:
        raise ValueError("token counts must be >= 0")
    output = min(max_output_tokens, price.max_output_tokens)
    return _scalar_usd(input_tokens, 0, 0, output, _worst_rates(price, mode, caching))


def worst_case_cost_usd(
    price: ModelPrice, input_tokens: int, max_output_tokens: int, *, batch: bool = False
) -> float:
    """`worst_case_call_usd` for a request that asks for no caching (the older spelling)."""
    return worst_case_call_usd(
        price, input_tokens, max_output_tokens, mode="batch" if batch else "sync"
    )


def worst_case_batch_usd(
    price: ModelPrice,
    input_tokens_per_request: Sequence[int],
    max_output_tokens: int,
    *,
    caching: bool = False,
) -> float:
    """The most a whole provider batch can cost, reserved before it is submitted.

    The sum of `worst_case_call_usd(..., mode="batch")` over its requests, computed from
    the summed tokens (one rounding instead of one per request).

        worst_case_batch_usd(haiku, [1_200, 900, 4_000], 256, caching=True)
    """
    if any(n < 0 for n in input_tokens_per_request) or max_output_tokens < 0:
        raise ValueError("token counts must be >= 0")
    per_request = min(max_output_tokens, price.max_output_tokens)
    return _scalar_usd(
        sum(input_tokens_per_request),
        0,
        0,
        per_request * len(input_tokens_per_request),
        _worst_rates(price, "batch", caching),
    )


_RATE_FIELDS = ("_in", "_cached", "_write", "_out")


def price_frame(table: PriceTable, models: list[str]) -> pl.DataFrame:
    """One row per model name as it appears in usage, with its prices (USD per 1M tokens).

    Columns: model, then `_in _cached _write _out` (sync) and the same with a `_batch`
    prefix (`_batch_in`, ...), each from `ModelPrice.rates`. Raises `UnknownPrice` for the
    first name the table does not know.
    """
    prices = [table.lookup(m) for m in models]
    data: dict[str, list[str] | list[float]] = {"model": models}
    prefixes: tuple[tuple[CallMode, str], ...] = (("sync", ""), ("batch", "_batch"))
    for mode, prefix in prefixes:
        rates = [p.rates(mode) for p in prices]
        for i, name in enumerate(_RATE_FIELDS):
            data[prefix + name] = [r[i] for r in rates]
    schema = {name: pl.Float64 for name in data} | {"model": pl.String}
    return pl.DataFrame(data, schema=schema)


def add_cost_column(df: pl.DataFrame, table: PriceTable, *, batch: bool = False) -> pl.DataFrame:
    """Add `cost_usd` (Float64, USD) and `price_version` (String) to a usage frame.

    `df` needs columns model, input_tokens, output_tokens and may have
    cached_input_tokens and cache_write_tokens (parts of input_tokens; missing = 0) and
    mode ("sync" / "batch" per row; missing = "sync", or "batch" for every row with
    `batch=True`, the older whole-frame switch). Each row costs exactly what
    `call_cost_usd` says. Prices are looked up once per distinct model; the arithmetic is
    one vectorised expression. A null token count gives a null cost; a null or unknown
    mode, or more cached + written tokens than input tokens, is an error. Existing
    cost_usd / price_version columns are replaced.
    """
    model = df.get_column("model")
    if model.null_count():
        raise ValueError("add_cost_column: a row has no model, so it has no price")
    # Per-row mode: each rate is picked per row; one mode for the frame: looked up directly.
    is_batch: pl.Expr | None = None
    if "mode" in df.columns:
        if batch:
            raise ValueError("add_cost_column: batch=True and a mode column; say it once")
        modes = df.get_column("mode").cast(pl.String)
        if modes.null_count():
            raise ValueError("add_cost_column: a row has no mode (sync or batch)")
        unknown = set(modes.unique().to_list()) - set(CALL_MODES)
        if unknown:
            raise ValueError(f"add_cost_column: unknown mode(s) {sorted(unknown)}")
        is_batch = pl.col("mode").cast(pl.String) == "batch"
    # A deployment with a price of its own ('provider/model' in the table) is priced by
    # it; every other row by its model.
    key = pl.col("model")
    if "provider" in df.columns:
        pairs = df.select("provider", "model").unique().drop_nulls().iter_rows()
        own = {f"{p}/{m}" for p, m in pairs if table.deployment_key(p, m) != m}
        if own:
            named = pl.col("provider") + "/" + pl.col("model")
            key = pl.when(named.is_in(list(own))).then(named).otherwise(pl.col("model"))
    keys = df.select(key.alias("k")).get_column("k")
    prices = price_frame(table, keys.unique(maintain_order=True).to_list())

    def lookup(column: str) -> pl.Expr:
        # A handful of models: a lookup per row, not a join (a join costs 3x as much).
        mapping = dict(zip(prices["model"], prices[column], strict=True))
        if not mapping:  # no rows
            return pl.lit(None, dtype=pl.Float64)
        return key.replace_strict(mapping, return_dtype=pl.Float64)

    def rate(name: str) -> pl.Expr:
        if is_batch is None:
            return lookup(("_batch" if batch else "") + name)
        return pl.when(is_batch).then(lookup("_batch" + name)).otherwise(lookup(name))

    def tokens(column: str, *, optional: bool = False) -> pl.Expr:
        if optional and column not in df.columns:
            return pl.lit(0.0, dtype=pl.Float64)
        return pl.col(column).cast(pl.Float64)

    inputs, output = tokens("input_tokens"), tokens("output_tokens")
    cached = tokens("cached_input_tokens", optional=True)
    writes = tokens("cache_write_tokens", optional=True)
    bad = df.select(
        ((cached + writes > inputs) | (pl.min_horizontal(inputs, cached, writes, output) < 0))
        .fill_null(False)
        .sum()
    ).item()
    if bad:
        raise ValueError(
            f"add_cost_column: {bad} row(s) have negative token counts or more "
            "cached_input_tokens + cache_write_tokens than input_tokens (which must include them)"
        )
    usd_x_mtok = _usd_x_mtok(
        inputs - cached - writes,
        cached,
        writes,
        output,
        rate("_in"),
        rate("_cached"),
        rate("_write"),
        rate("_out"),
    )
    # The one division is numpy's: polars divides a column by a scalar as a product with
    # its reciprocal (36,700 / 1e6 -> 0.036699999999999997), Python and numpy do not.
    numerator = df.select(usd_x_mtok).to_series()
    usd = pl.Series("cost_usd", numerator.to_numpy() / _PER_MTOK, pl.Float64, nan_to_null=True)
    return df.drop("cost_usd", "price_version", strict=False).with_columns(
        usd,
        pl.lit(table.version, dtype=pl.String).alias("price_version"),
    )
