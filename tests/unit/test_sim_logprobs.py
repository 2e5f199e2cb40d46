"""Log-probabilities from the simulator: only when asked, deterministic, in OpenAI's shape,
and read back by the OpenAI adapter as the mean the cascade's `min_logprob` compares."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pipeline.providers.base import ChatRequest, Message
from pipeline.providers.openai import OpenAIChat
from pipeline.sim import ModelBehaviour, SimConfig, SimServer
from pipeline.sim.generate import (
    SURE_LOGPROB,
    UNSURE_LOGPROB,
    answer,
    classify,
    made_wrong,
    token_logprobs,
)
from schemas.job import Timeouts
from tests.unit.test_sim_replay import write_pair

SYSTEM = "Classify the ticket.\nAllowed labels: billing | technical | account | other"
TICKET = "I was billed twice this month"
# "sure" is always right; "unsure" is always wrong (a different label, low log-probabilities).
CONFIG = SimConfig(
    models={"sure": ModelBehaviour(accuracy=1.0), "unsure": ModelBehaviour(accuracy=0.0)}
)


def msgs(text: str = TICKET) -> tuple[tuple[str, str], ...]:
    return (("system", SYSTEM), ("user", text))


def test_made_wrong_is_exactly_when_answer_is_wrong() -> None:
    for i in range(40):
        m = msgs(f"{TICKET} (case {i})")
        right = classify(m[1][1], ("billing", "technical", "account", "other"))
        wrong = made_wrong(m, model="x", seed=3, accuracy=0.5)
        assert (answer(m, model="x", seed=3, accuracy=0.5) != right) == wrong
    summarise = (("system", "Summarise in at most 5 words."), ("user", "A long text here."))
    assert not made_wrong(summarise, model="x", seed=0, accuracy=0.0)


def test_token_logprobs_are_deterministic_negative_and_centred() -> None:
    text = "the quick brown fox jumps over the lazy dog " * 20
    sure = token_logprobs(text, msgs(), model="m", seed=1, sure=True)
    assert sure == token_logprobs(text, msgs(), model="m", seed=1, sure=True)
    assert "".join(p for p, _ in sure) == text.rstrip()
    unsure = token_logprobs(text, msgs(), model="m", seed=1, sure=False)
    for pieces, mean in ((sure, SURE_LOGPROB), (unsure, UNSURE_LOGPROB)):
        values = [v for _, v in pieces]
        assert all(1.5 * mean <= v <= 0.5 * mean < 0 for v in values)
        assert sum(values) / len(values) == pytest.approx(mean, rel=0.15)


async def post(server: SimServer, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{server.base_url}/chat/completions", json=body) as resp,
    ):
        return resp.status, await resp.json()


def chat(model: str, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": TICKET}]
    return {"model": model, "messages": messages, **extra}


def test_logprobs_only_when_asked_in_openai_shape() -> None:
    async def go() -> None:
        async with SimServer(CONFIG) as server:
            status, plain = await post(server, chat("sure"))
            assert status == 200 and "logprobs" not in plain["choices"][0]
            status, asked = await post(server, chat("sure", logprobs=True))
            assert status == 200
            choice = asked["choices"][0]
            assert choice["message"] == plain["choices"][0]["message"]  # same answer
            content = choice["logprobs"]["content"]
            assert "".join(t["token"] for t in content) == choice["message"]["content"]
            assert all(t["bytes"] == list(t["token"].encode()) for t in content)
            status, _ = await post(server, chat("sure", logprobs=False))
            assert status == 200
            status, bad = await post(server, chat("sure", logprobs="yes"))
            assert status == 400 and "logprobs" in bad["error"]["message"]

    asyncio.run(go())


def test_replayed_answers_carry_no_logprobs(tmp_path: Path) -> None:
    async def go() -> None:
        async with SimServer(SimConfig(replay_dir=write_pair(tmp_path))) as server:
            body = {
                "model": "big",
                "messages": [{"role": "user", "content": "Name a prime."}],
                "logprobs": True,
            }
            status, payload = await post(server, body)
            assert status == 200 and payload["choices"][0]["message"]["content"] == "7"
            assert payload["choices"][0]["logprobs"] is None

    asyncio.run(go())


def test_openai_adapter_asks_only_when_told_and_reads_the_mean() -> None:
    async def go() -> None:
        async with SimServer(CONFIG) as server, aiohttp.ClientSession() as session:
            adapter = OpenAIChat(
                name="sim", base_url=server.base_url, api_key_env=None, timeouts=Timeouts()
            )
            messages = (Message("system", SYSTEM), Message("user", TICKET))

            async def mean(model: str, asked: bool) -> float | None:
                request = ChatRequest(model, messages, max_tokens=16, logprobs=asked)
                return (await adapter.complete(session, request)).mean_logprob

            assert await mean("sure", False) is None
            sure, unsure = await mean("sure", True), await mean("unsure", True)
            assert sure is not None and unsure is not None
            assert sure > -0.1 > -1.0 > unsure

    asyncio.run(go())
