"""The versioned price table: what one million tokens of each model cost, in USD.

    table = load_prices()                       # the table packaged with tierline
    price = table.lookup("gpt-4o-2024-08-06")   # dated snapshot -> the gpt-4o entry
    price.input_per_mtok                        # 2.5
    price.rates("batch").cached_input           # 1.25: gpt-4o's batch API has no cache discount
    table.version                               # '2026-12-04', written into every cost row

A model that is not in the table raises `UnknownPrice` and never costs a silent $0.
Job-specific prices come in through `with_overrides`, which changes `version` so a cost
row always says which prices made it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

PACKAGED_TABLE = "prices.yaml"

CallMode = Literal["sync", "batch"]
"""How a call reaches the provider: one request at a time, or through its batch API."""
CALL_MODES: tuple[CallMode, ...] = ("sync", "batch")

# A provider's date suffix on a model name: -2024-08-06 (OpenAI), -20241022 or @20241022
# (Anthropic, Vertex). Four-digit suffixes (gpt-3.5-turbo-1106) are not stripped: they are
# too often a different model at a different price.
_DATE_SUFFIX = re.compile(r"(?:-\d{4}-\d{2}-\d{2}|[-@]\d{8})$")


class UnknownPrice(KeyError):
    """No price for a model: the job cannot account for its spend, so it must not start.

    str(UnknownPrice("gpt-9-mini", "2026-12-04", ("gpt-5-mini",)))
    # "no price for model 'gpt-9-mini' ... nearest known: gpt-5-mini. Fix: ..."
    """

    def __init__(
        self, model: str, version: str | None = None, nearest: tuple[str, ...] = ()
    ) -> None:
        self.model = model
        self.version = version
        self.nearest = tuple(nearest)
        super().__init__(model)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.model, self.version, self.nearest))

    def __str__(self) -> str:
        table = f" in price table {self.version}" if self.version else ""
        near = f" (nearest known: {', '.join(self.nearest)})" if self.nearest else ""
        return (
            f"no price for model {self.model!r}{table}, so its spend cannot be accounted"
            f"{near}. Fix: name a priced model (`tierline prices show` lists them), or "
            f"give its price under `prices:` in the job spec ({self.model}: "
            f"{{input_per_mtok, output_per_mtok, context_window, max_output_tokens, "
            f"provider_family}}), or take that entry from LiteLLM's price list with "
            f"`tierline prices import model_prices_and_context_window.json --model "
            f"{self.model}`."
        )


class Rates(NamedTuple):
    """USD per 1M tokens of each kind of token, for one model in one call mode."""

    input: float  # input tokens neither read from nor written to the prompt cache
    cached_input: float  # input tokens read from the prompt cache
    cache_write: float  # input tokens written to the prompt cache
    output: float


class ModelPrice(BaseModel):
    """One model's list price and limits. Prices are USD per 1,000,000 tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_mtok: float = Field(
        ge=0, description="USD per 1M input tokens neither read from nor written to the cache."
    )
    output_per_mtok: float = Field(ge=0, description="USD per 1M output tokens.")
    cached_input_per_mtok: float | None = Field(
        default=None,
        ge=0,
        description="USD per 1M input tokens read from the prompt cache; None = no discount.",
    )
    cache_write_per_mtok: float | None = Field(
        default=None,
        ge=0,
        description="USD per 1M input tokens written to the prompt cache (Anthropic: 1.25x "
        "input for the 5-minute TTL); None = writes cost the input price.",
    )
    context_window: int = Field(ge=1, description="Most input + output tokens of one call.")
    max_output_tokens: int = Field(ge=1, description="Most output tokens of one call.")
    batch_discount: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Fraction taken off every price through the provider's batch API "
        "(0.5 = half price), unless an explicit batch price below says otherwise.",
    )
    batch_input_per_mtok: float | None = Field(
        default=None,
        ge=0,
        description="USD per 1M uncached input tokens through the batch API; None = "
        "input_per_mtok less batch_discount.",
    )
    batch_output_per_mtok: float | None = Field(
        default=None,
        ge=0,
        description="USD per 1M output tokens through the batch API; None = output_per_mtok "
        "less batch_discount.",
    )
    batch_cached_input_per_mtok: float | None = Field(
        default=None,
        ge=0,
        description="USD per 1M cache-read input tokens through the batch API; None = the "
        "cached price less batch_discount (the batch input price when there is no cache "
        "price).",
    )
    batch_cache_write_per_mtok: float | None = Field(
        default=None,
        ge=0,
        description="USD per 1M cache-write input tokens through the batch API; None = the "
        "cache-write price less batch_discount (the batch input price when there is no "
        "cache-write price).",
    )
    effective_date: date | None = Field(
        default=None, description="Date this price took effect; None when not stated."
    )
    provider_family: str = Field(
        pattern=r"^[a-z0-9][a-z0-9._-]*$",
        description="Who trained the model (openai, anthropic, mistral, meta, ...); picks "
        "the tokenizer or the token estimate.",
    )
    aliases: tuple[str, ...] = Field(
        default=(), description="Other names the provider accepts for this model."
    )
    reasoning: bool = Field(
        default=False,
        description="An OpenAI reasoning model (GPT-5 family, o-series): its API rejects "
        "`max_tokens` and a temperature other than the default, takes "
        "`max_completion_tokens` and `reasoning_effort`.",
    )
    reasoning_tokens: int = Field(
        default=0,
        ge=0,
        description="Hidden reasoning (thinking) tokens to allow one call on top of its "
        "answer: billed as output, added to the cap sent, reserved by the budget and "
        "expected by the forecast. 0 = the model does not think before answering.",
    )
    checked: date | None = Field(
        default=None,
        description="When this price was last compared with the provider's price page.",
    )

    @property
    def cached_input_price(self) -> float:
        """USD per 1M cached input tokens, the input price when there is no discount."""
        if self.cached_input_per_mtok is None:
            return self.input_per_mtok
        return self.cached_input_per_mtok

    @property
    def cache_write_price(self) -> float:
        """USD per 1M input tokens written to the cache, the input price when not listed."""
        if self.cache_write_per_mtok is None:
            return self.input_per_mtok
        return self.cache_write_per_mtok

    def rates(self, mode: CallMode = "sync") -> Rates:
        """Every price of this model in one call mode, USD per 1M tokens.

        price.rates("batch")   # explicit batch_* prices, else the sync price less the discount

        A token kind with no price of its own costs the input price of the same mode: a
        cache read without a cache discount is billed as input, through the batch API too.
        """
        if mode == "sync":
            return Rates(
                self.input_per_mtok,
                self.cached_input_price,
                self.cache_write_price,
                self.output_per_mtok,
            )
        if mode != "batch":
            raise ValueError(f"call mode must be one of {CALL_MODES}, not {mode!r}")
        factor = 1.0 - self.batch_discount

        def listed(explicit: float | None, derived: float) -> float:
            return derived if explicit is None else explicit

        def derived(sync: float | None, fallback: float) -> float:
            return fallback if sync is None else sync * factor

        batch_input = listed(self.batch_input_per_mtok, self.input_per_mtok * factor)
        return Rates(
            batch_input,
            listed(
                self.batch_cached_input_per_mtok, derived(self.cached_input_per_mtok, batch_input)
            ),
            listed(
                self.batch_cache_write_per_mtok, derived(self.cache_write_per_mtok, batch_input)
            ),
            listed(self.batch_output_per_mtok, self.output_per_mtok * factor),
        )

    @model_validator(mode="after")
    def _output_fits(self) -> ModelPrice:
        if self.reasoning_tokens > self.max_output_tokens:
            raise ValueError(
                f"reasoning_tokens ({self.reasoning_tokens}) exceeds "
                f"max_output_tokens ({self.max_output_tokens})"
            )
        if self.max_output_tokens > self.context_window:
            raise ValueError(
                f"max_output_tokens ({self.max_output_tokens}) exceeds "
                f"context_window ({self.context_window})"
            )
        return self


