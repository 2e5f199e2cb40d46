"""The simulator over HTTP on loopback: both wire formats, limits, stats, admin."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from pipeline.sim import Faults, KeyLimits, Latency, ModelBehaviour, SimConfig, build_app
from pipeline.sim.generate import input_tokens

SYSTEM = "Classify the ticket.\nAllowed labels: billing | technical | account | other"
ANTHROPIC = {"anthropic-version": "2023-06-01"}
WALL = 1_700_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def sim(
    config: SimConfig, clock: Callable[[], float] = time.monotonic
) -> AsyncIterator[TestClient[Any, Any]]:
    app = build_app(config, clock, wall_clock=lambda: WALL)
    async with TestClient(TestServer(app)) as client:
        yield client


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def chat(text: str, model: str = "gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
    return {"model": model, "messages": messages, **extra}


def test_openai_round_trip_answers_the_label_with_usage() -> None:
    async def go() -> None:
        async with sim(SimConfig()) as client:
            resp = await client.post("/v1/chat/completions", json=chat("I was billed twice"))
            assert resp.status == 200
            body = await resp.json()
            assert body["object"] == "chat.completion" and body["model"] == "gpt-4o-mini"
            choice = body["choices"][0]
            assert choice["message"] == {"role": "assistant", "content": "billing"}
            assert choice["finish_reason"] == "stop"
            usage = body["usage"]
            msgs = (("system", SYSTEM), ("user", "I was billed twice"))
            assert usage["prompt_tokens"] == input_tokens(msgs, "gpt-4o-mini")
            assert usage["completion_tokens"] >= 1
            assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    run(go)


def test_max_tokens_cuts_the_answer() -> None:
    async def go() -> None:
        async with sim(SimConfig()) as client:
            long_text = "The server is down. " * 50
            payload = chat(long_text, max_completion_tokens=2)
            payload["messages"][0]["content"] = "Summarise in at most 100 words."
            body = await (await client.post("/v1/chat/completions", json=payload)).json()
            assert body["choices"][0]["finish_reason"] == "length"
            assert body["usage"]["completion_tokens"] == 2
            assert long_text.startswith(body["choices"][0]["message"]["content"])

    run(go)


def test_bad_requests_get_400_in_the_format_of_the_route() -> None:
    async def go() -> None:
        async with sim(SimConfig()) as client:
            resp = await client.post("/v1/chat/completions", data=b"{not json")
            assert resp.status == 400
            assert "JSON" in (await resp.json())["error"]["message"]
            resp = await client.post("/v1/chat/completions", json={"model": "gpt-4o-mini"})
            assert resp.status == 400 and "messages" in (await resp.json())["error"]["message"]
            resp = await client.post("/v1/messages", json=chat("x"), headers=ANTHROPIC)
            body = await resp.json()
            assert resp.status == 400
            assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
            assert "max_tokens" in body["error"]["message"]  # required by Anthropic

    run(go)


def test_api_keys_are_checked_when_required() -> None:
    async def go() -> None:
        config = SimConfig(require_api_key=True, api_keys=["sk-good"])
        async with sim(config) as client:
            url = "/v1/chat/completions"
            assert (await client.post(url, json=chat("x"))).status == 401
            bad = {"Authorization": "Bearer sk-bad"}
            assert (await client.post(url, json=chat("x"), headers=bad)).status == 401
            good = {"Authorization": "Bearer sk-good"}
            assert (await client.post(url, json=chat("x"), headers=good)).status == 200
            resp = await client.post(
                "/v1/messages", json=chat("x", max_tokens=5), headers=ANTHROPIC
            )
            assert (await resp.json())["error"]["type"] == "authentication_error"

    run(go)


def test_rpm_limit_answers_429_with_headers_and_recovers_with_time() -> None:
    async def go() -> None:
        clock = FakeClock()
        config = SimConfig(limits={"sk-a": KeyLimits(rpm=3, tpm=10_000)})
        headers = {"Authorization": "Bearer sk-a"}
        async with sim(config, clock) as client:
            for remaining in ("2", "1", "0"):
                resp = await client.post("/v1/chat/completions", json=chat("x"), headers=headers)
                assert resp.status == 200
                assert resp.headers["x-ratelimit-limit-requests"] == "3"
                assert resp.headers["x-ratelimit-remaining-requests"] == remaining
                assert resp.headers["x-ratelimit-limit-tokens"] == "10000"
            resp = await client.post("/v1/chat/completions", json=chat("x"), headers=headers)
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "20"
            assert resp.headers["x-ratelimit-remaining-requests"] == "0"
            assert resp.headers["x-ratelimit-reset-requests"] == "1m0s"
            assert "x-ratelimit-remaining-tokens" in resp.headers
            assert (await resp.json())["error"]["code"] == "rate_limit_exceeded"
            # Other keys are not limited by sk-a's tier.
            other = await client.post("/v1/chat/completions", json=chat("x"))
            assert other.status == 200 and "x-ratelimit-limit-requests" not in other.headers
            clock.now += 20
            resp = await client.post("/v1/chat/completions", json=chat("x"), headers=headers)
            assert resp.status == 200

    run(go)


def test_concurrency_limit_rejects_the_request_over_the_limit() -> None:
    async def go() -> None:
        config = SimConfig(
            latency=Latency(mean_ms=500), default_limits=KeyLimits(max_concurrency=2)
        )
        async with sim(config) as client:
            sends = [client.post("/v1/chat/completions", json=chat(f"t{i}")) for i in range(3)]
            statuses = sorted([r.status for r in await asyncio.gather(*sends)])
            assert statuses == [200, 200, 429]
            assert (await client.post("/v1/chat/completions", json=chat("t"))).status == 200

    run(go)


def test_anthropic_round_trip_with_rate_headers() -> None:
    async def go() -> None:
        clock = FakeClock()
        config = SimConfig(default_limits=KeyLimits(rpm=2))
        headers = {**ANTHROPIC, "x-api-key": "sk-ant"}
        payload = {
            "model": "claude-3-5-haiku",
            "max_tokens": 50,
            "system": [{"type": "text", "text": SYSTEM}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "technical fault"}]}
            ],
        }
        async with sim(config, clock) as client:
            resp = await client.post("/v1/messages", json=payload, headers=headers)
            assert resp.status == 200
            body = await resp.json()
            assert body["type"] == "message" and body["role"] == "assistant"
            assert body["content"] == [{"type": "text", "text": "technical"}]
            assert body["stop_reason"] == "end_turn"
            assert set(body["usage"]) >= {"input_tokens", "output_tokens"}
            assert resp.headers["anthropic-ratelimit-requests-remaining"] == "1"
            await client.post("/v1/messages", json=payload, headers=headers)
            resp = await client.post("/v1/messages", json=payload, headers=headers)
            assert resp.status == 429 and resp.headers["retry-after"] == "30"
            assert (await resp.json())["error"]["type"] == "rate_limit_error"
            reset = datetime.fromtimestamp(WALL + 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            assert resp.headers["anthropic-ratelimit-requests-reset"] == reset

    run(go)


def test_anthropic_overloaded_is_529() -> None:
    async def go() -> None:
        config = SimConfig(models={"claude-*": ModelBehaviour(faults=Faults(error_rates={529: 1}))})
        async with sim(config) as client:
            payload = {
                "model": "claude-sonnet-4",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}],
            }
            resp = await client.post("/v1/messages", json=payload, headers=ANTHROPIC)
            assert resp.status == 529
            body = await resp.json()
            assert body == {
                "type": "error",
                "error": {"type": "overloaded_error", "message": body["error"]["message"]},
            }

    run(go)


def test_stats_count_requests_tokens_and_repeated_prompts() -> None:
    async def go() -> None:
        config = SimConfig(limits={"sk-a": KeyLimits(rpm=2)})
        headers = {"Authorization": "Bearer sk-a"}
        async with sim(config) as client:
            usage = 0
            for text in ("one", "two", "one"):
                resp = await client.post("/v1/chat/completions", json=chat(text), headers=headers)
                if resp.status == 200:
                    usage += (await resp.json())["usage"]["prompt_tokens"]
            long_key = {"Authorization": "Bearer sk-live-0123456789abcdef"}
            await client.post(
                "/v1/chat/completions", json=chat("one", model="gpt-4o"), headers=long_key
            )
            stats = await (await client.get("/stats")).json()
            assert stats["total"]["requests"] == 4 and stats["total"]["ok"] == 3
            assert stats["models"]["gpt-4o-mini"]["requests"] == 3
            assert stats["models"]["gpt-4o-mini"]["rate_limited"] == 1
            assert stats["models"]["gpt-4o-mini"]["tokens_in"] == usage
            assert stats["keys"]["sk-a"]["rate_limited"] == 1
            assert stats["keys"]["sk-...cdef"]["ok"] == 1  # secrets are masked
            assert "sk-live-0123456789abcdef" not in str(stats)
            assert stats["distinct_prompts"] == 3  # the model is part of the prompt's identity
            assert stats["repeated_prompts"] == 1
            assert stats["repeated_answers"] == 0  # the repeat was refused, not paid twice
            await client.post("/admin/reset-stats")
            stats = await (await client.get("/stats")).json()
            assert stats["total"]["requests"] == 0 and stats["distinct_prompts"] == 0

    run(go)


def test_admin_config_changes_behaviour_at_run_time() -> None:
    async def go() -> None:
        async with sim(SimConfig()) as client:
            assert (await client.post("/v1/chat/completions", json=chat("x"))).status == 200
            throttled = SimConfig(
                models={
                    "gpt-4o-mini": ModelBehaviour(
                        faults=Faults(error_rates={429: 1.0}, retry_after_s=60)
                    )
                }
            )
            resp = await client.post("/admin/config", data=throttled.model_dump_json())
            assert resp.status == 200
            resp = await client.post("/v1/chat/completions", json=chat("x"))
            assert resp.status == 429 and resp.headers["Retry-After"] == "60"
            other = await client.post("/v1/chat/completions", json=chat("x", model="gpt-4o"))
            assert other.status == 200
            bad = await client.post("/admin/config", json={"seed": 1, "sed": 2})
            assert bad.status == 400
            assert "sed" in str((await bad.json())["error"]["details"])
            current = await (await client.get("/admin/config")).json()
            assert current["models"]["gpt-4o-mini"]["faults"]["error_rates"] == {"429": 1.0}
            await client.post("/admin/config", json={})
            assert (await client.post("/v1/chat/completions", json=chat("x"))).status == 200

    run(go)


def test_models_lists_the_price_table_and_the_configured_names() -> None:
    async def go() -> None:
        config = SimConfig(models={"gpt-small": ModelBehaviour(), "cheap-*": ModelBehaviour()})
        async with sim(config) as client:
            body = await (await client.get("/v1/models")).json()
            names = [m["id"] for m in body["data"]]
            assert {"gpt-small", "gpt-5", "claude-haiku-4-5", "gemini-2.5-flash"} <= set(names)
            assert "cheap-*" not in names and names == sorted(names)
            body = await (await client.get("/v1/models", headers=ANTHROPIC)).json()
            assert body["data"][0]["type"] == "model" and body["has_more"] is False
        async with sim(SimConfig()) as client:  # alone, as `tierline sim serve` runs it
            body = await (await client.get("/v1/models")).json()
            assert "gpt-4o-mini" in [m["id"] for m in body["data"]]

    run(go)
