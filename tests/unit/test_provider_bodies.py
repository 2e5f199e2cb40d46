"""Real provider answers through the adapters: bodies and headers written from the
providers' published API references (each case names its document), served by a stub
HTTP server, and what the adapter makes of each asserted: the usage the cost is billed
from, or the error, whether it is retried, and the error row type it becomes.

The simulator is ours; these are the providers' own shapes, including the ones our
simulator never sends (refusals, tool calls, content filters, quota errors).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pipeline.costs import call_cost_usd
from pipeline.errors import TierlineError
from pipeline.providers.anthropic import AnthropicMessages
from pipeline.providers.base import ChatRequest, ChatResponse, Message
from pipeline.providers.openai import OpenAIChat
from schemas.job import Timeouts
from schemas.prices import load_prices

OPENAI_CHAT = "platform.openai.com/docs/api-reference/chat/object"
OPENAI_ERRORS = "platform.openai.com/docs/guides/error-codes"
OPENAI_LIMITS = "platform.openai.com/docs/guides/rate-limits (rate limits in headers)"
OPENAI_REASONING = "platform.openai.com/docs/guides/reasoning"
ANTHROPIC_MESSAGES = "docs.anthropic.com/en/api/messages"
ANTHROPIC_ERRORS = "docs.anthropic.com/en/api/errors"
ANTHROPIC_LIMITS = "docs.anthropic.com/en/api/rate-limits (response headers)"
ANTHROPIC_CACHE = "docs.anthropic.com/en/docs/build-with-claude/prompt-caching"


@dataclass(frozen=True)
class Case:
    source: str  # the document the body and headers were written from
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


def chat(message: dict[str, Any], finish: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1741570283,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": "fp_fc9f1d7035",
    }


def usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def says(text: str | None, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": text, "refusal": None, "annotations": [], **extra}


def message(content: list[dict[str, Any]], stop: str, **use: int) -> dict[str, Any]:
    counts = {"input_tokens": 0, "output_tokens": 0, **use}
    counts.setdefault("cache_creation_input_tokens", 0)
    counts.setdefault("cache_read_input_tokens", 0)
    return {
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": counts,
    }


def oai_error(message: str, kind: str, code: str | None, param: str | None = None) -> Any:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def ant_error(kind: str, message: str) -> Any:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"}


OPENAI_RATE = {
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-limit-tokens": "150000",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-remaining-tokens": "149984",
    "x-ratelimit-reset-requests": "1s",
    "x-ratelimit-reset-tokens": "6m0s",
}
ANTHROPIC_RATE = {
    "anthropic-ratelimit-requests-limit": "50",
    "anthropic-ratelimit-requests-remaining": "0",
    "anthropic-ratelimit-requests-reset": "2026-12-05T10:00:30Z",
    "anthropic-ratelimit-input-tokens-limit": "30000",
    "anthropic-ratelimit-input-tokens-remaining": "29000",
    "anthropic-ratelimit-input-tokens-reset": "2026-12-05T10:00:02Z",
    "anthropic-ratelimit-output-tokens-limit": "8000",
    "anthropic-ratelimit-output-tokens-remaining": "8000",
    "anthropic-ratelimit-output-tokens-reset": "2026-12-05T10:00:00Z",
    "retry-after": "30",
}

# name -> (case, expected): expected is (text, input, output, cached, cache write, finish)
# for answers, and (error_type, transient, retry_after_s) for errors.
ANSWERS: dict[str, tuple[str, Case, tuple[Any, ...]]] = {
    "openai plain": (
        "openai",
        Case(OPENAI_CHAT, 200, chat(says("billing"), "stop", usage(19, 1))),
        ("billing", 19, 1, 0, 0, "stop"),
    ),
    "openai cached prompt": (
        "openai",
        Case(OPENAI_CHAT, 200, chat(says("billing"), "stop", usage(2006, 1, cached=1920))),
        ("billing", 2006, 1, 1920, 0, "stop"),
    ),
    "openai cut by max_tokens": (
        "openai",
        Case(OPENAI_CHAT, 200, chat(says("The customer was bil"), "length", usage(40, 16))),
        ("The customer was bil", 40, 16, 0, 0, "length"),
    ),
    "openai content filter": (
        "openai",
        Case(OPENAI_CHAT, 200, chat(says(None), "content_filter", usage(30, 0))),
        ("", 30, 0, 0, 0, "content_filter"),
    ),
    "openai refusal": (
        "openai",
        Case(
            OPENAI_CHAT,
            200,
            chat({**says(None), "refusal": "I can't help with that."}, "stop", usage(25, 9)),
        ),
        ("", 25, 9, 0, 0, "stop"),
    ),
    "openai empty content": (
        "openai",
        Case(OPENAI_CHAT, 200, chat(says(""), "stop", usage(25, 0))),
        ("", 25, 0, 0, 0, "stop"),
    ),
    "openai tool call": (
        "openai",
        Case(
            OPENAI_CHAT,
            200,
            chat(
                says(
                    None,
                    tool_calls=[
                        {
                            "id": "call_abc123",
                            "type": "function",
                            "function": {"name": "label", "arguments": '{"label":"billing"}'},
                        }
                    ],
                ),
                "tool_calls",
                usage(82, 17),
            ),
        ),
        ("", 82, 17, 0, 0, "tool_calls"),
    ),
    "openai reasoning tokens": (
        "openai",
        Case(OPENAI_REASONING, 200, chat(says("billing"), "stop", usage(75, 1186, reasoning=1024))),
        ("billing", 75, 1186, 0, 0, "stop"),
    ),
    "anthropic plain": (
        "anthropic",
        Case(
            ANTHROPIC_MESSAGES,
            200,
            message(
                [{"type": "text", "text": "billing"}], "end_turn", input_tokens=21, output_tokens=2
            ),
        ),
        ("billing", 21, 2, 0, 0, "end_turn"),
    ),
    "anthropic cache write and read": (
        "anthropic",
        Case(
            ANTHROPIC_CACHE,
            200,
            message(
                [{"type": "text", "text": "billing"}],
                "end_turn",
                input_tokens=12,
                output_tokens=2,
                cache_creation_input_tokens=248,
                cache_read_input_tokens=1800,
            ),
        ),
        ("billing", 2060, 2, 1800, 248, "end_turn"),
    ),
    "anthropic max_tokens": (
        "anthropic",
        Case(
            ANTHROPIC_MESSAGES,
            200,
            message(
                [{"type": "text", "text": "The customer"}],
                "max_tokens",
                input_tokens=40,
                output_tokens=16,
            ),
        ),
        ("The customer", 40, 16, 0, 0, "max_tokens"),
    ),
    "anthropic refusal": (
        "anthropic",
        Case(ANTHROPIC_MESSAGES, 200, message([], "refusal", input_tokens=30, output_tokens=0)),
        ("", 30, 0, 0, 0, "refusal"),
    ),
    "anthropic empty content": (
        "anthropic",
        Case(ANTHROPIC_MESSAGES, 200, message([], "end_turn", input_tokens=30, output_tokens=0)),
        ("", 30, 0, 0, 0, "end_turn"),
    ),
    "anthropic tool use": (
        "anthropic",
        Case(
            ANTHROPIC_MESSAGES,
            200,
            message(
                [
                    {"type": "text", "text": "Labelling."},
                    {
                        "type": "tool_use",
                        "id": "toolu_01A09q90qw90lq917835lq9",
                        "name": "label",
                        "input": {"label": "billing"},
                    },
                ],
                "tool_use",
                input_tokens=380,
                output_tokens=45,
            ),
        ),
        # The tool's input is the answer (extract asks Anthropic for JSON as a forced tool);
        # the text beside it is the model's preamble.
        ('{"label": "billing"}', 380, 45, 0, 0, "tool_use"),
    ),
}

ERRORS: dict[str, tuple[str, Case, tuple[str, bool, float | None]]] = {
    "openai 400": (
        "openai",
        Case(
            OPENAI_ERRORS,
            400,
            oai_error("Invalid value for 'messages'.", "invalid_request_error", None, "messages"),
        ),
        ("bad_request", False, None),
    ),
    "openai 401": (
        "openai",
        Case(
            OPENAI_ERRORS,
            401,
            oai_error(
                "Incorrect API key provided: sk-abc***.", "invalid_request_error", "invalid_api_key"
            ),
        ),
        ("auth_failed", False, None),
    ),
    "openai 403 region": (
        "openai",
        Case(
            OPENAI_ERRORS,
            403,
            oai_error(
                "Country, region, or territory not supported",
                "request_forbidden",
                "unsupported_country_region_territory",
            ),
        ),
        ("auth_failed", False, None),
    ),
    "openai 404 model": (
        "openai",
        Case(
            OPENAI_ERRORS,
            404,
            oai_error(
                "The model `gpt-9` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            ),
        ),
        ("bad_request", False, None),
    ),
    "openai 429 rate": (
        "openai",
        Case(
            OPENAI_LIMITS,
            429,
            oai_error(
                "Rate limit reached for gpt-4o on requests per min (RPM): Limit 60, Used 60.",
                "requests",
                "rate_limit_exceeded",
            ),
            {**OPENAI_RATE, "retry-after": "1"},
        ),
        ("rate_limited", True, 1.0),
    ),
    "openai 429 retry-after-ms": (
        "openai",
        Case(
            OPENAI_LIMITS,
            429,
            oai_error(
                "Rate limit reached for gpt-4o on tokens per min (TPM).",
                "tokens",
                "rate_limit_exceeded",
            ),
            {**OPENAI_RATE, "retry-after-ms": "250", "retry-after": "1"},
        ),
        ("rate_limited", True, 0.25),
    ),
    "openai 429 reset header only": (
        "openai",
        Case(
            OPENAI_LIMITS,
            429,
            oai_error("Rate limit reached.", "requests", "rate_limit_exceeded"),
            OPENAI_RATE,
        ),
        ("rate_limited", True, 1.0),
    ),
    "openai 429 quota": (
        "openai",
        Case(
            OPENAI_ERRORS,
            429,
            oai_error(
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                "insufficient_quota",
            ),
        ),
        ("quota_exhausted", False, None),
    ),
    "openai 500": (
        "openai",
        Case(
            OPENAI_ERRORS,
            500,
            oai_error(
                "The server had an error while processing your request.", "server_error", None
            ),
        ),
        ("provider_unavailable", True, None),
    ),
    "openai 503": (
        "openai",
        Case(
            OPENAI_ERRORS,
            503,
            oai_error(
                "The engine is currently overloaded, please try again later.", "server_error", None
            ),
        ),
        ("provider_unavailable", True, None),
    ),
    "anthropic 400": (
        "anthropic",
        Case(
            ANTHROPIC_ERRORS,
            400,
            ant_error("invalid_request_error", "messages: at least one message is required"),
        ),
        ("bad_request", False, None),
    ),
    "anthropic 401": (
        "anthropic",
        Case(ANTHROPIC_ERRORS, 401, ant_error("authentication_error", "invalid x-api-key")),
        ("auth_failed", False, None),
    ),
    "anthropic 402": (
        "anthropic",
        Case(ANTHROPIC_ERRORS, 402, ant_error("billing_error", "Your credit balance is too low.")),
        ("quota_exhausted", False, None),
    ),
    "anthropic 403": (
        "anthropic",
        Case(
            ANTHROPIC_ERRORS,
            403,
            ant_error(
                "permission_error",
                "Your API key does not have permission to use the specified resource.",
            ),
        ),
        ("auth_failed", False, None),
    ),
    "anthropic 404": (
        "anthropic",
        Case(ANTHROPIC_ERRORS, 404, ant_error("not_found_error", "model: claude-9")),
        ("bad_request", False, None),
    ),
    "anthropic 413": (
        "anthropic",
        Case(
            ANTHROPIC_ERRORS,
            413,
            ant_error("request_too_large", "Request exceeds the maximum allowed number of bytes."),
        ),
        ("bad_request", False, None),
    ),
    "anthropic 429": (
        "anthropic",
        Case(
            ANTHROPIC_LIMITS,
            429,
            ant_error(
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit.",
            ),
            ANTHROPIC_RATE,
        ),
        ("rate_limited", True, 30.0),
    ),
    "anthropic 500": (
        "anthropic",
        Case(
            ANTHROPIC_ERRORS,
            500,
            ant_error(
                "api_error", "An unexpected error has occurred internal to Anthropic's systems."
            ),
        ),
        ("provider_unavailable", True, None),
    ),
    "anthropic 504": (
        "anthropic",
        Case(ANTHROPIC_ERRORS, 504, ant_error("timeout_error", "Request timed out.")),
        ("provider_unavailable", True, None),
    ),
    "anthropic 529": (
        "anthropic",
        Case(ANTHROPIC_ERRORS, 529, ant_error("overloaded_error", "Overloaded")),
        ("provider_unavailable", True, None),
    ),
}


async def ask(kind: str, case: Case) -> ChatResponse:
    async def reply(request: web.Request) -> web.Response:
        return web.json_response(case.body, status=case.status, headers=dict(case.headers))

    app = web.Application()
    app.router.add_post("/v1/chat/completions", reply)
    app.router.add_post("/v1/messages", reply)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}/v1"
    model = "gpt-4o" if kind == "openai" else "claude-sonnet-4-5"
    adapter = (OpenAIChat if kind == "openai" else AnthropicMessages)(
        name=kind, base_url=base, api_key_env=None, timeouts=Timeouts(total_s=5)
    )
    try:
        async with aiohttp.ClientSession() as session:
            return await adapter.complete(session, ChatRequest(model, (Message("user", "x"),), 16))
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_answers_are_read_and_billed_as_the_provider_bills_them(name: str) -> None:
    kind, case, (text, tokens_in, tokens_out, cached, written, finish) = ANSWERS[name]
    assert case.source
    got = asyncio.run(ask(kind, case))
    usage = got.usage
    assert (got.text, got.finish_reason) == (text, finish)
    assert (usage.input_tokens, usage.output_tokens) == (tokens_in, tokens_out)
    assert (usage.cached_input_tokens, usage.cache_write_tokens) == (cached, written)
    # The bill: cached reads at the cached price, writes at the write price, hidden
    # reasoning and refused or filtered answers billed for the tokens they report.
    price = load_prices().lookup(got.model)
    uncached = tokens_in - cached - written
    expected = (
        uncached * price.input_per_mtok
        + cached * price.cached_input_price
        + written * price.cache_write_price
        + tokens_out * price.output_per_mtok
    ) / 1e6
    cost = call_cost_usd(price, tokens_in, tokens_out, cached, written)
    assert cost == pytest.approx(expected)


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_errors_are_mapped_to_the_error_tree(name: str) -> None:
    kind, case, (error_type, transient, retry_after) = ERRORS[name]
    assert case.source
    with pytest.raises(TierlineError) as caught:
        asyncio.run(ask(kind, case))
    err = caught.value
    assert (err.error_type, err.transient) == (error_type, transient)
    assert err.context.get("retry_after_s") == retry_after
    if case.headers and case.status == 429:  # the quota actor learns limits from them
        sent = {k for k in case.headers if "ratelimit" in k or k.startswith("retry-after")}
        assert sent <= set(err.context.get("headers", {}))
