"""The provider seam: one request/response shape, one adapter per wire format.

    adapter = registry.create(spec_for("openai"), name="openai")
    resp = await adapter.complete(session, ChatRequest(model="gpt-4o-mini", messages=msgs,
                                                       max_tokens=16))

Adapters turn a `ChatRequest` into their wire format, send it with the aiohttp session
they are handed (tests hand in a session pointed at the simulator), and map every
failure to the error tree in `pipeline.errors` at this one boundary. The batch APIs sit
behind a second seam, `pipeline.providers.batch.BatchProvider`, with the same shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from schemas.extract import StructuredMode

if TYPE_CHECKING:  # only a type here: the forecast's worker processes never load aiohttp
    import aiohttp

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class OutputSchema:
    """The JSON Schema an answer must match (extract tasks), and how the provider is asked
    for it (`pipeline.providers.structured`): native structured output, JSON mode, or the
    schema written into the prompt. `schema` is JSON text, so requests stay hashable."""

    name: str
    schema: str
    mode: StructuredMode = "native"


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float = 0.0
    # Ask for token log-probabilities (the cascade's `min_logprob`); adapters whose wire
    # format has none ignore it, and the answer's `mean_logprob` stays None.
    logprobs: bool = False
    # Prompt caching. `cache_key` is sent as OpenAI's `prompt_cache_key` (it keeps a job's
    # requests on warm machines). `cache_prefix` is how many leading messages form the block
    # every row shares: Anthropic caches only up to a marked block, so its adapter marks
    # the last block of that prefix; OpenAI caches long shared prefixes by itself.
    cache_key: str | None = None
    cache_prefix: int = 0
    # An OpenAI reasoning model (the price table's `reasoning`): `max_tokens` goes out as
    # `max_completion_tokens` (it caps hidden reasoning and answer together), no
    # temperature (only the default is accepted), and `reasoning_effort` when set.
    reasoning: bool = False
    reasoning_effort: str | None = None
    # Extract tasks: the answer's JSON Schema, sent the way the provider takes it.
    output_schema: OutputSchema | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one call, in the convention of `pipeline.costs`: `input_tokens` is every
    input token, cache reads and writes included; `cached_input_tokens` the part read from
    the prompt cache; `cache_write_tokens` the part written to it (Anthropic)."""

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    # The part of `output_tokens` spent on hidden reasoning (billed as output all the same).
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ChatResponse:
    text: str
    usage: Usage
    model: str
    finish_reason: str = "stop"
    # Mean token log-probability of the answer, where the provider returns them.
    mean_logprob: float | None = None
    # Rate-limit headers seen on the answer (lower-cased names), for quota feedback.
    rate_headers: dict[str, str] = field(default_factory=dict)
    # How it was bought: "sync" (one request) or "batch" (the provider's batch API, billed
    # at the batch price).
    mode: str = "sync"


class Provider(Protocol):
    """What every wire-format adapter provides."""

    name: str

    async def complete(self, session: aiohttp.ClientSession, request: ChatRequest) -> ChatResponse:
        """Send one request; raise a `pipeline.errors.TierlineError` subclass on failure."""
        ...
