"""The two wire formats the simulator speaks: OpenAI chat completions, Anthropic Messages.

Each format reads its request into one `SimRequest`, and writes answers, errors and
rate-limit headers its own way; the server never asks which format it is talking.

    wire = FORMATS["anthropic"]
    request = wire.parse(body, headers)     # raises WireError -> 400
    payload = wire.answer(request, reply, answer_id="...", created=0)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Protocol

from pipeline.sim.limits import RateState
from pipeline.sim.prompt_cache import NO_CACHE, Breakpoint, CacheUse
from pipeline.sim.replay import Recorded
from pipeline.sim.request import (
    JSON,
    SimRequest,
    WireError,
    check_marks,
    common,
    forced_tool,
    output_format,
    positive_int,
    read_content,
    read_messages,
    response_format,
)

__all__ = [  # SimRequest and WireError live in request.py; handlers find them here
    "FORMATS",
    "JSON",
    "AnthropicWire",
    "OpenAIWire",
    "Reply",
    "SimRequest",
    "WireError",
    "WireFormat",
    "go_duration",
    "rfc3339",
]


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful answer, before it is put in a format."""

    text: str
    input_tokens: int
    output_tokens: int
    truncated: bool
    recorded: Recorded | None = None
    logprobs: list[tuple[str, float]] | None = None  # (piece, log-probability), when asked
    # Prompt-cache use; `input_tokens` includes it. OpenAI reports `cache.read` only.
    cache: CacheUse = NO_CACHE
    # Hidden reasoning tokens, part of `output_tokens` (billed as output).
    reasoning_tokens: int = 0


