"""The price table: packaged YAML, lookup rules, overrides, and the LiteLLM import."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

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
    assert table.version == "2026-11-01"
    assert len(table.models) >= 25
    for name, price in table.models.items():
        assert price.effective_date is not None, name
        assert price.output_per_mtok >= price.input_per_mtok, name
        if price.cached_input_per_mtok is not None:
            assert price.cached_input_per_mtok < price.input_per_mtok, name
        # Round-trips through the strict model: no field is missing or unknown.
        assert ModelPrice.model_validate(price.model_dump()) == price


@pytest.mark.parametrize(
    ("model", "inp", "out", "cached", "ctx"),
    [
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
    assert changed.version.startswith("2026-11-01+overrides-")
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
