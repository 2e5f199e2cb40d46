"""Cost arithmetic: known numbers, caches, batch prices, worst cases, the vectorised column."""

from __future__ import annotations

import random
from typing import Any

import polars as pl
import pytest

from pipeline.costs import (
    add_cost_column,
    call_cost_usd,
    cost_usd,
    price_frame,
    worst_case_batch_usd,
    worst_case_call_usd,
    worst_case_cost_usd,
)
from schemas.prices import CallMode, PriceTable, UnknownPrice, load_prices


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return load_prices()


def test_known_numbers(table: PriceTable) -> None:
    gpt_4o = table.lookup("gpt-4o")
    # 1,000 x $2.50/1M + 500 x $10.00/1M
    assert cost_usd(gpt_4o, 1_000, 500) == pytest.approx(0.0075, rel=1e-15)
    mini = table.lookup("gpt-4o-mini")
    assert cost_usd(mini, 1_000_000, 1_000_000) == pytest.approx(0.75, rel=1e-15)
    haiku = table.lookup("claude-3-5-haiku")
    assert cost_usd(haiku, 2_000, 300) == pytest.approx(0.0016 + 0.0012, rel=1e-15)
    assert cost_usd(gpt_4o, 0, 0) == 0.0


def test_cached_input_is_part_of_input(table: PriceTable) -> None:
    gpt_4o = table.lookup("gpt-4o")
    # 600 uncached x 2.50 + 400 cached x 1.25, per 1M
    assert cost_usd(gpt_4o, 1_000, 0, cached_input_tokens=400) == pytest.approx(0.002, rel=1e-15)
    # No cache price: cached tokens cost the input price.
    turbo = table.lookup("gpt-4-turbo")
    assert cost_usd(turbo, 1_000, 0, 400) == cost_usd(turbo, 1_000, 0)
    with pytest.raises(ValueError, match="include the cached"):
        cost_usd(gpt_4o, 100, 0, cached_input_tokens=101)
    with pytest.raises(ValueError):
        cost_usd(gpt_4o, -1, 0)


def test_batch_discount(table: PriceTable) -> None:
    gpt_4o = table.lookup("gpt-4o")
    assert cost_usd(gpt_4o, 1_000, 500, batch=True) == pytest.approx(0.00375, rel=1e-15)
    legacy = table.lookup("claude-v2")  # no batch API
    assert cost_usd(legacy, 1_000, 500, batch=True) == cost_usd(legacy, 1_000, 500)


def test_worst_case(table: PriceTable) -> None:
    gpt_4o = table.lookup("gpt-4o")
    assert worst_case_cost_usd(gpt_4o, 1_000, 500) == cost_usd(gpt_4o, 1_000, 500)
    # The answer cannot run past the model's own output cap.
    assert worst_case_cost_usd(gpt_4o, 0, 10**9) == cost_usd(gpt_4o, 0, 16_384)
    assert worst_case_cost_usd(gpt_4o, 1_000, 500) >= cost_usd(gpt_4o, 1_000, 500, 900)


def _usage(n: int, models: list[str], seed: int = 7) -> pl.DataFrame:
    rng = random.Random(seed)
    inputs = [rng.randint(0, 200_000) for _ in range(n)]
    return pl.DataFrame(
        {
            "id": [str(i) for i in range(n)],
            "model": [rng.choice(models) for _ in range(n)],
            "input_tokens": inputs,
            "output_tokens": [rng.randint(0, 16_000) for _ in range(n)],
            "cached_input_tokens": [rng.randint(0, i) for i in inputs],
        },
        schema_overrides={
            "input_tokens": pl.Int64,
            "output_tokens": pl.Int64,
            "cached_input_tokens": pl.Int64,
        },
    )


MODELS = [
    "gpt-4o",
    "gpt-4o-2024-08-06",
    "gpt-4o-mini",
    "claude-3-5-haiku-latest",
    "gpt-4-turbo",
    "meta/code-llama-instruct-34b-chat",
]


