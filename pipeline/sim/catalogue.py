"""Which models the simulator serves, and what each one's API accepts, as the providers'.

    catalogue = Catalogue(config, replay)
    catalogue.names()                       # what GET /v1/models lists
    catalogue.refusal(request, "openai")    # None, or the 400/404 the provider would send
    catalogue.hidden_tokens(request)        # reasoning tokens the model spends unseen

Served: every model of the price table (its names and aliases, dated snapshots of them),
the names and globs of `SimConfig.models` and `SimConfig.served_models`; replaying, the
models recorded (and those named) instead of the price table's. Another model gets the
providers' 404 (`model_not_found` from OpenAI, `not_found_error` from Anthropic), never
an answer.

OpenAI's reasoning models (the price table's `reasoning`) refuse `max_tokens` and any
temperature but 1, as the real API does (400, `unsupported_parameter` /
`unsupported_value`); other models refuse `reasoning_effort`. A model that thinks
(`reasoning_tokens` in the table) spends hidden tokens inside the request's cap before
it answers, more for more effort; they are billed as output and reported as
`completion_tokens_details.reasoning_tokens`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fnmatch import fnmatchcase

from pipeline.sim.replay import ReplayTable
from pipeline.sim.request import SimRequest
from schemas.prices import ModelPrice, PriceTable, UnknownPrice, load_prices
from schemas.sim import SimConfig

# Hidden reasoning tokens per answer by effort, bounded by the table's allowance. What a
# short classification costs a reasoning model, not a measurement of any one model.
EFFORT_TOKENS = {"minimal": 0, "low": 64, "medium": 256, "high": 768}
DEFAULT_EFFORT = "medium"


@functools.cache
def packaged_table() -> PriceTable:
    return load_prices()


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    message: str
    kind: str
    code: str | None = None
    param: str | None = None


class Catalogue:
    def __init__(self, config: SimConfig, replay: ReplayTable | None) -> None:
        self.table = packaged_table()
        # Replaying, only what was recorded (and named) is served: 404 for the rest.
        self.listed = set() if replay is not None else set(self.table.models)
        self.globs = [n for n in config.models if any(ch in n for ch in "*?[")]
        self.exact = {n for n in config.models if n not in self.globs}
        self.exact.update(config.served_models)
        if replay is not None:
            self.exact.update(replay.models())

    def names(self) -> list[str]:
        return sorted(self.exact | self.listed)

    def price(self, model: str) -> ModelPrice | None:
        try:
            return self.table.lookup(model)
        except UnknownPrice:
            return None

    def serves(self, model: str) -> bool:
        return (
            model in self.exact
            or any(fnmatchcase(model, g) for g in self.globs)
            or (bool(self.listed) and self.price(model) is not None)
        )

    def refusal(self, request: SimRequest, wire: str) -> Refusal | None:
        model = request.model
        if not self.serves(model):
            if wire == "anthropic":
                return Refusal(404, f"model: {model}", "not_found_error")
            message = f"The model `{model}` does not exist or you do not have access to it."
            return Refusal(404, message, "invalid_request_error", "model_not_found")
        if wire == "anthropic":  # OpenAI's parameter rules hold on Azure too
            return None
        price = self.price(model)
        if price is not None and price.reasoning:
            if request.cap_field == "max_tokens":
                return _unsupported(
                    "max_tokens", "Use 'max_completion_tokens' instead.", "unsupported_parameter"
                )
            if request.temperature is not None and request.temperature != 1:
                return _unsupported(
                    "temperature",
                    f"'temperature' does not support {request.temperature:g} with this model. "
                    "Only the default (1) value is supported.",
                    "unsupported_value",
                )
        elif request.reasoning_effort is not None and (price is None or not price.reasoning_tokens):
            return _unsupported("reasoning_effort", "", "unsupported_parameter")
        return None

    def hidden_tokens(self, request: SimRequest) -> int:
        """Reasoning tokens this answer spends before its text (0 for most models)."""
        price = self.price(request.model)
        if price is None or not price.reasoning_tokens:
            return 0
        wanted = EFFORT_TOKENS[request.reasoning_effort or DEFAULT_EFFORT]
        return min(wanted, price.reasoning_tokens)


def _unsupported(param: str, detail: str, code: str) -> Refusal:
    if code == "unsupported_value":
        message = f"Unsupported value: {detail}"
    else:
        message = f"Unsupported parameter: '{param}' is not supported with this model. {detail}"
    return Refusal(400, message.strip(), "invalid_request_error", code, param)