class PriceTable(BaseModel):
    """Every model's price under one version string."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(
        min_length=1,
        description="Version of the table (its check date), written into every cost row.",
    )
    models: dict[str, ModelPrice] = Field(description="Model name -> its price.")

    _names: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _index_names(self) -> PriceTable:
        names: dict[str, str] = {name: name for name in self.models}
        for name, price in self.models.items():
            for alias in price.aliases:
                owner = names.setdefault(alias, name)
                if owner != name:
                    raise ValueError(f"alias {alias!r} of {name!r} is already a name of {owner!r}")
        self._names = names
        return self

    def resolve(self, model: str) -> str:
        """The table's name for `model`: exact, then alias, then without a date suffix."""
        name = self._names.get(model)
        if name is None:
            stripped = _DATE_SUFFIX.sub("", model)
            if stripped != model:
                name = self._names.get(stripped)
        if name is None:
            raise UnknownPrice(model, self.version, self.nearest(model))
        return name

    def nearest(self, model: str, n: int = 3) -> tuple[str, ...]:
        """Known names that look like `model` (a typo, a newer or older sibling)."""
        import difflib

        return tuple(difflib.get_close_matches(model, sorted(self._names), n=n, cutoff=0.6))

    def lookup(self, model: str) -> ModelPrice:
        """The price of `model`; raises `UnknownPrice` (a KeyError) when there is none."""
        return self.models[self.resolve(model)]

    def deployment_key(self, provider: str, model: str) -> str:
        """The name a deployment is priced by: its own 'provider/model' entry when the
        table has one (one model served by several providers at different prices), else
        its model."""
        own = f"{provider}/{model}"
        return own if own in self._names else model

    def for_deployment(self, provider: str, model: str) -> ModelPrice:
        return self.lookup(self.deployment_key(provider, model))

    def __contains__(self, model: object) -> bool:
        if not isinstance(model, str):
            return False
        try:
            self.resolve(model)
        except UnknownPrice:
            return False
        return True

    def with_overrides(self, overrides: Mapping[str, ModelPrice | Mapping[str, Any]]) -> PriceTable:
        """A copy with some prices replaced or added; the version records that it changed.

        An override for a model already in the table (by any of its names) may give only the
        fields it changes (a `ModelPrice` counts with the fields it was built with); a new
        model needs every required field. A dated snapshot of a known model gets an entry
        of its own, starting from its family's price.

            table.with_overrides({"gpt-4o": {"input_per_mtok": 2.0}}).version
            # '2026-12-04+overrides-' + 8 hex digits of the overrides' hash
        """
        if not overrides:
            return self
        models = dict(self.models)
        canonical: dict[str, Any] = {}
        for model, entry in overrides.items():
            fields = (
                entry.model_dump(exclude_unset=True)
                if isinstance(entry, ModelPrice)
                else dict(entry)
            )
            name = self._names.get(model, model)
            served = model.split("/", 1)[1] if "/" in model else ""
            if name in models:
                base = models[name].model_dump()
            elif model in self:
                # A snapshot of a known model: its own entry, starting from the family's price.
                base = self.lookup(model).model_dump(exclude={"aliases"})
            elif served in self:
                # 'provider/model': one provider's price for a known model, starting from it.
                base = self.lookup(served).model_dump(exclude={"aliases"})
            else:
                base = {}
            models[name] = ModelPrice.model_validate(base | fields)
            canonical[name] = models[name].model_dump(mode="json")
        digest = hashlib.sha256(
            json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()[:8]
        return PriceTable(version=f"{self.version}+overrides-{digest}", models=models)


def load_prices(path: str | Path | None = None) -> PriceTable:
    """Read a price table from YAML; None reads the table packaged with tierline."""
    if path is None:
        text = resources.files("schemas").joinpath(PACKAGED_TABLE).read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"price table {path or PACKAGED_TABLE} is not a YAML mapping")
    return PriceTable.model_validate(data)
