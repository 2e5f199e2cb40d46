"""Injected faults: error rates, hangs and resets, deterministic for a seed."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from pipeline.sim import Faults, Latency, ModelBehaviour, SimConfig, SimServer

URL = "/chat/completions"


@asynccontextmanager
async def client(config: SimConfig) -> AsyncIterator[tuple[SimServer, aiohttp.ClientSession]]:
    async with SimServer(config) as server, aiohttp.ClientSession(server.base_url + "/") as s:
        yield server, s


def chat(text: str, model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 8}


async def statuses(config: SimConfig, n: int) -> list[int]:
    async with client(config) as (_, session):

        async def one(i: int) -> int:
            async with session.post("chat/completions", json=chat(f"row {i}")) as resp:
                await resp.read()
                return resp.status

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def test_error_rates_are_as_configured_and_repeat_with_the_seed() -> None:
    config = SimConfig(faults=Faults(error_rates={500: 0.1, 503: 0.05, 429: 0.05}), seed=11)
    first = asyncio.run(statuses(config, 400))
    counts = Counter(first)
    assert set(counts) <= {200, 429, 500, 503}
    assert 25 <= counts[500] <= 55
    assert 8 <= counts[503] <= 35
    assert 8 <= counts[429] <= 35
    assert 270 <= counts[200] <= 330
    # Same config and seed: the same rows fail, whatever order requests arrive in.
    assert asyncio.run(statuses(config, 400)) == first
    other_seed = config.model_copy(update={"seed": 12})
    assert asyncio.run(statuses(other_seed, 400)) != first


def test_a_retry_of_a_failed_prompt_draws_again() -> None:
    async def go() -> None:
        config = SimConfig(faults=Faults(error_rates={500: 0.5}))
        async with client(config) as (server, session):
            seen = []
            for _ in range(20):
                async with session.post("chat/completions", json=chat("same row")) as resp:
                    seen.append(resp.status)
            assert set(seen) == {200, 500}
            assert server.stats.snapshot()["repeated_prompts"] == 19

    asyncio.run(go())


def test_faults_can_be_set_per_model_by_glob() -> None:
    async def go() -> None:
        failing = ModelBehaviour(faults=Faults(error_rates={503: 1.0}, retry_after_s=7))
        async with client(SimConfig(models={"cheap-*": failing})) as (_, session):
            async with session.post("chat/completions", json=chat("x", "cheap-1")) as resp:
                assert resp.status == 503 and resp.headers["Retry-After"] == "7"
                assert (await resp.json())["error"]["type"] == "server_error"
            async with session.post("chat/completions", json=chat("x", "gpt-4o")) as resp:
                assert resp.status == 200

    asyncio.run(go())


def test_hang_is_cut_by_the_client_timeout() -> None:
    async def go() -> None:
        async with client(SimConfig(faults=Faults(hang_rate=1.0))) as (server, session):
            started = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                timeout = aiohttp.ClientTimeout(total=0.3)
                async with session.post("chat/completions", json=chat("x"), timeout=timeout):
                    pass
            assert time.monotonic() - started < 2
            assert server.stats.snapshot()["total"]["hangs"] == 1  # type: ignore[index]

    asyncio.run(go())


def test_hang_ends_with_504_after_the_maximum() -> None:
    async def go() -> None:
        faults = Faults(hang_rate=1.0, max_hang_s=0.2)
        async with (
            client(SimConfig(faults=faults)) as (_, session),
            session.post("chat/completions", json=chat("x")) as resp,
        ):
            assert resp.status == 504

    asyncio.run(go())


def test_stopping_the_server_ends_hanging_requests() -> None:
    async def go() -> None:
        server = SimServer(SimConfig(faults=Faults(hang_rate=1.0)))
        await server.start()
        async with aiohttp.ClientSession() as session:
            request = asyncio.ensure_future(
                session.post(f"{server.base_url}/chat/completions", json=chat("x"))
            )
            await asyncio.sleep(0.2)
            started = time.monotonic()
            await server.stop()
            assert time.monotonic() - started < 1.5
            resp = await request
            assert resp.status == 504
            resp.release()

    asyncio.run(go())


def test_reset_drops_the_connection_without_a_response() -> None:
    async def go() -> None:
        async with client(SimConfig(faults=Faults(reset_rate=1.0))) as (server, session):
            with pytest.raises(aiohttp.ClientConnectionError):
                async with session.post("chat/completions", json=chat("x")):
                    pass
            assert server.stats.snapshot()["total"]["resets"] == 1  # type: ignore[index]

    asyncio.run(go())


def test_latency_is_applied() -> None:
    async def go() -> None:
        config = SimConfig(models={"slow": ModelBehaviour(latency=Latency(mean_ms=200))})
        async with client(config) as (_, session):
            started = time.monotonic()
            async with session.post("chat/completions", json=chat("x", "slow")) as resp:
                assert resp.status == 200
            assert time.monotonic() - started >= 0.19

    asyncio.run(go())


def test_a_long_tail_of_slow_answers_is_drawn_per_request() -> None:
    from pipeline.sim.behaviour import Behaviour

    tail = Latency(mean_ms=50, slow_rate=0.02, slow_ms=5000)
    behaviour = Behaviour(SimConfig(latency=tail))
    delays = [behaviour.plan("gpt-4o", prompt=p, occurrence=0).delay_s for p in range(5000)]
    slow = sum(d == 5.0 for d in delays)
    assert 60 < slow < 140 and all(d in (0.05, 5.0) for d in delays)  # about 2% of 5,000
    # The same prompt asked again (a hedge) draws anew: it is rarely slow twice.
    again = [behaviour.plan("gpt-4o", prompt=p, occurrence=1).delay_s for p in range(5000)]
    assert sum(a == d == 5.0 for a, d in zip(again, delays, strict=True)) < 10
