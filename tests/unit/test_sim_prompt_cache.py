"""Cached tokens as the simulator reports them: OpenAI's automatic prefix caching (1,024
tokens, 128-token steps, per prompt_cache_key) and Anthropic's cache_control breakpoints
(writes on first sight, reads after, input_tokens counting only the rest)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from pipeline.sim import PromptCaching, SimConfig, build_app
from pipeline.sim.generate import input_tokens
from pipeline.sim.prompt_cache import common_prefix_length, prefix_tokens, shared_prefix

# A shared instruction block of about 1,500 tokens (gpt-4o-mini counts exactly).
POLICY = "Classify the ticket.\nAllowed labels: billing | technical | account | other\n" + (
    "Read the whole ticket, weigh every sentence, and pick the single best label. " * 100
)
ANTHROPIC = {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant"}
Client = TestClient[Any, Any]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def sim(config: SimConfig, clock: FakeClock) -> AsyncIterator[Client]:
    async with TestClient(TestServer(build_app(config, clock))) as client:
        yield client


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def openai(text: str, system: str = POLICY, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": text}]
    return {"model": "gpt-4o-mini", "messages": messages, "max_tokens": 8, **extra}


async def usage(client: Client, payload: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post("/v1/chat/completions", json=payload)
    assert resp.status == 200, await resp.text()
    return dict((await resp.json())["usage"])


def test_prefix_helpers() -> None:
    assert common_prefix_length("abcdef", "abcxyz") == 3
    assert common_prefix_length("abc", "abc") == 3 and common_prefix_length("", "abc") == 0
    a = (("system", "same"), ("user", "hello there"))
    assert shared_prefix(a, (("system", "same"), ("user", "hello world"))) == (1, 6)
    assert shared_prefix(a, (("user", "same"),)) == (0, 0)
    assert prefix_tokens(a, "gpt-4o-mini", 2, 0) == input_tokens(a, "gpt-4o-mini") - 3


def test_openai_second_call_with_a_long_shared_prefix_is_cached_in_128_token_steps() -> None:
    async def go() -> None:
        async with sim(SimConfig(), FakeClock()) as client:
            first = await usage(client, openai("I was billed twice"))
            assert first["prompt_tokens_details"]["cached_tokens"] == 0
            second = await usage(client, openai("The app crashes on start"))
            cached = second["prompt_tokens_details"]["cached_tokens"]
            shared = prefix_tokens((("system", POLICY),), "gpt-4o-mini", 1, 0)
            assert cached == shared // 128 * 128 and cached >= 1024
            assert cached < second["prompt_tokens"]  # prompt_tokens still counts them
            same = await usage(client, openai("The app crashes on start"))
            whole = same["prompt_tokens"] - 3  # every message; the reply priming is never cached
            assert same["prompt_tokens_details"]["cached_tokens"] == whole // 128 * 128
            stats = await (await client.get("/stats")).json()
            assert (
                stats["total"]["tokens_cached"]
                == cached + same["prompt_tokens_details"]["cached_tokens"]
            )

    run(go)


def test_openai_short_prompts_other_keys_and_old_entries_are_never_cached() -> None:
    async def go() -> None:
        clock = FakeClock()
        async with sim(SimConfig(), clock) as client:
            short = "Classify the ticket.\nAllowed labels: billing | other"
            for _ in range(3):
                again = await usage(client, openai("I was billed twice", system=short))
                assert again["prompt_tokens_details"]["cached_tokens"] == 0
            await usage(client, openai("first", prompt_cache_key="job-a"))
            other = await usage(client, openai("second", prompt_cache_key="job-b"))
            assert other["prompt_tokens_details"]["cached_tokens"] == 0
            warm = await usage(client, openai("third", prompt_cache_key="job-a"))
            assert warm["prompt_tokens_details"]["cached_tokens"] >= 1024
            clock.now += PromptCaching().openai_ttl_s + 1
            cold = await usage(client, openai("fourth", prompt_cache_key="job-a"))
            assert cold["prompt_tokens_details"]["cached_tokens"] == 0

    run(go)


def anthropic(text: str, *, system: object, model: str = "claude-3-5-haiku") -> dict[str, Any]:
    messages = [{"role": "user", "content": text}]
    return {"model": model, "max_tokens": 8, "system": system, "messages": messages}


def marked(text: str, ttl: str | None = None) -> list[dict[str, Any]]:
    control = {"type": "ephemeral"} if ttl is None else {"type": "ephemeral", "ttl": ttl}
    return [{"type": "text", "text": text, "cache_control": control}]


async def message_usage(client: Client, payload: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post("/v1/messages", json=payload, headers=ANTHROPIC)
    assert resp.status == 200, await resp.text()
    return dict((await resp.json())["usage"])


def test_anthropic_breakpoint_writes_then_reads_and_input_tokens_counts_the_rest() -> None:
    async def go() -> None:
        clock = FakeClock()
        async with sim(SimConfig(), clock) as client:
            plain = await message_usage(client, anthropic("billed twice", system=POLICY))
            total = plain["input_tokens"]
            assert plain["cache_creation_input_tokens"] == plain["cache_read_input_tokens"] == 0
            first = await message_usage(client, anthropic("billed twice", system=marked(POLICY)))
            written = first["cache_creation_input_tokens"]
            assert written >= 1024 and first["cache_read_input_tokens"] == 0
            assert first["cache_creation"]["ephemeral_5m_input_tokens"] == written
            assert first["input_tokens"] + written == total  # same prompt, split differently
            second = await message_usage(client, anthropic("app crash", system=marked(POLICY)))
            assert second["cache_read_input_tokens"] == written
            assert second["cache_creation_input_tokens"] == 0
            assert 0 < second["input_tokens"] < 50  # only the row's own text is fresh input
            clock.now += 299  # each read keeps the entry another 5 minutes
            assert (await message_usage(client, anthropic("x", system=marked(POLICY))))[
                "cache_read_input_tokens"
            ] == written
            clock.now += 301
            expired = await message_usage(client, anthropic("y", system=marked(POLICY)))
            assert expired["cache_read_input_tokens"] == 0
            assert expired["cache_creation_input_tokens"] == written

    run(go)


def test_anthropic_short_prefixes_unmarked_prompts_and_too_many_marks() -> None:
    async def go() -> None:
        async with sim(SimConfig(), FakeClock()) as client:
            for _ in range(2):  # below the 1,024-token minimum: never cached
                short = await message_usage(client, anthropic("x", system=marked("Be brief.")))
                assert short["cache_creation_input_tokens"] == short["cache_read_input_tokens"] == 0
                unmarked = await message_usage(client, anthropic("x", system=POLICY))
                assert unmarked["cache_read_input_tokens"] == 0
            hour = await message_usage(client, anthropic("x", system=marked(POLICY, "1h")))
            assert hour["cache_creation"]["ephemeral_1h_input_tokens"] > 0
            five = [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}] * 5
            resp = await client.post(
                "/v1/messages", json=anthropic("x", system=five), headers=ANTHROPIC
            )
            assert resp.status == 400
            assert "maximum of 4" in (await resp.json())["error"]["message"]

    run(go)


def test_min_tokens_is_configurable() -> None:
    async def go() -> None:
        config = SimConfig(prompt_cache=PromptCaching(min_tokens=2048))
        async with sim(config, FakeClock()) as client:
            await usage(client, openai("first"))
            second = await usage(client, openai("second"))
            assert second["prompt_tokens_details"]["cached_tokens"] == 0  # ~1,500 < 2,048
            off = SimConfig(prompt_cache=PromptCaching(enabled=False))
            await client.post("/admin/config", data=off.model_dump_json())
            await message_usage(client, anthropic("x", system=marked(POLICY)))
            again = await message_usage(client, anthropic("y", system=marked(POLICY)))
            assert again["cache_read_input_tokens"] == 0

    run(go)