def go_duration(seconds: float) -> str:
    """Seconds as OpenAI writes reset times: '20ms', '1s', '1m30.5s', '6m0s'."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms" if seconds > 0 else "0s"
    millis = math.ceil(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def rfc3339(wall_time: float) -> str:
    return datetime.fromtimestamp(math.ceil(wall_time), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def bearer_key(headers: Mapping[str, str]) -> str | None:
    scheme, _, key = headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return key.strip() or None


_CAP_FIELDS = ("max_completion_tokens", "max_tokens")
_EFFORTS = ("minimal", "low", "medium", "high")


class OpenAIWire:
    """`POST /v1/chat/completions`."""

    name = "openai"
    _ROLES: ClassVar[dict[str, str]] = {
        "system": "system",
        "developer": "system",
        "user": "user",
        "assistant": "assistant",
    }

    def api_key(self, headers: Mapping[str, str]) -> str | None:
        return bearer_key(headers)

    def parse(self, body: object, headers: Mapping[str, str]) -> SimRequest:
        data, model, raw = common(body)
        cap_field = next((f for f in _CAP_FIELDS if data.get(f) is not None), None)
        max_tokens = positive_int(data.get(cap_field) if cap_field else None, "max_tokens")
        temperature = data.get("temperature")
        if temperature is not None and (
            isinstance(temperature, bool) or not isinstance(temperature, int | float)
        ):
            raise WireError("temperature must be a number")
        effort = data.get("reasoning_effort")
        if effort is not None and effort not in _EFFORTS:
            raise WireError(f"reasoning_effort must be one of {', '.join(_EFFORTS)}")
        logprobs = data.get("logprobs", False)
        if logprobs is None:
            logprobs = False
        if not isinstance(logprobs, bool):
            raise WireError("logprobs must be a boolean")
        cache_key = data.get("prompt_cache_key")
        if cache_key is not None and not isinstance(cache_key, str):
            raise WireError("prompt_cache_key must be a string")
        messages, _ = read_messages(raw, self._ROLES)  # OpenAI caches without marks
        return SimRequest(
            model,
            tuple(messages),
            max_tokens,
            logprobs,
            cache_key,
            cap_field=cap_field,
            temperature=None if temperature is None else float(temperature),
            reasoning_effort=effort,
            schema=response_format(data.get("response_format")),
        )

    def answer(
        self,
        request: SimRequest,
        reply: Reply,
        *,
        answer_id: str,
        created: int,
        batch: bool = False,
    ) -> JSON:
        choice: JSON = {
            "index": 0,
            "message": {"role": "assistant", "content": reply.text},
            "finish_reason": "length" if reply.truncated else "stop",
        }
        if request.logprobs:
            choice["logprobs"] = _openai_logprobs(reply.logprobs)
        payload: JSON = {
            "id": f"chatcmpl-{answer_id}",
            "object": "chat.completion",
            "created": created,
            "model": request.model,
            "choices": [choice],
            "usage": {
                "prompt_tokens": reply.input_tokens,
                "completion_tokens": reply.output_tokens,
                "total_tokens": reply.input_tokens + reply.output_tokens,
                "prompt_tokens_details": {"cached_tokens": reply.cache.read, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": reply.reasoning_tokens,
                    "audio_tokens": 0,
                },
            },
        }
        return _with_recording(payload, reply)

    def error(self, status: int, message: str, kind: str | None = None) -> JSON:
        if kind is None:
            kind = {
                401: "invalid_request_error",
                404: "not_found",
                429: "requests",
                504: "timeout",
                529: "overloaded_error",
            }.get(status)
            kind = kind or ("server_error" if status >= 500 else "invalid_request_error")
        code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    def retry_headers(self, wait_s: float) -> dict[str, str]:
        return {"retry-after": str(wait_s)}

    def rate_headers(self, state: RateState, wall_now: float) -> dict[str, str]:
        headers: dict[str, str] = {}
        for dim, limit, remaining, reset in (
            ("requests", state.requests_limit, state.requests_remaining, state.requests_reset_s),
            ("tokens", state.tokens_limit, state.tokens_remaining, state.tokens_reset_s),
        ):
            if limit is not None:
                headers[f"x-ratelimit-limit-{dim}"] = str(limit)
                headers[f"x-ratelimit-remaining-{dim}"] = str(remaining)
                headers[f"x-ratelimit-reset-{dim}"] = go_duration(reset)
        return headers


class AnthropicWire:
    """`POST /v1/messages`."""

    name = "anthropic"
    _ROLES: ClassVar[dict[str, str]] = {"user": "user", "assistant": "assistant"}
    _TYPES: ClassVar[dict[int, str]] = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        500: "api_error",
        504: "timeout_error",
        529: "overloaded_error",
    }

    def api_key(self, headers: Mapping[str, str]) -> str | None:
        # `x-api-key`, or `Authorization: Bearer` as the current Python SDK sends it.
        return headers.get("x-api-key", "").strip() or bearer_key(headers)

    def parse(self, body: object, headers: Mapping[str, str]) -> SimRequest:
        if not headers.get("anthropic-version"):
            raise WireError("anthropic-version: header is required")
        data, model, raw = common(body)
        max_tokens = positive_int(data.get("max_tokens"), "max_tokens")
        if max_tokens is None:
            raise WireError("max_tokens: field required")
        system = data.get("system")  # a string or a list of text blocks
        messages, marks = read_messages(raw, self._ROLES, first=0 if system is None else 1)
        if system is not None:
            text, ends = read_content(system, "system")
            messages.insert(0, ("system", text))
            marks[:0] = [Breakpoint(0, end, ttl) for end, ttl in ends]
        marked = check_marks(marks)
        schema, tool = forced_tool(data.get("tools"), data.get("tool_choice"))
        if schema is None:
            schema = output_format(data)
        return SimRequest(
            model,
            tuple(messages),
            max_tokens,
            marks=marked,
            caching="marked",
            schema=schema,
            tool=tool,
        )

    def answer(
        self,
        request: SimRequest,
        reply: Reply,
        *,
        answer_id: str,
        created: int,
        batch: bool = False,
    ) -> JSON:
        cache = reply.cache
        # Anthropic's input_tokens counts only what was neither read from nor written to the
        # cache (the tokens after the last breakpoint); the three add up to the prompt.
        usage: JSON = {
            "input_tokens": reply.input_tokens - cache.read - cache.write,
            "output_tokens": reply.output_tokens,
            "cache_creation_input_tokens": cache.write,
            "cache_read_input_tokens": cache.read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": cache.write_5m,
                "ephemeral_1h_input_tokens": cache.write_1h,
            },
            "service_tier": "batch" if batch else "standard",
        }
        payload: JSON = {
            "id": f"msg_{answer_id}",
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": [_content(request, reply, answer_id)],
            "stop_reason": _stop_reason(request, reply),
            "stop_sequence": None,
            "usage": usage,
        }
        return _with_recording(payload, reply)

    def error(self, status: int, message: str, kind: str | None = None) -> JSON:
        # Anthropic names the error by status only; `kind` is the OpenAI-side detail.
        fallback = "api_error" if status >= 500 else "invalid_request_error"
        error_type = self._TYPES.get(status, fallback)
        return {"type": "error", "error": {"type": error_type, "message": message}}

    def retry_headers(self, wait_s: float) -> dict[str, str]:
        return {"retry-after": str(wait_s)}

    def rate_headers(self, state: RateState, wall_now: float) -> dict[str, str]:
        headers: dict[str, str] = {}
        for dim, limit, remaining, reset in (
            ("requests", state.requests_limit, state.requests_remaining, state.requests_reset_s),
            ("tokens", state.tokens_limit, state.tokens_remaining, state.tokens_reset_s),
        ):
            if limit is not None:
                headers[f"anthropic-ratelimit-{dim}-limit"] = str(limit)
                headers[f"anthropic-ratelimit-{dim}-remaining"] = str(remaining)
                headers[f"anthropic-ratelimit-{dim}-reset"] = rfc3339(wall_now + reset)
        return headers


def _tool_input(request: SimRequest, reply: Reply) -> object:
    """The answer as a forced tool's input, or None (not a tool call, or not a JSON object:
    then it goes back as text, as a model that ignored the tool would send)."""
    if request.tool is None or reply.truncated:
        return None
    try:
        value = json.loads(reply.text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _content(request: SimRequest, reply: Reply, answer_id: str) -> JSON:
    tool_input = _tool_input(request, reply)
    if tool_input is None:
        return {"type": "text", "text": reply.text}
    return {
        "type": "tool_use",
        "id": f"toolu_{answer_id}",
        "name": request.tool,
        "input": tool_input,
    }


def _stop_reason(request: SimRequest, reply: Reply) -> str:
    if reply.truncated:
        return "max_tokens"
    return "tool_use" if _tool_input(request, reply) is not None else "end_turn"


def _openai_logprobs(pieces: list[tuple[str, float]] | None) -> JSON | None:
    """OpenAI's `choices[0].logprobs`; None when there are none to give (replayed answers)."""
    if pieces is None:
        return None
    content = [
        {"token": piece, "logprob": value, "bytes": list(piece.encode()), "top_logprobs": []}
        for piece, value in pieces
    ]
    return {"content": content, "refusal": None}


def _with_recording(payload: JSON, reply: Reply) -> JSON:
    if reply.recorded is not None:
        payload["tierline"] = {
            "recorded_cost_usd": reply.recorded.cost_usd,
            "sample_id": reply.recorded.sample_id,
        }
    return payload


class WireFormat(Protocol):
    """What the server needs from a wire format."""

    name: str

    def api_key(self, headers: Mapping[str, str]) -> str | None: ...

    def parse(self, body: object, headers: Mapping[str, str]) -> SimRequest: ...

    def answer(
        self,
        request: SimRequest,
        reply: Reply,
        *,
        answer_id: str,
        created: int,
        batch: bool = False,
    ) -> JSON: ...

    def error(self, status: int, message: str, kind: str | None = None) -> JSON: ...

    def retry_headers(self, wait_s: float) -> dict[str, str]:
        """The headers of a 429 (or 503) that says when to try again."""
        ...

    def rate_headers(self, state: RateState, wall_now: float) -> dict[str, str]: ...


FORMATS: dict[str, WireFormat] = {"openai": OpenAIWire(), "anthropic": AnthropicWire()}