@pytest.mark.parametrize("batch", [False, True])
def test_vectorised_equals_scalar(table: PriceTable, batch: bool) -> None:
    df = _usage(2_000, MODELS)
    out = add_cost_column(df, table, batch=batch)
    assert out.columns == [*df.columns, "cost_usd", "price_version"]
    assert out.schema["cost_usd"] == pl.Float64
    assert out.schema["price_version"] == pl.String
    assert out["id"].to_list() == df["id"].to_list()  # row order kept
    assert set(out["price_version"].to_list()) == {table.version}
    expected = [
        cost_usd(
            table.lookup(r["model"]),
            r["input_tokens"],
            r["output_tokens"],
            r["cached_input_tokens"],
            batch=batch,
        )
        for r in df.iter_rows(named=True)
    ]
    # Same formula; polars may fuse or reorder float operations, so the last bit can differ.
    assert out["cost_usd"].to_list() == pytest.approx(expected, rel=1e-12, abs=0)


def test_without_cached_column_and_replacing_old_costs(table: PriceTable) -> None:
    df = pl.DataFrame(
        {
            "model": ["gpt-4o", "gpt-4o-mini"],
            "input_tokens": [1_000, 1_000],
            "output_tokens": [500, 500],
            "cost_usd": [99.0, 99.0],
            "price_version": ["old", "old"],
        }
    )
    out = add_cost_column(df, table)
    assert out["cost_usd"].to_list() == [
        cost_usd(table.lookup("gpt-4o"), 1_000, 500),
        cost_usd(table.lookup("gpt-4o-mini"), 1_000, 500),
    ]
    assert out["price_version"].to_list() == [table.version] * 2
    assert out.columns == df.columns


def test_overridden_table_version_reaches_the_rows(table: PriceTable) -> None:
    changed = table.with_overrides({"gpt-4o": {"input_per_mtok": 5.0}})
    df = pl.DataFrame({"model": ["gpt-4o"], "input_tokens": [1_000], "output_tokens": [0]})
    out = add_cost_column(df, changed)
    assert out["cost_usd"][0] == pytest.approx(0.005, rel=1e-15)
    assert out["price_version"][0] == changed.version != table.version


def test_unknown_model_is_an_error_not_zero(table: PriceTable) -> None:
    df = pl.DataFrame(
        {"model": ["gpt-4o", "mystery-1"], "input_tokens": [1, 1], "output_tokens": [1, 1]}
    )
    with pytest.raises(UnknownPrice, match="mystery-1"):
        add_cost_column(df, table)
    nulls = pl.DataFrame(
        {"model": [None], "input_tokens": [1], "output_tokens": [1]},
        schema={"model": pl.String, "input_tokens": pl.Int64, "output_tokens": pl.Int64},
    )
    with pytest.raises(ValueError, match="no model"):
        add_cost_column(nulls, table)


def test_empty_frame_and_price_frame(table: PriceTable) -> None:
    empty = pl.DataFrame(
        schema={"model": pl.String, "input_tokens": pl.Int64, "output_tokens": pl.Int64}
    )
    out = add_cost_column(empty, table)
    assert out.height == 0 and out.schema["cost_usd"] == pl.Float64
    prices = price_frame(table, ["gpt-4o", "gpt-4o-2024-08-06"])
    assert prices["_in"].to_list() == [2.5, 2.5]


# --- one call, every mode ------------------------------------------------------------------


def test_call_cost_is_cost_usd_without_cache_writes(table: PriceTable) -> None:
    for name in ("gpt-4o", "claude-3-5-haiku", "gpt-4-turbo", "claude-v2"):
        price = table.lookup(name)
        for batch in (False, True):
            mode: CallMode = "batch" if batch else "sync"
            assert call_cost_usd(price, 5_000, 700, 1_200, mode=mode) == cost_usd(
                price, 5_000, 700, 1_200, batch=batch
            )
            assert worst_case_call_usd(price, 5_000, 700, mode=mode) == worst_case_cost_usd(
                price, 5_000, 700, batch=batch
            )


