"""OpenAI's reasoning models as their API is: `max_completion_tokens`, no temperature,
`reasoning_effort`, hidden reasoning billed as output, which the budget reserves and the
forecast expects. What each model takes comes from the price table, never from a 400."""

from __future__ import annotations

import asyncio
import random

import aiohttp
import polars as pl
import pytest

from jobs.base import get_job_kind
from pipeline.calls.execute import RowExecutor
from pipeline.calls.retry import RetryPolicy
from pipeline.costs import worst_case_call_usd
from pipeline.dryrun.estimates import OutputAssumption
from pipeline.limits.limiter import LocalLimiter
from pipeline.providers.base import ChatRequest, Message
from pipeline.providers.openai import OpenAIChat, chat_body
from pipeline.sim import SimConfig, SimServer
from schemas.job import ClassifyTask, Deployment, Timeouts
from schemas.prices import load_prices

KIND = get_job_kind(ClassifyTask(kind="classify", labels=["billing", "technical", "other"]))
ASK = (Message("user", "I was charged twice"),)


def test_the_body_follows_the_model_kind() -> None:
    plain = chat_body(ChatRequest("gpt-4.1-mini", ASK, 16))
    assert plain["max_tokens"] == 16 and plain["temperature"] == 0.0
    assert "max_completion_tokens" not in plain and "reasoning_effort" not in plain
    thinking = chat_body(ChatRequest("gpt-5", ASK, 2064, reasoning=True, reasoning_effort="low"))
    assert thinking["max_completion_tokens"] == 2064 and thinking["reasoning_effort"] == "low"
    assert "max_tokens" not in thinking and "temperature" not in thinking


def test_the_price_table_knows_which_models_reason_and_what_thinking_costs() -> None:
    table = load_prices()
    for name in ("gpt-5", "gpt-5-mini", "gpt-5-nano", "o3", "o4-mini", "o3-mini", "o1"):
        price = table.lookup(name)
        assert price.reasoning and price.reasoning_tokens > 0, name
    for name in ("gpt-4.1", "gpt-4o", "claude-sonnet-4-5", "claude-haiku-4-5"):
        assert not table.lookup(name).reasoning, name
    gemini = table.lookup("gemini-2.5-flash")  # thinks, but takes max_tokens
    assert not gemini.reasoning and gemini.reasoning_tokens > 0
    # The budget reserves the thinking allowance at the output price.
    gpt5 = table.lookup("gpt-5")
    answer_only = worst_case_call_usd(gpt5, 1000, 16)
    reserved = worst_case_call_usd(gpt5, 1000, 16 + gpt5.reasoning_tokens)
    assert reserved - answer_only == pytest.approx(gpt5.reasoning_tokens * 10.0 / 1e6)


def test_the_forecast_expects_hidden_tokens_on_top_of_the_answer() -> None:
    labels = OutputAssumption.labels([1, 2, 3], cap=16).with_thinking(2048)
    frame = pl.DataFrame({"t": [10], "i": [50]})
    p10, p50, p90 = (frame.select(e).item() for e in labels.exprs(pl.col("t"), pl.col("i")))
    assert (p10, p50, p90) == (1 + 512, 2 + 1024, 3 + 2048)
    assert "reasoning" in labels.describe()


def test_a_reasoning_model_row_through_the_adapter_and_the_simulator() -> None:
    async def go() -> None:
        async with SimServer(SimConfig()) as sim, aiohttp.ClientSession() as session:
            adapter = OpenAIChat(
                name="openai", base_url=sim.base_url, api_key_env=None, timeouts=Timeouts()
            )
            executor = RowExecutor(
                KIND,
                {"openai": adapter},
                {"cheap": [Deployment.parse("openai/gpt-5-mini")]},
                session,
                LocalLimiter({}),
                RetryPolicy(max_attempts=1),
                prices=load_prices(),
                rng=random.Random(1),
                reasoning_effort={"openai": "low"},
            )
            out = await executor.run("r1", "I was billed twice for my invoice", "cheap", 50)
            assert out.ok and out.output == "billing", out
            (call,) = out.calls
            # 64 hidden tokens at low effort, billed with the visible answer as output.
            assert call.output_tokens > 64 and call.call_status == "ok"
            stats = sim.stats.snapshot()["models"]["gpt-5-mini"]
            assert stats["tokens_out"] == call.output_tokens

    asyncio.run(go())
