"""Cost arithmetic: known numbers, caches, batch discount, and the vectorised column."""

from __future__ import annotations

import random

import polars as pl
import pytest

from pipeline.costs import add_cost_column, cost_usd, price_frame, worst_case_cost_usd
from schemas.prices import PriceTable, UnknownPrice, load_prices


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
