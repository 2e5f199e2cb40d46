"""Anthropic Messages API.

POST {base_url}/messages  x-api-key: $KEY  anthropic-version: 2023-06-01
"""

from __future__ import annotations

from typing import Any

import aiohttp

from pipeline.errors import ProviderUnavailable
from pipeline.providers.base import ChatRequest, ChatResponse, Usage
from pipeline.providers.http import post_json, resolve_key
from schemas.job import Timeouts

ANTHROPIC_VERSION = "2023-06-01"


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
        key = resolve_key(self.api_key_env, self.name)
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if key:
            headers["x-api-key"] = key
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        payload: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "messages": [
                {"role": m.role, "content": m.content}
                for m in request.messages
                if m.role != "system"
            ],
        }
        if system:
            payload["system"] = system
        where = f"{self.name}/{request.model}"
        body, rate = await post_json(session, self.url, payload, headers, self.timeouts, where)
        try:
            text = "".join(
                part.get("text", "") for part in body["content"] if part.get("type") == "text"
            )
            usage = body.get("usage") or {}
            return ChatResponse(
                text=text,
                usage=Usage(
                    int(usage.get("input_tokens", 0)),
                    int(usage.get("output_tokens", 0)),
                    int(usage.get("cache_read_input_tokens") or 0),
                ),
                model=str(body.get("model", request.model)),
                finish_reason=str(body.get("stop_reason") or "end_turn"),
                rate_headers=rate,
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ProviderUnavailable(f"{where}: answer lacks content[].text") from None
