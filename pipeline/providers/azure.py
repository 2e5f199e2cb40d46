"""Azure OpenAI chat completions: OpenAI's bodies, Azure's URLs and key header.

POST {endpoint}/openai/deployments/{deployment}/chat/completions?api-version=V  api-key: $KEY

    adapter = AzureChat(name="azure", base_url="https://my-resource.openai.azure.com",
                        api_key_env="AZURE_OPENAI_API_KEY", timeouts=Timeouts(),
                        azure=AzureOptions(api_version="2024-10-21",
                                           deployments={"gpt-4o-mini": "mini-prod"}))
    adapter.url_for("gpt-4o-mini")   # '.../openai/deployments/mini-prod/chat/completions?...'

The request and answer bodies are OpenAI's (`openai.chat_body`, `openai.parse_answer`);
the deployment in the URL chooses the model, and the body names it too, as the official
SDK's Azure client sends it. Azure reports `x-ratelimit-remaining-requests/tokens` but no
limits, and `retry-after` / `retry-after-ms` on a 429: `http.post_json` keeps them all.
"""

from __future__ import annotations

from urllib.parse import quote

import aiohttp

from pipeline.errors import ConfigError
from pipeline.providers.base import ChatRequest, ChatResponse
from pipeline.providers.http import post_json, resolve_key
from pipeline.providers.openai import chat_body, parse_answer
from schemas.azure import AzureOptions
from schemas.job import Timeouts


class AzureChat:
    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key_env: str | None,
        timeouts: Timeouts,
        azure: AzureOptions,
    ) -> None:
        self.name = name
        self.endpoint = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.timeouts = timeouts
        self.azure = azure

    def __repr__(self) -> str:  # never show a key, only where it comes from
        return (
            f"AzureChat(name={self.name!r}, endpoint={self.endpoint!r}, "
            f"api_version={self.azure.api_version!r}, key from ${self.api_key_env})"
        )

    def deployment(self, model: str) -> str:
        try:
            return self.azure.deployments[model]
        except KeyError:
            # The spec check stops this before a job runs; a caller that builds requests
            # itself gets the same fix.
            raise ConfigError(
                f"provider {self.name!r}: no Azure deployment for model {model!r}; add "
                f"providers.{self.name}.azure.deployments.{model}: <deployment name>"
            ) from None

    def url_for(self, model: str) -> str:
        deployment = quote(self.deployment(model), safe="")
        version = quote(self.azure.api_version, safe="")
        return (
            f"{self.endpoint}/openai/deployments/{deployment}/chat/completions"
            f"?api-version={version}"
        )

    async def complete(self, session: aiohttp.ClientSession, request: ChatRequest) -> ChatResponse:
        url = self.url_for(request.model)
        key = resolve_key(self.api_key_env, self.name)
        headers = {"api-key": key} if key else {}
        where = f"{self.name}/{request.model}"
        payload = chat_body(request)
        payload["model"] = self.deployment(request.model)
        body, rate = await post_json(session, url, payload, headers, self.timeouts, where)
        return parse_answer(body, request.model, where, rate)