def test_anthropic_batch_and_cache_prices_stack(table: PriceTable) -> None:
    sonnet = table.lookup("claude-sonnet-4")
    # 10,000 input tokens: 6,000 read from the cache, 3,000 written to it, 1,000 plain.
    # Sync, USD per 1M: input 3.00, cache read 0.30, cache write 3.75, output 15.00:
    #   1,000 x 3.00 + 6,000 x 0.30 + 3,000 x 3.75 + 500 x 15.00
    #   = 3,000 + 1,800 + 11,250 + 7,500 = 23,550 per 1M = $0.02355
    assert call_cost_usd(sonnet, 10_000, 500, 6_000, 3_000) == pytest.approx(0.02355, rel=1e-15)
    # Message Batches halve every one of them (input 1.50, read 0.15, write 1.875, out 7.50):
    #   1,000 x 1.50 + 6,000 x 0.15 + 3,000 x 1.875 + 500 x 7.50
    #   = 1,500 + 900 + 5,625 + 3,750 = 11,775 per 1M = $0.011775
    assert call_cost_usd(sonnet, 10_000, 500, 6_000, 3_000, mode="batch") == pytest.approx(
        0.011775, rel=1e-15
    )
    # A cache write costs more than plain input; a cache read much less.
    plain = call_cost_usd(sonnet, 10_000, 0)
    assert call_cost_usd(sonnet, 10_000, 0, cache_write_tokens=10_000) == pytest.approx(
        1.25 * plain, rel=1e-15
    )
    assert call_cost_usd(sonnet, 10_000, 0, 10_000) == pytest.approx(0.1 * plain, rel=1e-15)


def test_openai_cached_tokens_in_batch_mode(table: PriceTable) -> None:
    gpt_4o = table.lookup("gpt-4o")
    # 10,000 input tokens, 8,000 of them cached, 1,000 output.
    # Sync: 2,000 x 2.50 + 8,000 x 1.25 + 1,000 x 10.00 = 25,000 per 1M = $0.025
    assert call_cost_usd(gpt_4o, 10_000, 1_000, 8_000) == pytest.approx(0.025, rel=1e-15)
    # Batch: gpt-4o's batch list has no cached price, so a cached token costs the batch
    # input 1.25: 2,000 x 1.25 + 8,000 x 1.25 + 1,000 x 5.00 = 17,500 per 1M = $0.0175
    # (stacking both discounts would say $0.0125 and under-bill by a third).
    assert call_cost_usd(gpt_4o, 10_000, 1_000, 8_000, mode="batch") == pytest.approx(
        0.0175, rel=1e-15
    )
    gpt_5 = table.lookup("gpt-5")
    # gpt-5 does stack: batch input 0.625, batch cached 0.0625, batch output 5.00:
    #   2,000 x 0.625 + 8,000 x 0.0625 + 1,000 x 5.00 = 1,250 + 500 + 5,000 = $0.00675
    assert call_cost_usd(gpt_5, 10_000, 1_000, 8_000, mode="batch") == pytest.approx(
        0.00675, rel=1e-15
    )
    # OpenAI charges nothing extra to write the cache: a write costs plain input.
    assert call_cost_usd(gpt_4o, 1_000, 0, cache_write_tokens=600) == call_cost_usd(
        gpt_4o, 1_000, 0
    )


def test_model_without_cache_prices(table: PriceTable) -> None:
    turbo = table.lookup("gpt-4-turbo")  # batch API, no cache prices
    for mode in ("sync", "batch"):
        assert call_cost_usd(turbo, 1_000, 100, 400, 300, mode=mode) == call_cost_usd(
            turbo, 1_000, 100, mode=mode
        )
    # 1,000 x 5.00 + 100 x 15.00 = 6,500 per 1M
    assert call_cost_usd(turbo, 1_000, 100, 400, 300, mode="batch") == pytest.approx(0.0065)
    legacy = table.lookup("claude-v2")  # neither cache prices nor a batch API
    assert call_cost_usd(legacy, 1_000, 100, 400, 300, mode="batch") == call_cost_usd(
        legacy, 1_000, 100
    )


def test_call_cost_rejects_impossible_usage(table: PriceTable) -> None:
    sonnet = table.lookup("claude-sonnet-4")
    with pytest.raises(ValueError, match="must include the cached ones and the cache writes"):
        call_cost_usd(sonnet, 100, 0, cached_input_tokens=60, cache_write_tokens=41)
    call_cost_usd(sonnet, 100, 0, cached_input_tokens=60, cache_write_tokens=40)  # exactly all
    with pytest.raises(ValueError, match=">= 0"):
        call_cost_usd(sonnet, 100, 0, cache_write_tokens=-1)
    with pytest.raises(ValueError, match="call mode"):
        call_cost_usd(sonnet, 100, 0, mode="flex")  # type: ignore[arg-type]


# --- worst cases -------------------------------------------------------------------------


