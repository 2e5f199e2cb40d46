"""The Azure OpenAI adapter: the URL a deployment gets, the key in `api-key`, Azure's
answers and errors read as OpenAI's, and the key in no error text."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pipeline.errors import AuthFailed, BadRequest, ConfigError, RateLimited, TierlineError
from pipeline.providers.azure import AzureChat
from pipeline.providers.base import ChatRequest, ChatResponse, Message
from pipeline.providers.registry import create
from pipeline.sim import KeyLimits, SimConfig, SimServer
from schemas.azure import AzureOptions
from schemas.job import Timeouts
from tests.conftest import CANARY_KEYS

GOOD, BAD = CANARY_KEYS["TIERLINE_CANARY_GOOD"], CANARY_KEYS["TIERLINE_CANARY_BAD"]
OPTIONS = AzureOptions(api_version="2024-10-21", deployments={"gpt-4o-mini": "mini-prod"})
ASK = ChatRequest("gpt-4o-mini", (Message("user", "I was billed twice"),), 16)


def adapter(endpoint: str, key_env: str = "TIERLINE_CANARY_GOOD", **options: Any) -> AzureChat:
    azure = OPTIONS.model_copy(update=options) if options else OPTIONS
    made = create(
        "azure",
        name="azure",
        base_url=endpoint,
        api_key_env=key_env,
        timeouts=Timeouts(total_s=5),
        azure=azure,
    )
    assert isinstance(made, AzureChat)
    return made


def test_a_model_goes_to_its_deployment_url_with_the_api_version() -> None:
    chat = adapter("https://my-resource.openai.azure.com/")
    assert chat.url_for("gpt-4o-mini") == (
        "https://my-resource.openai.azure.com/openai/deployments/mini-prod/chat/completions"
        "?api-version=2024-10-21"
    )
    with pytest.raises(ConfigError, match=r"providers\.azure\.azure\.deployments\.gpt-4o:"):
        chat.url_for("gpt-4o")
    assert GOOD not in repr(chat) and "TIERLINE_CANARY_GOOD" in repr(chat)


async def _capture(request: ChatRequest) -> tuple[dict[str, Any], ChatResponse]:
    """What the adapter sends, to a server that answers as Azure does."""
    seen: dict[str, Any] = {}

    async def reply(r: web.Request) -> web.Response:
        seen.update(path=r.path, query=dict(r.query), headers=dict(r.headers))
        seen["body"] = await r.json()
        answer = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini-2024-07-18",  # Azure names the model version, not ours
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "billing"},
                    "finish_reason": "stop",
                    "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}},
                }
            ],
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
        }
        headers = {"x-ratelimit-remaining-requests": "19", "x-ratelimit-remaining-tokens": "980"}
        return web.json_response(answer, headers=headers)

    app = web.Application()
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", reply)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        endpoint = str(server.make_url("")).rstrip("/")
        got = await adapter(endpoint).complete(session, request)
    return seen, got


def test_the_key_goes_in_api_key_and_the_body_is_openais() -> None:
    seen, got = asyncio.run(_capture(ASK))
    assert seen["path"] == "/openai/deployments/mini-prod/chat/completions"
    assert seen["query"] == {"api-version": "2024-10-21"}
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["api-key"] == GOOD and "authorization" not in headers
    body = seen["body"]
    assert body["model"] == "mini-prod" and body["max_tokens"] == 16
    assert body["messages"] == [{"role": "user", "content": "I was billed twice"}]
    assert (got.text, got.usage.input_tokens, got.usage.output_tokens) == ("billing", 12, 1)
    assert got.rate_headers == {
        "x-ratelimit-remaining-requests": "19",
        "x-ratelimit-remaining-tokens": "980",
    }


async def _fail(
    config: SimConfig, key_env: str, model: str = "gpt-4o-mini", **options: Any
) -> TierlineError:
    async with SimServer(config) as sim, aiohttp.ClientSession() as session:
        chat = adapter(sim.root_url, key_env, **options)
        request = ChatRequest(model, ASK.messages, 16)
        for _ in range(3):  # the third call of a 2-rpm key is refused
            try:
                await chat.complete(session, request)
            except TierlineError as exc:
                return exc
    raise AssertionError("no call failed")


def _texts(err: TierlineError) -> str:
    return " ".join([str(err), repr(err), json.dumps(err.context, default=str)])


SIM = SimConfig(
    require_api_key=True, api_keys=[GOOD], azure_deployments={"mini-prod": "gpt-4o-mini"}
)


def test_azure_errors_map_to_the_error_tree_and_never_carry_the_key() -> None:
    wrong_key = asyncio.run(_fail(SIM, "TIERLINE_CANARY_BAD"))
    assert isinstance(wrong_key, AuthFailed) and "Access denied" in str(wrong_key)
    missing = asyncio.run(_fail(SIM, "TIERLINE_CANARY_GOOD", deployments={"gpt-4o-mini": "gone"}))
    assert isinstance(missing, BadRequest) and not missing.transient
    assert "DeploymentNotFound" in str(missing)
    limited = SIM.model_copy(update={"default_limits": KeyLimits(rpm=2)})
    throttled = asyncio.run(_fail(limited, "TIERLINE_CANARY_GOOD"))
    assert isinstance(throttled, RateLimited) and throttled.transient
    # retry-after-ms is the more precise of Azure's two, and wins.
    headers = throttled.context["headers"]
    assert throttled.context["retry_after_s"] == int(headers["retry-after-ms"]) / 1000
    assert {"retry-after", "x-ratelimit-remaining-requests"} <= set(headers)
    for err in (wrong_key, missing, throttled):
        assert GOOD not in _texts(err) and BAD not in _texts(err)
