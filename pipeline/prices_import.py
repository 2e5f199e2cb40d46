"""Refresh the price table from LiteLLM's `model_prices_and_context_window.json`.

    result = import_litellm("model_prices_and_context_window.json", version="2026-12-01")
    result.report.imported, result.report.skipped_no_price    # what came in, what did not
    write_table(result.table, "schemas/prices.yaml")

LiteLLM's file is a useful starting point, not an authority: its prices are sometimes
wrong and nobody notices. `tierline prices import` writes a candidate table; a person
checks the changed numbers against the providers' pages before it ships.

Mapping: per-token costs x 1e6 -> per-1M prices (exact decimal shift, so 2.5e-06 becomes
2.5, not 2.4999999999999996):

    input_cost_per_token                     -> input_per_mtok
    output_cost_per_token                    -> output_per_mtok
    cache_read_input_token_cost              -> cached_input_per_mtok
    cache_creation_input_token_cost          -> cache_write_per_mtok (the 5-minute TTL;
                                                `..._above_1hr` is not priced)
    input_cost_per_token_batches             -> batch_discount (1 - batch / sync input;
                                                from the output prices when only those are
                                                listed)
    input_cost_per_token_batches, output_cost_per_token_batches,
    cache_read_input_token_cost_batches, cache_creation_input_token_cost_batches
                                             -> batch_*_per_mtok, only where the listed
                                                price is not what the discount derives
    max_input_tokens (else max_tokens)       -> context_window
    max_output_tokens (else max_tokens)      -> max_output_tokens

A batch price LiteLLM does not list is derived from the discount, which is not always the
provider's price: OpenAI's batch list gives no cached-input price before gpt-5 (a cache
read costs the batch input price there), so check `batch_cached_input_per_mtok` by hand.
Only chat and completion models come in; `sample_spec` is LiteLLM's documentation entry.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from schemas.prices import ModelPrice, PriceTable

_MODES = frozenset({"chat", "completion"})
_SKIP_KEYS = frozenset({"sample_spec"})

# Hidden reasoning tokens allowed per call of a model that thinks (schemas/prices.yaml).
REASONING_ALLOWANCE = 2048

# litellm_provider -> our provider_family; name hints settle hosts that serve many families.
_PROVIDER_FAMILY: dict[str, str] = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "azure": "openai",
    "azure_text": "openai",
    "anthropic": "anthropic",
    "mistral": "mistral",
    "codestral": "mistral",
    "meta_llama": "meta",
    "gemini": "google",
    "vertex_ai-language-models": "google",
}
_NAME_FAMILY: tuple[tuple[str, str], ...] = (
    ("claude", "anthropic"),
    ("llama", "meta"),
    ("mixtral", "mistral"),
    ("mistral", "mistral"),
    ("gpt-", "openai"),
)


@dataclass(frozen=True)
class ImportReport:
    """What an import took in and what it left out (names, for the reviewer)."""

    imported: int = 0
    skipped_not_chat: int = 0
    skipped_no_price: tuple[str, ...] = ()
    skipped_invalid: tuple[str, ...] = ()

    @property
    def skipped(self) -> int:
        return self.skipped_not_chat + len(self.skipped_no_price) + len(self.skipped_invalid)


@dataclass(frozen=True)
class LiteLLMImport:
    """A candidate price table (the YAML layout, ready for `write_table`) and its report."""

    table: dict[str, Any] = field(default_factory=dict)
    report: ImportReport = field(default_factory=ImportReport)


def _per_mtok(per_token: object) -> float:
    """USD per token -> USD per 1M tokens, shifting the decimal exactly."""
    if isinstance(per_token, bool) or not isinstance(per_token, int | float | str):
        raise ValueError(f"not a price: {per_token!r}")
    try:
        return float(Decimal(str(per_token)).scaleb(6))
    except InvalidOperation as exc:
        raise ValueError(f"not a price: {per_token!r}") from exc


def _family(name: str, provider: str) -> str:
    lowered = name.lower()
    for hint, family in _NAME_FAMILY:
        if hint in lowered:
            return family
    if provider in _PROVIDER_FAMILY:
        return _PROVIDER_FAMILY[provider]
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in provider.lower())
    return cleaned.strip("-._") or "unknown"


def _optional_per_mtok(spec: Mapping[str, Any], key: str) -> float | None:
    value = spec.get(key)
    return None if value is None else _per_mtok(value)


# Our explicit batch price -> LiteLLM's key for it.
_BATCH_KEYS: tuple[tuple[str, str], ...] = (
    ("batch_input_per_mtok", "input_cost_per_token_batches"),
    ("batch_output_per_mtok", "output_cost_per_token_batches"),
    ("batch_cached_input_per_mtok", "cache_read_input_token_cost_batches"),
    ("batch_cache_write_per_mtok", "cache_creation_input_token_cost_batches"),
)


def _batch_discount(listed: Mapping[str, float | None], entry: Mapping[str, Any]) -> float:
    """1 - batch / sync, from the input prices, else the output prices; 0 when unlisted."""
    for ours, base in (
        ("batch_input_per_mtok", "input_per_mtok"),
        ("batch_output_per_mtok", "output_per_mtok"),
    ):
        batch, full = listed[ours], entry[base]
        if batch is not None and full:
            discount = round(1 - Decimal(str(batch)) / Decimal(str(full)), 6)
            # A batch price above the sync price, or a free one, is no discount we can
            # express; the explicit prices below then carry it.
            return float(discount) if 0 <= discount < 1 else 0.0
    return 0.0


def _with_batch_prices(entry: dict[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """Add batch_discount and the explicit batch prices LiteLLM lists to `entry`.

    A listed batch price becomes an explicit field only when `ModelPrice.rates("batch")`
    would not give it back from the discount, so a plain 50%-off model stays one number.
    The input price goes first: a token kind without a price of its own derives from it.
    """
    listed = {ours: _optional_per_mtok(spec, theirs) for ours, theirs in _BATCH_KEYS}
    entry = entry | {"batch_discount": _batch_discount(listed, entry)}
    entry |= dict.fromkeys(listed)
    for ours, rate in (
        ("batch_input_per_mtok", "input"),
        ("batch_cached_input_per_mtok", "cached_input"),
        ("batch_cache_write_per_mtok", "cache_write"),
        ("batch_output_per_mtok", "output"),
    ):
        price = listed[ours]
        if price is None:
            continue
        derived: float = getattr(ModelPrice.model_validate(entry).rates("batch"), rate)
        if abs(price - derived) > 1e-9 * max(abs(derived), 1.0):
            entry[ours] = price
    return entry


def _entry(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """One LiteLLM entry -> one of our model entries (validated); ValueError if unusable."""
    context = spec.get("max_input_tokens") or spec.get("max_tokens")
    max_output = spec.get("max_output_tokens") or spec.get("max_tokens")
    if not isinstance(context, int) or not isinstance(max_output, int):
        raise ValueError("no usable max_input_tokens / max_output_tokens / max_tokens")
    entry: dict[str, Any] = {
        "input_per_mtok": _per_mtok(spec["input_cost_per_token"]),
        "output_per_mtok": _per_mtok(spec["output_cost_per_token"]),
        "cached_input_per_mtok": _optional_per_mtok(spec, "cache_read_input_token_cost"),
        "cache_write_per_mtok": _optional_per_mtok(spec, "cache_creation_input_token_cost"),
        "context_window": context,
        # LiteLLM sometimes lists an output cap larger than the window; the window wins.
        "max_output_tokens": min(max_output, context),
        "effective_date": None,
        "provider_family": _family(name, str(spec.get("litellm_provider", ""))),
    }
    if spec.get("supports_reasoning") is True:
        # Thinking billed as output: an allowance the forecast and budget plan for. Only
        # OpenAI's own reasoning models refuse max_tokens and temperature.
        entry["reasoning_tokens"] = min(REASONING_ALLOWANCE, entry["max_output_tokens"])
        if spec.get("litellm_provider") in ("openai", "azure"):
            entry["reasoning"] = True
    try:
        entry = _with_batch_prices(entry, spec)
        ModelPrice.model_validate(entry)
    except ValidationError as exc:
        raise ValueError(str(exc)) from exc
    return entry


def import_litellm(path: str | Path, *, version: str | None = None) -> LiteLLMImport:
    """Read LiteLLM's price file into our table layout.

    Entries without an input or an output price are skipped and named in the report, as
    are entries whose numbers do not validate; non-chat entries are only counted.
    `version` defaults to today's date.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of model name -> entry")
    models: dict[str, dict[str, Any]] = {}
    not_chat = 0
    no_price: list[str] = []
    invalid: list[str] = []
    for name, spec in data.items():
        if name in _SKIP_KEYS:
            continue
        if not isinstance(spec, dict) or spec.get("mode") not in _MODES:
            not_chat += 1
            continue
        if spec.get("input_cost_per_token") is None or spec.get("output_cost_per_token") is None:
            no_price.append(name)
            continue
        try:
            models[name] = _entry(name, spec)
        except ValueError:
            invalid.append(name)
    report = ImportReport(
        imported=len(models),
        skipped_not_chat=not_chat,
        skipped_no_price=tuple(no_price),
        skipped_invalid=tuple(invalid),
    )
    table = {"version": version or date.today().isoformat(), "models": models}
    return LiteLLMImport(table=table, report=report)


def write_table(table_dict: Mapping[str, Any], path: str | Path) -> Path:
    """Validate a table and write it as YAML, atomically (a reader never sees half a file).

    Raises pydantic's ValidationError, and writes nothing, when the table is not valid.
    """
    table = PriceTable.model_validate(dict(table_dict))
    doc = table.model_dump(mode="json")
    for entry in doc["models"].values():
        if not entry["aliases"]:
            del entry["aliases"]
    text = (
        "# tierline price table: USD per 1,000,000 tokens. Written by `tierline prices "
        "import`;\n# check changed numbers against the providers' price pages before use.\n"
        + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