def test_worst_case_includes_cache_writes_only_when_asked(table: PriceTable) -> None:
    sonnet = table.lookup("claude-sonnet-4")
    # No caching asked: every input token at 3.00: 10,000 x 3.00 + 512 x 15.00 = $0.03768
    assert worst_case_call_usd(sonnet, 10_000, 512) == pytest.approx(0.03768, rel=1e-15)
    # Caching asked: every input token may be a write at 3.75:
    #   10,000 x 3.75 + 512 x 15.00 = 37,500 + 7,680 = $0.04518
    assert worst_case_call_usd(sonnet, 10_000, 512, caching=True) == pytest.approx(
        0.04518, rel=1e-15
    )
    # Through the batch API, half of that.
    assert worst_case_call_usd(sonnet, 10_000, 512, mode="batch", caching=True) == pytest.approx(
        0.02259, rel=1e-15
    )
    # OpenAI writes cost plain input, so the flag changes nothing there.
    gpt_4o = table.lookup("gpt-4o")
    assert worst_case_call_usd(gpt_4o, 10_000, 512, caching=True) == worst_case_call_usd(
        gpt_4o, 10_000, 512
    )


@pytest.mark.parametrize("mode", ["sync", "batch"])
def test_worst_case_bounds_every_real_call(table: PriceTable, mode: CallMode) -> None:
    rng = random.Random(11)
    for name in ("claude-sonnet-4", "claude-3-haiku", "gpt-4o", "gpt-4.1", "gpt-5", "claude-v2"):
        price = table.lookup(name)
        for _ in range(300):
            inputs = rng.randint(0, 50_000)
            cached = rng.randint(0, inputs)
            writes = rng.randint(0, inputs - cached)
            cap = rng.randint(1, 20_000)
            out = rng.randint(0, min(cap, price.max_output_tokens))
            real = call_cost_usd(price, inputs, out, cached, writes, mode=mode)
            assert real <= worst_case_call_usd(price, inputs, cap, mode=mode, caching=True)
            no_writes = call_cost_usd(price, inputs, out, cached, mode=mode)
            assert no_writes <= worst_case_call_usd(price, inputs, cap, mode=mode)


def test_worst_case_batch(table: PriceTable) -> None:
    haiku = table.lookup("claude-3-5-haiku")
    # Batch, caching asked: input at the batch write price 1.00 / 2 = 0.50, output 4.00 / 2:
    #   (1,200 + 900 + 4,000) x 0.50 + 3 x 256 x 2.00 = 3,050 + 1,536 = 4,586 per 1M
    requests = [1_200, 900, 4_000]
    assert worst_case_batch_usd(haiku, requests, 256, caching=True) == pytest.approx(
        0.004586, rel=1e-15
    )
    # The sum of the per-request worst cases, in batch mode.
    for caching in (False, True):
        per_call = sum(
            worst_case_call_usd(haiku, n, 256, mode="batch", caching=caching) for n in requests
        )
        assert worst_case_batch_usd(haiku, requests, 256, caching=caching) == pytest.approx(
            per_call, rel=1e-12
        )
    # Each answer is capped by the model's own output limit (8,192 for claude-3-5-haiku).
    assert worst_case_batch_usd(haiku, [10, 10], 10**9) == pytest.approx(
        worst_case_batch_usd(haiku, [10, 10], 8_192), rel=1e-15
    )
    assert worst_case_batch_usd(haiku, [], 256) == 0.0
    with pytest.raises(ValueError):
        worst_case_batch_usd(haiku, [10, -1], 256)


# --- the vectorised twin -----------------------------------------------------------------

TWIN_MODELS = [
    "claude-sonnet-4-20250514",  # Anthropic: cache writes, stacking batch prices
    "claude-3-haiku",
    "gpt-4o",  # explicit batch cached price
    "gpt-4.1-mini",
    "gpt-5",
    "gpt-4-turbo",  # no cache prices
    "claude-v2",  # no batch API
    "meta/llama-2-70b-chat",
]


def _mixed_usage(n: int, seed: int = 3) -> pl.DataFrame:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        inputs = rng.randint(0, 200_000)
        cached = rng.randint(0, inputs)
        rows.append(
            {
                "id": str(i),
                "model": rng.choice(TWIN_MODELS),
                "input_tokens": inputs,
                "output_tokens": rng.randint(0, 16_000),
                "cached_input_tokens": cached,
                "cache_write_tokens": rng.randint(0, inputs - cached),
                "mode": rng.choice(["sync", "batch"]),
            }
        )
    return pl.DataFrame(rows, schema_overrides={"input_tokens": pl.Int64})


