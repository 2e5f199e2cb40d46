"""The price table: packaged YAML, lookup rules, overrides, and the LiteLLM import."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.prices_import import import_litellm, write_table
from schemas.prices import ModelPrice, PriceTable, UnknownPrice, load_prices


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return load_prices()


def _entry(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "input_per_mtok": 1.0,
        "output_per_mtok": 2.0,
        "context_window": 8192,
        "max_output_tokens": 1024,
        "provider_family": "openai",
    }
    return base | kw


# --- the packaged table ----------------------------------------------------------------


def test_packaged_table_loads_and_every_entry_is_complete(table: PriceTable) -> None:
    assert table.version == "2026-12-04"  # bumped with the batch and cache-write prices
    assert len(table.models) >= 28
    for name, price in table.models.items():
        assert price.effective_date is not None, name
        assert price.output_per_mtok >= price.input_per_mtok, name
        if price.cached_input_per_mtok is not None:
            assert price.cached_input_per_mtok < price.input_per_mtok, name
        if price.cache_write_per_mtok is not None:
            assert price.cache_write_per_mtok > price.input_per_mtok, name
        # Input and output never cost more through the batch API. (A cache read can: gpt-4.1
        # lists no batch cached price, so it costs the batch input 1.00 against 0.50 sync.)
        batch, sync = price.rates("batch"), price.rates("sync")
        assert (batch.input, batch.output) <= (sync.input, sync.output), name
        assert batch.cache_write <= sync.cache_write, name
        # Round-trips through the strict model: no field is missing or unknown.
        assert ModelPrice.model_validate(price.model_dump()) == price


@pytest.mark.parametrize(
    ("model", "inp", "out", "cached", "ctx"),
    [
        ("gpt-5", 1.25, 10.00, 0.125, 400_000),
        ("gpt-5-mini", 0.25, 2.00, 0.025, 400_000),
        ("gpt-5-nano", 0.05, 0.40, 0.005, 400_000),
        ("gpt-4o", 2.50, 10.00, 1.25, 128_000),
        ("gpt-4o-mini", 0.15, 0.60, 0.075, 128_000),
        ("gpt-4.1", 2.00, 8.00, 0.50, 1_047_576),
        ("gpt-4.1-mini", 0.40, 1.60, 0.10, 1_047_576),
        ("gpt-4.1-nano", 0.10, 0.40, 0.025, 1_047_576),
        ("o3-mini", 1.10, 4.40, 0.55, 200_000),
        ("gpt-3.5-turbo-1106", 1.00, 2.00, None, 16_385),
        ("gpt-4-1106-preview", 10.00, 30.00, None, 128_000),
        ("gpt-4-turbo", 10.00, 30.00, None, 128_000),
        ("claude-3-5-haiku", 0.80, 4.00, 0.08, 200_000),
        ("claude-3-5-sonnet", 3.00, 15.00, 0.30, 200_000),
        ("claude-sonnet-4", 3.00, 15.00, 0.30, 200_000),
        ("claude-3-haiku", 0.25, 1.25, 0.03, 200_000),
        ("claude-3-opus", 15.00, 75.00, 1.50, 200_000),
        ("claude-opus-4", 15.00, 75.00, 1.50, 200_000),
        ("claude-instant-v1", 0.80, 2.40, None, 100_000),
        ("claude-v1", 8.00, 24.00, None, 100_000),
        ("claude-v2", 8.00, 24.00, None, 100_000),
        ("mistralai/mistral-7b-chat", 0.20, 0.20, None, 32_768),
        ("mistralai/mixtral-8x7b-chat", 0.60, 0.60, None, 32_768),
        ("meta/llama-2-70b-chat", 0.90, 0.90, None, 4096),
        ("meta/code-llama-instruct-34b-chat", 0.776, 0.776, None, 16_384),
        ("WizardLM/WizardLM-13B-V1.2", 0.30, 0.30, None, 4096),
        ("zero-one-ai/Yi-34B-Chat", 0.80, 0.80, None, 4096),
    ],
)
def test_list_prices(
    table: PriceTable, model: str, inp: float, out: float, cached: float | None, ctx: int
) -> None:
    price = table.lookup(model)
    assert (price.input_per_mtok, price.output_per_mtok) == (inp, out)
    assert price.cached_input_per_mtok == cached
    assert price.context_window == ctx


def test_output_caps_and_families(table: PriceTable) -> None:
    assert table.lookup("gpt-4o").max_output_tokens == 16_384
    assert table.lookup("gpt-4.1").max_output_tokens == 32_768
    assert table.lookup("claude-3-5-haiku").max_output_tokens == 8192
    assert table.lookup("gpt-4o").batch_discount == 0.5
    families = {p.provider_family for p in table.models.values()}
    assert {"openai", "anthropic", "mistral", "meta"} <= families


@pytest.mark.parametrize(
    ("model", "write"),
    [
        # The 5-minute cache write on Anthropic's price page: 1.25x input...
        ("claude-3-5-haiku", 1.00),
        ("claude-3-5-sonnet", 3.75),
        ("claude-sonnet-4", 3.75),
        ("claude-3-opus", 18.75),
        ("claude-opus-4", 18.75),
        # ...except Claude 3 Haiku, listed at $0.30 (1.2x its $0.25 input).
        ("claude-3-haiku", 0.30),
    ],
)
def test_anthropic_cache_write_prices(table: PriceTable, model: str, write: float) -> None:
    price = table.lookup(model)
    assert price.cache_write_per_mtok == write
    if model != "claude-3-haiku":
        assert write == pytest.approx(1.25 * price.input_per_mtok, rel=1e-12)
    # Message Batches: 50% off every component, the cache prices included (they stack).
    batch = price.rates("batch")
    assert batch.input == price.input_per_mtok / 2
    assert batch.output == price.output_per_mtok / 2
    assert batch.cache_write == write / 2
    assert batch.cached_input == price.cached_input_price / 2


@pytest.mark.parametrize(
    ("model", "batch_cached"),
    [
        # OpenAI's batch list gives no cached-input price before gpt-5: batch input price.
        ("gpt-4o", 1.25),
        ("gpt-4o-mini", 0.075),
        ("gpt-4.1", 1.00),
        ("gpt-4.1-mini", 0.20),
        ("gpt-4.1-nano", 0.05),
        ("o3-mini", 0.55),
        # gpt-5: the batch list halves the cached price too (derived from the discount).
        ("gpt-5", 0.0625),
        ("gpt-5-mini", 0.0125),
        ("gpt-5-nano", 0.0025),
        # No cache price at all: a cached token costs the batch input price.
        ("gpt-4-turbo", 5.00),
    ],
)
def test_openai_batch_prices(table: PriceTable, model: str, batch_cached: float) -> None:
    price = table.lookup(model)
    batch = price.rates("batch")
    assert (batch.input, batch.output) == (price.input_per_mtok / 2, price.output_per_mtok / 2)
    assert batch.cached_input == pytest.approx(batch_cached, rel=1e-12)
    assert price.cache_write_per_mtok is None  # OpenAI charges nothing extra to write
    assert batch.cache_write == batch.input
    assert price.rates("sync").cache_write == price.input_per_mtok


def test_rates_explicit_batch_prices_win_and_fall_back() -> None:
    price = ModelPrice.model_validate(
        _entry(
            cached_input_per_mtok=0.5,
            cache_write_per_mtok=1.5,
            batch_discount=0.5,
            batch_input_per_mtok=0.6,
            batch_output_per_mtok=1.2,
        )
    )
    assert price.rates() == (1.0, 0.5, 1.5, 2.0)
    assert price.rates("sync") == price.rates()
    # Explicit input / output; cached and writes from the discount (0.5 x 0.5, 0.5 x 1.5).
    assert price.rates("batch") == (0.6, 0.25, 0.75, 1.2)
    plain = ModelPrice.model_validate(_entry(batch_discount=0.5, batch_input_per_mtok=0.7))
    # No cache prices: cache reads and writes cost the batch input price, explicit or not.
    assert plain.rates("batch") == (0.7, 0.7, 0.7, 1.0)
    no_batch_api = ModelPrice.model_validate(_entry())
    assert no_batch_api.rates("batch") == no_batch_api.rates("sync")
    with pytest.raises(ValueError, match="call mode"):
        price.rates("flex")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ModelPrice.model_validate(_entry(batch_cached_input_per_mtok=-1))


# --- lookup ------------------------------------------------------------------------------


def test_lookup_exact_alias_and_dated_suffix(table: PriceTable) -> None:
    assert table.resolve("gpt-4o") == "gpt-4o"
    assert table.resolve("claude-3-5-haiku-latest") == "claude-3-5-haiku"
    assert table.resolve("claude-3-5-haiku-20241022") == "claude-3-5-haiku"
    assert table.resolve("gpt-4o-2024-08-06") == "gpt-4o"
    assert table.resolve("gpt-4o-mini-2024-07-18") == "gpt-4o-mini"
    assert table.resolve("claude-sonnet-4-20250514") == "claude-sonnet-4"
    assert table.resolve("claude-3-haiku@20240307") == "claude-3-haiku"
    assert table.lookup("gpt-4o-2024-08-06") is table.lookup("gpt-4o")


def test_exact_snapshot_beats_the_date_rule(table: PriceTable) -> None:
    assert table.lookup("gpt-4o-2024-05-13").input_per_mtok == 5.00
    # Four-digit suffixes are different models, never stripped.
    assert table.lookup("gpt-3.5-turbo-1106").input_per_mtok == 1.00
    assert "gpt-4-0613" not in table


def test_unknown_model_raises_with_a_way_out(table: PriceTable) -> None:
    with pytest.raises(UnknownPrice) as info:
        table.lookup("my-finetune-7b")
    err = info.value
    assert isinstance(err, KeyError)
    message = str(err)
    assert "'my-finetune-7b'" in message
    assert "prices:" in message
    assert "tierline prices import" in message
    assert table.version in message
    assert "my-finetune-7b" not in table


def test_unknown_price_pickles() -> None:
    err = pickle.loads(pickle.dumps(UnknownPrice("x-model", "v1")))
    assert isinstance(err, UnknownPrice)
    assert (err.model, err.version) == ("x-model", "v1")
    assert "x-model" in str(err)


def test_table_pickles_with_its_index(table: PriceTable) -> None:
    copy = pickle.loads(pickle.dumps(table))
    assert copy.resolve("claude-3-5-haiku-latest") == "claude-3-5-haiku"


# --- overrides ---------------------------------------------------------------------------


def test_overrides_change_version_and_price(table: PriceTable) -> None:
    changed = table.with_overrides({"gpt-4o": {"input_per_mtok": 2.0}})
    assert changed.version.startswith(f"{table.version}+overrides-")
    assert len(changed.version.rsplit("-", 1)[1]) == 8
    assert changed.lookup("gpt-4o").input_per_mtok == 2.0
    assert changed.lookup("gpt-4o").output_per_mtok == 10.0  # untouched fields kept
    assert table.lookup("gpt-4o").input_per_mtok == 2.5  # the original is unchanged
    # Same overrides, same version; different overrides, different version.
    assert table.with_overrides({"gpt-4o": {"input_per_mtok": 2.0}}).version == changed.version
    assert table.with_overrides({"gpt-4o": {"input_per_mtok": 2.1}}).version != changed.version


def test_overrides_add_a_model_and_accept_model_price(table: PriceTable) -> None:
    changed = table.with_overrides(
        {
            "my-vllm-model": _entry(provider_family="meta"),
            "gpt-4o-mini": ModelPrice.model_validate(_entry(input_per_mtok=0.1)),
        }
    )
    assert changed.lookup("my-vllm-model").provider_family == "meta"
    assert changed.lookup("gpt-4o-mini").input_per_mtok == 0.1
    with pytest.raises(ValidationError, match="output_per_mtok"):
        table.with_overrides({"new-model": {"input_per_mtok": 1.0}})


def test_override_by_alias_and_by_snapshot(table: PriceTable) -> None:
    by_alias = table.with_overrides({"claude-3-5-haiku-latest": {"output_per_mtok": 5.0}})
    assert by_alias.lookup("claude-3-5-haiku").output_per_mtok == 5.0
    # A snapshot override gets its own entry and leaves its family alone.
    snap = table.with_overrides({"gpt-4o-2024-11-20": {"output_per_mtok": 9.0}})
    assert snap.lookup("gpt-4o-2024-11-20").output_per_mtok == 9.0
    assert snap.lookup("gpt-4o-2024-11-20").input_per_mtok == 2.5
    assert snap.lookup("gpt-4o-2024-08-06").output_per_mtok == 10.0


def test_no_overrides_is_the_same_table(table: PriceTable) -> None:
    assert table.with_overrides({}) is table


# --- validation --------------------------------------------------------------------------


def test_load_from_path_and_strict_fields(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: t1\nmodels:\n  m1:\n    input_per_mtok: 1\n    output_per_mtok: 2\n"
        "    context_window: 100\n    max_output_tokens: 10\n    provider_family: openai\n"
        "    aliases: [m1-latest]\n"
    )
    t = load_prices(path)
    assert t.lookup("m1-latest").cached_input_price == 1.0  # no cache price: input price
    path.write_text(path.read_text() + "    input_per_mtk: 3\n")
    with pytest.raises(ValidationError, match="input_per_mtk"):
        load_prices(path)


def test_alias_collisions_and_bad_limits_are_rejected() -> None:
    with pytest.raises(ValidationError, match="alias 'a'"):
        PriceTable(
            version="t",
            models={
                "a": ModelPrice.model_validate(_entry()),
                "b": ModelPrice.model_validate(_entry(aliases=["a"])),
            },
        )
    with pytest.raises(ValidationError, match="exceeds"):
        ModelPrice.model_validate(_entry(max_output_tokens=10_000))
    with pytest.raises(ValidationError):
        ModelPrice.model_validate(_entry(input_per_mtok=-1))


# --- LiteLLM import ----------------------------------------------------------------------

_LITELLM = {
    "sample_spec": {
        "input_cost_per_token": 0.0,
        "output_cost_per_token": 0.0,
        "max_tokens": "LEGACY parameter",
        "mode": "one of: chat, embedding, completion",
        "litellm_provider": "one of https://docs.litellm.ai/docs/providers",
    },
    "gpt-4o": {
        "input_cost_per_token": 2.5e-06,
        "output_cost_per_token": 1e-05,
        "cache_read_input_token_cost": 1.25e-06,
        "input_cost_per_token_batches": 1.25e-06,
        "output_cost_per_token_batches": 5e-06,
        "litellm_provider": "openai",
        "max_input_tokens": 128000,
        "max_output_tokens": 16384,
        "max_tokens": 16384,
        "mode": "chat",
    },
    "claude-3-5-haiku-20241022": {
        "input_cost_per_token": 8e-07,
        "output_cost_per_token": 4e-06,
        "cache_read_input_token_cost": 8e-08,
        "litellm_provider": "anthropic",
        "max_input_tokens": 200000,
        "max_output_tokens": 8192,
        "mode": "chat",
    },
    "together_ai/mistralai/Mixtral-8x7B-Instruct-v0.1": {
        "input_cost_per_token": 6e-07,
        "output_cost_per_token": 6e-07,
        "litellm_provider": "together_ai",
        "max_tokens": 32768,
        "mode": "chat",
    },
    "gpt-3.5-turbo-instruct": {
        "input_cost_per_token": 1.5e-06,
        "output_cost_per_token": 2e-06,
        "litellm_provider": "text-completion-openai",
        "max_input_tokens": 8192,
        "max_output_tokens": 4096,
        "mode": "completion",
    },
    "text-embedding-3-small": {
        "input_cost_per_token": 2e-08,
        "output_cost_per_token": 0.0,
        "litellm_provider": "openai",
        "max_input_tokens": 8191,
        "mode": "embedding",
    },
    "dall-e-3": {"litellm_provider": "openai", "mode": "image_generation"},
    "free-but-unpriced": {"litellm_provider": "ollama", "max_tokens": 4096, "mode": "chat"},
    "half-priced": {"input_cost_per_token": 1e-06, "max_tokens": 4096, "mode": "chat"},
    "no-limits": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06, "mode": "chat"},
}


def test_import_litellm(tmp_path: Path) -> None:
    src = tmp_path / "model_prices_and_context_window.json"
    src.write_text(json.dumps(_LITELLM))
    result = import_litellm(src, version="2026-12-01")
    models = result.table["models"]
    assert result.table["version"] == "2026-12-01"
    assert set(models) == {
        "gpt-4o",
        "claude-3-5-haiku-20241022",
        "together_ai/mistralai/Mixtral-8x7B-Instruct-v0.1",
        "gpt-3.5-turbo-instruct",
    }
    gpt = models["gpt-4o"]
    assert (gpt["input_per_mtok"], gpt["output_per_mtok"]) == (2.5, 10.0)  # exact, no 2.4999
    assert gpt["cached_input_per_mtok"] == 1.25
    assert (gpt["context_window"], gpt["max_output_tokens"]) == (128_000, 16_384)
    assert gpt["batch_discount"] == 0.5
    assert gpt["provider_family"] == "openai"
    haiku = models["claude-3-5-haiku-20241022"]
    assert (haiku["input_per_mtok"], haiku["cached_input_per_mtok"]) == (0.8, 0.08)
    assert haiku["provider_family"] == "anthropic"
    mixtral = models["together_ai/mistralai/Mixtral-8x7B-Instruct-v0.1"]
    assert mixtral["provider_family"] == "mistral"
    assert mixtral["context_window"] == mixtral["max_output_tokens"] == 32_768  # max_tokens
    assert mixtral["cached_input_per_mtok"] is None

    report = result.report
    assert report.imported == 4
    assert report.skipped_not_chat == 2  # embedding, image (sample_spec is not counted)
    assert set(report.skipped_no_price) == {"free-but-unpriced", "half-priced"}
    assert report.skipped_invalid == ("no-limits",)
    assert report.skipped == 5


def test_write_table_round_trips(tmp_path: Path) -> None:
    src = tmp_path / "litellm.json"
    src.write_text(json.dumps(_LITELLM))
    out = write_table(import_litellm(src, version="v-test").table, tmp_path / "out" / "p.yaml")
    loaded = load_prices(out)
    assert loaded.version == "v-test"
    assert loaded.lookup("gpt-4o-2024-08-06").output_per_mtok == 10.0
    # The packaged table survives a write/read cycle unchanged.
    packaged = load_prices()
    again = load_prices(write_table(packaged.model_dump(), tmp_path / "copy.yaml"))
    assert again == packaged


def test_write_table_refuses_an_invalid_table(tmp_path: Path) -> None:
    target = tmp_path / "bad.yaml"
    with pytest.raises(ValidationError):
        write_table({"version": "v", "models": {"m": {"input_per_mtok": 1}}}, target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


# LiteLLM entries with cache and batch prices (key names as in BerriAI/litellm's
# model_prices_and_context_window.json), USD per token.
_LITELLM_BATCH_CACHE: dict[str, dict[str, Any]] = {
    # Anthropic: cache read 0.1x, 5-minute write 1.25x, everything half through batches.
    "claude-sonnet-4-20250514": {
        "input_cost_per_token": 3e-06,
        "output_cost_per_token": 1.5e-05,
        "cache_read_input_token_cost": 3e-07,
        "cache_creation_input_token_cost": 3.75e-06,
        "cache_creation_input_token_cost_above_1hr": 6e-06,
        "input_cost_per_token_batches": 1.5e-06,
        "output_cost_per_token_batches": 7.5e-06,
        "cache_read_input_token_cost_batches": 1.5e-07,
        "cache_creation_input_token_cost_batches": 1.875e-06,
        "litellm_provider": "anthropic",
        "max_input_tokens": 200000,
        "max_output_tokens": 64000,
        "mode": "chat",
    },
    # OpenAI before gpt-5: the batch cached price is the batch input price, not half the
    # cached one, so it must come in as an explicit price.
    "gpt-4.1": {
        "input_cost_per_token": 2e-06,
        "output_cost_per_token": 8e-06,
        "cache_read_input_token_cost": 5e-07,
        "input_cost_per_token_batches": 1e-06,
        "output_cost_per_token_batches": 4e-06,
        "cache_read_input_token_cost_batches": 1e-06,
        "litellm_provider": "openai",
        "max_input_tokens": 1047576,
        "max_output_tokens": 32768,
        "mode": "chat",
    },
    # Batch prices for the output only: the discount comes from them.
    "only-output-batches": {
        "input_cost_per_token": 1e-06,
        "output_cost_per_token": 4e-06,
        "output_cost_per_token_batches": 2e-06,
        "litellm_provider": "openai",
        "max_tokens": 8192,
        "mode": "chat",
    },
    # Input halved, output at 60%: the output price is explicit.
    "uneven-batches": {
        "input_cost_per_token": 1e-06,
        "output_cost_per_token": 5e-06,
        "input_cost_per_token_batches": 5e-07,
        "output_cost_per_token_batches": 3e-06,
        "litellm_provider": "openai",
        "max_tokens": 8192,
        "mode": "chat",
    },
    # A "batch" price above the sync one is no discount: discount 0, explicit price.
    "dearer-batches": {
        "input_cost_per_token": 1e-06,
        "output_cost_per_token": 2e-06,
        "input_cost_per_token_batches": 1.5e-06,
        "litellm_provider": "openai",
        "max_tokens": 8192,
        "mode": "chat",
    },
    # A cache price and no batch prices at all.
    "no-batch-api": {
        "input_cost_per_token": 1e-06,
        "output_cost_per_token": 2e-06,
        "cache_read_input_token_cost": 2.5e-07,
        "litellm_provider": "mistral",
        "max_tokens": 8192,
        "mode": "chat",
    },
}


def test_import_brings_cache_and_batch_prices(tmp_path: Path) -> None:
    src = tmp_path / "litellm.json"
    src.write_text(json.dumps(_LITELLM_BATCH_CACHE))
    result = import_litellm(src, version="2026-12-04")
    assert result.report.imported == len(_LITELLM_BATCH_CACHE)
    models = result.table["models"]

    sonnet = models["claude-sonnet-4-20250514"]
    assert (sonnet["cached_input_per_mtok"], sonnet["cache_write_per_mtok"]) == (0.3, 3.75)
    assert sonnet["batch_discount"] == 0.5
    # Every listed batch price is what the discount derives: none needs its own field.
    batch_fields = [
        f for f in ModelPrice.model_fields if f.startswith("batch_") and f != "batch_discount"
    ]
    assert len(batch_fields) == 4
    assert all(sonnet[f] is None for f in batch_fields)

    gpt = models["gpt-4.1"]
    assert (gpt["batch_discount"], gpt["cached_input_per_mtok"]) == (0.5, 0.5)
    assert gpt["batch_cached_input_per_mtok"] == 1.0
    assert gpt["cache_write_per_mtok"] is None
    assert [gpt[f] for f in batch_fields if f != "batch_cached_input_per_mtok"] == [None] * 3

    only_out = models["only-output-batches"]
    assert only_out["batch_discount"] == 0.5
    assert only_out["batch_input_per_mtok"] is None and only_out["batch_output_per_mtok"] is None

    uneven = models["uneven-batches"]
    assert (uneven["batch_discount"], uneven["batch_output_per_mtok"]) == (0.5, 3.0)
    assert uneven["batch_input_per_mtok"] is None

    dearer = models["dearer-batches"]
    assert (dearer["batch_discount"], dearer["batch_input_per_mtok"]) == (0.0, 1.5)

    plain = models["no-batch-api"]
    assert (plain["batch_discount"], plain["cached_input_per_mtok"]) == (0.0, 0.25)
    assert all(plain[f] is None for f in [*batch_fields, "cache_write_per_mtok"])

    # The imported table prices batch calls as LiteLLM listed them.
    table = load_prices(write_table(result.table, tmp_path / "imported.yaml"))
    for name, spec in _LITELLM_BATCH_CACHE.items():
        rates = table.lookup(name).rates("batch")
        for rate, key in (
            ("input", "input_cost_per_token_batches"),
            ("output", "output_cost_per_token_batches"),
            ("cached_input", "cache_read_input_token_cost_batches"),
            ("cache_write", "cache_creation_input_token_cost_batches"),
        ):
            if key in spec:
                assert getattr(rates, rate) == pytest.approx(spec[key] * 1e6, rel=1e-12), (
                    name,
                    rate,
                )


def test_import_without_batch_prices_keeps_the_old_shape(tmp_path: Path) -> None:
    src = tmp_path / "litellm.json"
    src.write_text(json.dumps(_LITELLM))
    gpt = import_litellm(src).table["models"]["gpt-4o"]
    # LiteLLM's gpt-4o lists no batch cached price: the import derives it (0.625), which
    # OpenAI's batch list contradicts (1.25) -- the packaged table says so explicitly.
    assert gpt["batch_cached_input_per_mtok"] is None
    assert ModelPrice.model_validate(gpt).rates("batch").cached_input == 0.625
    assert load_prices().lookup("gpt-4o").rates("batch").cached_input == 1.25
