"""Anthropic Messages API.

POST {base_url}/messages  x-api-key: $KEY  anthropic-version: 2023-06-01

    payload = messages_body(request)                    # also a batch request's "params"
    response = parse_answer(body, request.model, where)  # also a batch result's message

`request.cache_prefix` leading messages get a `cache_control` breakpoint on their last
block, so Anthropic caches what every row shares. Usage follows `pipeline.costs`:
Anthropic's `input_tokens` counts only tokens after the breakpoint, so the cache reads
and writes are added back in; reads are `cached_input_tokens`, writes `cache_write_tokens`.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from pipeline.errors import ProviderUnavailable
from pipeline.providers.base import ChatRequest, ChatResponse, Message, Usage
from pipeline.providers.http import post_json, resolve_key
from pipeline.providers.structured import anthropic_tool, with_schema_in_prompt
from schemas.job import Timeouts

ANTHROPIC_VERSION = "2023-06-01"
_EPHEMERAL = {"type": "ephemeral"}


class AnthropicMessages:
    def __init__(
        self, *, name: str, base_url: str, api_key_env: str | None, timeouts: Timeouts
    ) -> None:
        self.name = name
        self.url = base_url.rstrip("/") + "/messages"
        self.api_key_env = api_key_env
        self.timeouts = timeouts

    def __repr__(self) -> str:
        return (
            f"AnthropicMessages(name={self.name!r}, url={self.url!r}, key from ${self.api_key_env})"
        )

    async def complete(self, session: aiohttp.ClientSession, request: ChatRequest) -> ChatResponse:
        headers = auth_headers(resolve_key(self.api_key_env, self.name))
        where = f"{self.name}/{request.model}"
        payload = messages_body(request)
        body, rate = await post_json(session, self.url, payload, headers, self.timeouts, where)
        return parse_answer(body, request.model, where, rate)


def auth_headers(key: str | None) -> dict[str, str]:
    headers = {"anthropic-version": ANTHROPIC_VERSION}
    if key:
        headers["x-api-key"] = key
    return headers


def _system(messages: list[tuple[int, Message]], marked: int) -> str | list[dict[str, Any]]:
    """System messages as one string, or as text blocks when one of them ends the cached
    prefix (the blocks carry the same separators, so the text is the same)."""
    if all(i != marked for i, _ in messages):
        return "\n\n".join(m.content for _, m in messages)
    blocks: list[dict[str, Any]] = []
    for k, (i, m) in enumerate(messages):
        text = m.content + ("\n\n" if k < len(messages) - 1 else "")
        block: dict[str, Any] = {"type": "text", "text": text}
        if i == marked:
            block["cache_control"] = dict(_EPHEMERAL)
        blocks.append(block)
    return blocks


def messages_body(request: ChatRequest) -> dict[str, Any]:
    """The Messages body of `request` (a batch request's `params` is the same)."""
    messages = request.messages
    schema = request.output_schema
    if schema is not None and schema.mode != "native":
        messages = with_schema_in_prompt(messages, schema)
    marked = min(request.cache_prefix, len(messages)) - 1  # -1: nothing cached
    system = [(i, m) for i, m in enumerate(messages) if m.role == "system"]
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if m.role == "system":
            continue
        content: str | list[dict[str, Any]] = m.content
        if i == marked:
            content = [{"type": "text", "text": m.content, "cache_control": dict(_EPHEMERAL)}]
        turns.append({"role": m.role, "content": content})
    payload: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "messages": turns,
    }
    if any(m.content for _, m in system):
        payload["system"] = _system(system, marked)
    if schema is not None and schema.mode == "native":
        payload["tools"], payload["tool_choice"] = anthropic_tool(schema)
    return payload


def parse_answer(
    body: dict[str, Any], model: str, where: str, rate: dict[str, str] | None = None
) -> ChatResponse:
    """A Messages answer as a `ChatResponse`; `ProviderUnavailable` when it has no text.
    A tool call (structured output) is its input as JSON text."""
    try:
        tools = [p["input"] for p in body["content"] if p.get("type") == "tool_use"]
        text = (
            json.dumps(tools[0], ensure_ascii=False)
            if tools
            else "".join(p.get("text", "") for p in body["content"] if p.get("type") == "text")
        )
        usage = body.get("usage") or {}
        read = int(usage.get("cache_read_input_tokens") or 0)
        written = int(usage.get("cache_creation_input_tokens") or 0)
        return ChatResponse(
            text=text,
            usage=Usage(
                int(usage.get("input_tokens", 0)) + read + written,
                int(usage.get("output_tokens", 0)),
                read,
                written,
            ),
            model=str(body.get("model", model)),
            finish_reason=str(body.get("stop_reason") or "end_turn"),
            rate_headers=rate or {},
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ProviderUnavailable(f"{where}: answer lacks content[].text") from None