def _scalar(table: PriceTable, row: dict[str, Any], mode: CallMode | None = None) -> float:
    """The scalar price of one usage row (its own mode unless `mode` says otherwise)."""
    return call_cost_usd(
        table.lookup(row["model"]),
        row["input_tokens"],
        row["output_tokens"],
        row.get("cached_input_tokens") or 0,
        row.get("cache_write_tokens") or 0,
        mode=mode or row["mode"],
    )


def test_vectorised_equals_scalar_in_mixed_modes(table: PriceTable) -> None:
    df = _mixed_usage(3_000)
    assert set(df["mode"]) == {"sync", "batch"}
    out = add_cost_column(df, table)
    assert out.columns == [*df.columns, "cost_usd", "price_version"]
    assert out["id"].to_list() == df["id"].to_list()
    expected = [_scalar(table, r) for r in df.iter_rows(named=True)]
    # The same formula over the same rates, operation for operation: equal, not approximate.
    assert out["cost_usd"].to_list() == expected


def test_vectorised_mode_column_kinds_and_defaults(table: PriceTable) -> None:
    df = _mixed_usage(400, seed=5)
    as_enum = df.with_columns(pl.col("mode").cast(pl.Enum(["sync", "batch"])))
    assert add_cost_column(as_enum, table)["cost_usd"].to_list() == [
        _scalar(table, r) for r in df.iter_rows(named=True)
    ]
    # No mode column: sync; or every row batch with the older whole-frame switch.
    no_mode = df.drop("mode")
    modes: tuple[tuple[bool, CallMode], ...] = ((False, "sync"), (True, "batch"))
    for batch, mode in modes:
        got = add_cost_column(no_mode, table, batch=batch)["cost_usd"].to_list()
        assert got == [_scalar(table, r, mode) for r in df.iter_rows(named=True)]
    # No cache columns: nothing cached, nothing written.
    bare = df.select("model", "input_tokens", "output_tokens", "mode")
    assert add_cost_column(bare, table)["cost_usd"].to_list() == [
        _scalar(table, r) for r in bare.iter_rows(named=True)
    ]


def test_vectorised_rejects_what_the_scalar_rejects(table: PriceTable) -> None:
    df = _mixed_usage(10)
    with pytest.raises(ValueError, match="say it once"):
        add_cost_column(df, table, batch=True)
    with pytest.raises(ValueError, match="unknown mode"):
        add_cost_column(df.with_columns(pl.lit("flex").alias("mode")), table)
    with pytest.raises(ValueError, match="no mode"):
        add_cost_column(df.with_columns(pl.lit(None, dtype=pl.String).alias("mode")), table)
    too_many = df.with_columns((pl.col("input_tokens") + 1).alias("cache_write_tokens"))
    with pytest.raises(ValueError, match="must include them"):
        add_cost_column(too_many, table)
    negative = df.with_columns(pl.lit(-1).alias("output_tokens"))
    with pytest.raises(ValueError, match="negative"):
        add_cost_column(negative, table)


def test_new_table_version_reaches_the_cost_rows(table: PriceTable) -> None:
    df = pl.DataFrame(
        {
            "model": ["claude-sonnet-4", "gpt-4o"],
            "input_tokens": [10_000, 10_000],
            "output_tokens": [500, 1_000],
            "cached_input_tokens": [6_000, 8_000],
            "cache_write_tokens": [3_000, 0],
            "mode": ["batch", "batch"],
        }
    )
    out = add_cost_column(df, load_prices())
    assert out["price_version"].to_list() == ["2026-12-04", "2026-12-04"]
    # The hand-computed costs of the two tests above.
    assert out["cost_usd"].to_list() == pytest.approx([0.011775, 0.0175], rel=1e-15)


def test_price_frame_has_both_modes(table: PriceTable) -> None:
    frame = price_frame(table, ["gpt-4o", "claude-sonnet-4"])
    assert frame.row(0, named=True) == {
        "model": "gpt-4o",
        "_in": 2.5,
        "_cached": 1.25,
        "_write": 2.5,
        "_out": 10.0,
        "_batch_in": 1.25,
        "_batch_cached": 1.25,
        "_batch_write": 1.25,
        "_batch_out": 5.0,
    }
    assert frame.row(1, named=True)["_batch_write"] == 1.875
