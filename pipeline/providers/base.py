"""The provider seam: one request/response shape, one adapter per wire format.

    adapter = registry.create(spec_for("openai"), name="openai")
    resp = await adapter.complete(session, ChatRequest(model="gpt-4o-mini", messages=msgs,
                                                       max_tokens=16))

Adapters turn a `ChatRequest` into their wire format, send it with the aiohttp session
they are handed (tests hand in a session pointed at the simulator), and map every
failure to the error tree in `pipeline.errors` at this one boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:  # only a type here: the forecast's worker processes never load aiohttp
    import aiohttp

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float = 0.0
    # Ask for token log-probabilities (the cascade's `min_logprob`); adapters whose wire
    # format has none ignore it, and the answer's `mean_logprob` stays None.
    logprobs: bool = False


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0


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


class Provider(Protocol):
    """What every wire-format adapter provides."""

    name: str

    async def complete(self, session: aiohttp.ClientSession, request: ChatRequest) -> ChatResponse:
        """Send one request; raise a `pipeline.errors.TierlineError` subclass on failure."""
        ...
