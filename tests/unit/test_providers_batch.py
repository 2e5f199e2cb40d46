"""The batch seam end to end: OpenAIBatch and AnthropicBatch against the simulator on
loopback, time moved by a fake clock; and the Anthropic adapter's cache usage."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from pipeline.errors import BadRequest, ProviderUnavailable
from pipeline.providers import registry
from pipeline.providers.anthropic import AnthropicMessages, messages_body, parse_answer
from pipeline.providers.anthropic_batch import AnthropicBatch
from pipeline.providers.base import ChatRequest, Message
from pipeline.providers.batch import (
    BatchItem,
    BatchLimits,
    BatchOutcome,
    BatchProvider,
    missing_ids,
)
from pipeline.providers.openai import OpenAIChat, chat_body
from pipeline.providers.openai_batch import OpenAIBatch
from pipeline.sim import BatchBehaviour, Faults, ModelBehaviour, SimConfig, SimServer
from schemas.job import Timeouts

SYSTEM = "Classify the ticket.\nAllowed labels: billing | technical | account | other"
# Validation 10 s, answers over 100 s, finalizing 10 s (provider time); 10x the clock.
TIMING = BatchBehaviour(validate_s=10, turnaround_s=100, finalize_s=10, cancel_s=10, time_scale=10)
TICKETS = ["I was billed twice", "a technical fault", "reset my password", "hello there"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


Env = tuple[SimServer, aiohttp.ClientSession, FakeClock]


@asynccontextmanager
async def sim(config: SimConfig) -> AsyncIterator[Env]:
    clock = FakeClock()
    async with SimServer(config, clock=clock) as server, aiohttp.ClientSession() as session:
        yield server, session, clock


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def item(custom_id: str, text: str, model: str = "gpt-4o-mini", max_tokens: int = 16) -> BatchItem:
    messages = (Message("system", SYSTEM), Message("user", text))
    return BatchItem(custom_id, ChatRequest(model, messages, max_tokens))


def adapter(kind: str, server: SimServer, limits: BatchLimits | None = None) -> BatchProvider:
    return registry.create_batch(
        kind,
        name=kind,
        base_url=server.base_url,
        api_key_env=None,
        timeouts=Timeouts(),
        limits=limits,
    )


def by_id(outcomes: list[BatchOutcome]) -> dict[str, BatchOutcome]:
    return {o.custom_id: o for o in outcomes}


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_submit_poll_and_results_matched_by_custom_id(kind: str) -> None:
    async def go() -> None:
        broken = ModelBehaviour(faults=Faults(error_rates={503: 1.0}))
        async with sim(SimConfig(batches=TIMING, models={"broken": broken})) as env:
            server, session, clock = env
            batches = adapter(kind, server)
            items = [item(f"r{i}", t) for i, t in enumerate(TICKETS)]
            items.append(item("bad", "x", max_tokens=0))  # the provider refuses this one
            if kind == "anthropic":  # Anthropic batches may mix models
                items.append(item("busy", "x", model="broken"))
            status = await batches.submit(session, items)
            assert status.state == ("submitted" if kind == "openai" else "in_progress")
            assert status.counts.total == len(items) and not status.ended
            with pytest.raises(ProviderUnavailable, match="has not ended"):
                await batches.results(session, status.id)
            clock.now += 5
            assert (await batches.retrieve(session, status.id)).state == "in_progress"
            clock.now += 10
            status = await batches.retrieve(session, status.id)
            assert status.ended and status.counts.succeeded == 4
            assert status.counts.errored == len(items) - 4
            ids = [i.custom_id for i in items]
            outcomes = by_id(await batches.results(session, status.id, expected=ids))
            assert sorted(outcomes) == sorted(ids)
            answer = outcomes["r0"].response
            assert outcomes["r0"].kind == "succeeded" and answer is not None
            assert answer.text == "billing" and answer.usage.input_tokens > 0
            assert outcomes["r1"].response is not None
            assert outcomes["r1"].response.text == "technical"
            bad = outcomes["bad"]
            assert bad.kind == "errored" and isinstance(bad.error, BadRequest)
            assert "max_tokens" in str(bad.error)
            if kind == "anthropic":
                assert isinstance(outcomes["busy"].error, ProviderUnavailable)  # transient

    run(go)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_expiry_with_half_answered_says_which_expired(kind: str) -> None:
    async def go() -> None:
        timing = TIMING.model_copy(update={"complete_fraction_before_expiry": 0.5})
        async with sim(SimConfig(batches=timing)) as (server, session, clock):
            batches = adapter(kind, server)
            status = await batches.submit(
                session, [item(f"r{i}", t) for i, t in enumerate(TICKETS)]
            )
            clock.now += 86_400 / 10
            status = await batches.retrieve(session, status.id)
            assert status.ended and status.provider_status in ("expired", "ended")
            outcomes = await batches.results(session, status.id)
            kinds = {o.custom_id: o.kind for o in outcomes}
            assert kinds == {"r0": "succeeded", "r1": "succeeded", "r2": "expired", "r3": "expired"}
            expired = by_id(outcomes)["r2"]
            assert isinstance(expired.error, ProviderUnavailable) and expired.error.transient

    run(go)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_cancel_keeps_what_was_answered(kind: str) -> None:
    async def go() -> None:
        async with sim(SimConfig(batches=TIMING)) as (server, session, clock):
            batches = adapter(kind, server)
            status = await batches.submit(
                session, [item(f"r{i}", t) for i, t in enumerate(TICKETS)]
            )
            clock.now += 6.5  # 65 provider seconds: two answered
            status = await batches.cancel(session, status.id)
            assert status.state == "cancelling"
            clock.now += 2
            status = await batches.retrieve(session, status.id)
            assert status.ended and status.counts.succeeded == 2
            kinds = sorted(o.kind for o in await batches.results(session, status.id))
            assert kinds == ["canceled", "canceled", "succeeded", "succeeded"]

    run(go)


def test_mixed_models_are_split_by_the_adapter_and_refused_by_openai() -> None:
    async def go() -> None:
        async with sim(SimConfig(batches=TIMING)) as (server, session, clock):
            batches = adapter("openai", server)
            items = [
                item("a", "x", "gpt-4o-mini"),
                item("b", "y", "gpt-4o"),
                item("c", "z", "gpt-4o-mini"),
            ]
            assert [[i.custom_id for i in g] for g in batches.split(items)] == [["a", "c"], ["b"]]
            assert len(adapter("anthropic", server).split(items)) == 1
            status = await batches.submit(session, items)  # sent unsplit on purpose
            clock.now += 2
            status = await batches.retrieve(session, status.id)
            assert status.ended and status.provider_status == "failed"
            assert any("model_mismatch" in e for e in status.errors)
            with pytest.raises(BadRequest, match="one model"):
                await batches.results(session, status.id)

    run(go)


def test_split_honours_request_and_byte_limits() -> None:
    items = [item(f"r{i}", "word " * 20) for i in range(7)]
    limits = BatchLimits(max_requests=3, max_bytes=10_000_000, one_model_per_batch=True)
    batches = OpenAIBatch(
        name="o", base_url="http://x/v1", api_key_env=None, timeouts=Timeouts(), limits=limits
    )
    assert [len(g) for g in batches.split(items)] == [3, 3, 1]
    one = len(batches.split(items[:1])[0])
    assert one == 1
    tight = BatchLimits(max_requests=100, max_bytes=900, one_model_per_batch=False)
    small = AnthropicBatch(
        name="a", base_url="http://x/v1", api_key_env=None, timeouts=Timeouts(), limits=tight
    )
    groups = small.split(items)
    assert sum(len(g) for g in groups) == 7 and all(len(g) <= 3 for g in groups)
    too_big = BatchLimits(max_requests=100, max_bytes=100, one_model_per_batch=False)
    tiny = AnthropicBatch(
        name="a", base_url="http://x/v1", api_key_env=None, timeouts=Timeouts(), limits=too_big
    )
    with pytest.raises(BadRequest, match="at most 100 bytes"):
        tiny.split(items)


@pytest.mark.parametrize(
    ("kind", "field"), [("openai", "openai_max_bytes"), ("anthropic", "anthropic_max_bytes")]
)
def test_oversized_batch_is_a_terminal_error_naming_the_limit(kind: str, field: str) -> None:
    async def go() -> None:
        timing = TIMING.model_copy(update={field: 1500})
        async with sim(SimConfig(batches=timing)) as (server, session, _):
            batches = adapter(kind, server)  # its own limits are the real, larger ones
            items = [item(f"r{i}", "word " * 100) for i in range(4)]
            with pytest.raises(BadRequest, match="1500") as caught:
                await batches.submit(session, items)
            assert not caught.value.transient

    run(go)


def test_unknown_custom_ids_are_dropped_and_missing_ones_detectable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def go() -> None:
        async with sim(SimConfig(batches=TIMING)) as (server, session, clock):
            batches = adapter("openai", server)
            status = await batches.submit(
                session, [item(f"r{i}", t) for i, t in enumerate(TICKETS)]
            )
            clock.now += 20
            # The caller lost track of r3 (say it was resubmitted elsewhere) and expects a
            # row the provider never saw.
            expected = ["r0", "r1", "r2", "ghost"]
            with caplog.at_level(logging.WARNING, logger="pipeline.providers.batch"):
                outcomes = await batches.results(session, status.id, expected=expected)
            assert sorted(o.custom_id for o in outcomes) == ["r0", "r1", "r2"]
            assert "'r3'" in caplog.text
            assert missing_ids(expected, outcomes) == ["ghost"]

    run(go)


def test_anthropic_usage_with_cache_tokens_follows_the_costs_convention() -> None:
    body = {
        "content": [{"type": "text", "text": "billing"}],
        "model": "claude-3-5-haiku",
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": 20,
            "output_tokens": 3,
            "cache_read_input_tokens": 1500,
            "cache_creation_input_tokens": 200,
        },
    }
    usage = parse_answer(body, "claude-3-5-haiku", "test").usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.cache_write_tokens) == (
        1720,
        1500,
        200,
    )
    assert usage.output_tokens == 3


def test_anthropic_body_marks_the_end_of_the_cache_prefix() -> None:
    msgs = (Message("system", "rules"), Message("system", "labels"), Message("user", "row"))
    plain = messages_body(ChatRequest("c", msgs, 8))
    assert plain["system"] == "rules\n\nlabels" and plain["messages"][0]["content"] == "row"
    system = messages_body(ChatRequest("c", msgs, 8, cache_prefix=2))["system"]
    assert "".join(b["text"] for b in system) == "rules\n\nlabels"  # the same text
    assert [b.get("cache_control") for b in system] == [None, {"type": "ephemeral"}]
    shots = (*msgs[:2], Message("user", "examples"), Message("user", "row"))
    body = messages_body(ChatRequest("c", shots, 8, cache_prefix=3))
    assert body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert body["messages"][1]["content"] == "row"


def test_anthropic_adapter_reads_cache_writes_then_reads_from_the_simulator() -> None:
    async def go() -> None:
        policy = SYSTEM + "\n" + "Weigh every sentence of the ticket before you answer. " * 120
        async with sim(SimConfig()) as (server, session, _):
            messages = AnthropicMessages(
                name="sim", base_url=server.base_url, api_key_env=None, timeouts=Timeouts()
            )

            def ask(text: str) -> ChatRequest:
                turns = (Message("system", policy), Message("user", text))
                return ChatRequest("claude-3-5-haiku", turns, 16, cache_prefix=1)

            first = (await messages.complete(session, ask("billed twice"))).usage
            second = (await messages.complete(session, ask("billed again"))).usage
            assert first.cache_write_tokens >= 1024 and first.cached_input_tokens == 0
            assert second.cached_input_tokens == first.cache_write_tokens
            assert second.cache_write_tokens == 0
            assert first.input_tokens == second.input_tokens  # the whole prompt, both times

    run(go)


def test_registry_knows_which_kinds_batch() -> None:
    assert registry.supports_batch("sim") and registry.supports_batch("anthropic")
    assert not registry.supports_batch("vllm")
    made = registry.create_batch(
        "sim", name="s", base_url="http://127.0.0.1:1/v1", api_key_env=None, timeouts=Timeouts()
    )
    assert isinstance(made, OpenAIBatch) and made.limits.one_model_per_batch
    with pytest.raises(ValueError, match="no batch API"):
        registry.create_batch(
            "vllm", name="v", base_url="http://x", api_key_env=None, timeouts=Timeouts()
        )


def test_a_failed_batch_is_transient_when_the_provider_failed_it() -> None:
    async def go() -> None:
        timing = TIMING.model_copy(update={"fail_rate": 1.0})
        async with sim(SimConfig(batches=timing)) as (server, session, clock):
            batches = adapter("openai", server)
            status = await batches.submit(session, [item("r0", "x")])
            clock.now += 2
            with pytest.raises(ProviderUnavailable, match="batch_failed"):
                await batches.results(session, status.id)

    run(go)


def test_openai_adapter_sends_the_cache_key_and_reads_cached_tokens() -> None:
    async def go() -> None:
        policy = SYSTEM + "\n" + "Weigh every sentence of the ticket before you answer. " * 120
        async with sim(SimConfig()) as (server, session, _):
            chat = OpenAIChat(
                name="sim", base_url=server.base_url, api_key_env=None, timeouts=Timeouts()
            )

            def ask(text: str, key: str | None) -> ChatRequest:
                turns = (Message("system", policy), Message("user", text))
                return ChatRequest("gpt-4o-mini", turns, 16, cache_key=key)

            assert "prompt_cache_key" not in chat_body(ask("x", None))
            first = (await chat.complete(session, ask("billed twice", "job-1"))).usage
            second = (await chat.complete(session, ask("billed again", "job-1"))).usage
            other = (await chat.complete(session, ask("billed again", "job-2"))).usage
            assert first.cached_input_tokens == 0 and other.cached_input_tokens == 0
            assert 1024 <= second.cached_input_tokens < second.input_tokens
            assert second.cached_input_tokens % 128 == 0

    run(go)
