"""OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, Groq, Together, the sim).

POST {base_url}/chat/completions  Authorization: Bearer $KEY

    payload = chat_body(request)                      # also a batch line's "body"
    response = parse_answer(body, request.model, where)  # also a batch output's body
"""

from __future__ import annotations

from typing import Any

import aiohttp

from pipeline.errors import ProviderUnavailable
from pipeline.providers.base import ChatRequest, ChatResponse, Usage
from pipeline.providers.http import post_json, resolve_key
from pipeline.providers.structured import (
    openai_response_format,
    schema_in_prompt,
    with_schema_in_prompt,
)
from schemas.job import Timeouts


class OpenAIChat:
    def __init__(
        self, *, name: str, base_url: str, api_key_env: str | None, timeouts: Timeouts
    ) -> None:
        self.name = name
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key_env = api_key_env
        self.timeouts = timeouts

    def __repr__(self) -> str:  # never show a key, only where it comes from
        return f"OpenAIChat(name={self.name!r}, url={self.url!r}, key from ${self.api_key_env})"

    async def complete(self, session: aiohttp.ClientSession, request: ChatRequest) -> ChatResponse:
        headers = auth_headers(resolve_key(self.api_key_env, self.name))
        where = f"{self.name}/{request.model}"
        payload = chat_body(request)
        body, rate = await post_json(session, self.url, payload, headers, self.timeouts, where)
        return parse_answer(body, request.model, where, rate)


def auth_headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def chat_body(request: ChatRequest) -> dict[str, Any]:
    """The chat-completions body of `request` (a batch line sends the same)."""
    messages = request.messages
    schema = request.output_schema
    if schema is not None and schema_in_prompt(schema):
        messages = with_schema_in_prompt(messages, schema)
    payload: dict[str, Any] = {
        "model": request.model,
        "messages": [{"role": m.role, "content": m.content} for m in messages],
    }
    if request.reasoning:
        # Reasoning models refuse max_tokens and any temperature but the default (400).
        payload["max_completion_tokens"] = request.max_tokens
        if request.reasoning_effort is not None:
            payload["reasoning_effort"] = request.reasoning_effort
    else:
        payload["max_tokens"] = request.max_tokens
        payload["temperature"] = request.temperature
    if request.logprobs:  # only when asked: not every compatible server accepts it
        payload["logprobs"] = True
    if request.cache_key is not None:  # likewise: older compatible servers reject it
        payload["prompt_cache_key"] = request.cache_key
    if schema is not None and schema.mode != "prompt":
        payload["response_format"] = openai_response_format(schema)
    return payload


def parse_answer(
    body: dict[str, Any], model: str, where: str, rate: dict[str, str] | None = None
) -> ChatResponse:
    """A chat completion as a `ChatResponse`; `ProviderUnavailable` when it has no answer."""
    try:
        choice = body["choices"][0]
        text = choice["message"]["content"] or ""
        usage = body.get("usage") or {}
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        # Hidden reasoning is inside completion_tokens already: billed as output.
        thought = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
        return ChatResponse(
            text=text,
            usage=Usage(
                int(usage.get("prompt_tokens", 0)),
                int(usage.get("completion_tokens", 0)),
                int(cached),
                reasoning_tokens=int(thought),
            ),
            model=str(body.get("model", model)),
            finish_reason=str(choice.get("finish_reason") or "stop"),
            mean_logprob=_mean_logprob(choice),
            rate_headers=rate or {},
        )
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        raise ProviderUnavailable(f"{where}: answer lacks choices[0].message.content") from None


def _mean_logprob(choice: dict[str, Any]) -> float | None:
    content = (choice.get("logprobs") or {}).get("content") or []
    values = [float(t["logprob"]) for t in content if isinstance(t, dict) and "logprob" in t]
    return sum(values) / len(values) if values else None
