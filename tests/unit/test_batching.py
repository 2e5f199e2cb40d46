"""The batching provider against the simulator's real batch API over loopback HTTP: calls
that arrive together go out as one batch, a rerun re-attaches instead of paying again,
and under auto a deadline sends calls (or takes a batch back) synchronously."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from pipeline.calls.batching import BatchingProvider, BatchPlan, custom_id
from pipeline.providers import registry
from pipeline.providers.base import ChatRequest, Message
from pipeline.sim import SimConfig, SimServer
from schemas.job import Timeouts


class MemoryJournal:
    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}

    def find(self, provider: str, custom_ids: list[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for bid, cids in self.records.items():
            hit = [c for c in custom_ids if c in cids]
            if hit:
                found[bid] = hit
        return found

    def record(self, provider: str, batch_id: str, custom_ids: list[str]) -> None:
        self.records[batch_id] = list(custom_ids)


def _request(i: int) -> ChatRequest:
    msgs = (Message("system", "Label: billing or other."), Message("user", f"invoice {i}"))
    return ChatRequest(model="gpt-4o-mini", messages=msgs, max_tokens=8)


def _provider(base_url: str, journal: MemoryJournal, plan: BatchPlan) -> BatchingProvider:
    kw: dict[str, Any] = {"name": "sim", "base_url": base_url, "api_key_env": None}
    return BatchingProvider(
        name="sim",
        sync=registry.create("sim", timeouts=Timeouts(), **kw),
        batches=registry.create_batch("sim", timeouts=Timeouts(), **kw),
        journal=journal,
        plan=plan,
    )


def _config(turnaround_s: float = 60.0) -> SimConfig:
    batches = {"time_scale": 1000.0, "validate_s": 1.0, "turnaround_s": turnaround_s}
    return SimConfig.model_validate({"batches": batches})


FAST = BatchPlan(mode="batch", poll_s=0.02, flush_s=0.05)


async def _ask_all(p: BatchingProvider, n: int) -> list[Any]:
    async with aiohttp.ClientSession() as session:
        return await asyncio.gather(*(p.complete(session, _request(i)) for i in range(n)))


def test_calls_that_arrive_together_go_out_as_one_batch_at_the_batch_price() -> None:
    async def main() -> None:
        async with SimServer(_config()) as sim:
            journal = MemoryJournal()
            answers = await _ask_all(_provider(sim.base_url, journal, FAST), 20)
            stats = sim.stats.snapshot()["batches"]
        assert [a.mode for a in answers] == ["batch"] * 20
        assert all(a.text for a in answers)
        assert stats["created"] == 1 and stats["requests"] == 20  # type: ignore[index]
        assert sorted(journal.records[next(iter(journal.records))]) == sorted(
            custom_id("sim", _request(i)) for i in range(20)
        )

    asyncio.run(main())


def test_a_rerun_reattaches_to_the_journalled_batch_and_pays_nothing_twice() -> None:
    async def main() -> None:
        async with SimServer(_config()) as sim:
            journal = MemoryJournal()
            first = await _ask_all(_provider(sim.base_url, journal, FAST), 10)
            again = await _ask_all(_provider(sim.base_url, journal, FAST), 10)  # "rerun"
            stats = sim.stats.snapshot()["batches"]
        assert [a.text for a in again] == [a.text for a in first]
        assert stats["created"] == 1  # type: ignore[index]
        assert stats["custom_ids_answered_twice"] == 0  # type: ignore[index]

    asyncio.run(main())


def test_auto_without_time_for_a_batch_calls_synchronously() -> None:
    async def main() -> None:
        async with SimServer(_config()) as sim:
            plan = BatchPlan(mode="auto", deadline_at=0.0, poll_s=0.02, flush_s=0.05)
            answers = await _ask_all(_provider(sim.base_url, MemoryJournal(), plan), 5)
            stats = sim.stats.snapshot()["batches"]
        assert [a.mode for a in answers] == ["sync"] * 5
        assert stats["created"] == 0  # type: ignore[index]

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_near_the_deadline_a_lagging_batch_is_taken_back_and_finished_synchronously() -> None:
    async def main() -> None:
        # Batches take a simulated day; the deadline is (nearly) now, but batching was
        # chosen when the request came in (turnaround planned at 0 s).
        async with SimServer(_config(turnaround_s=86_000.0)) as sim:
            clock = {"now": 0.0}
            plan = BatchPlan(
                mode="auto",
                deadline_at=1000.0,
                turnaround_s=0.0,
                sync_reserve_s=100.0,
                poll_s=0.02,
                flush_s=0.05,
            )
            p = _provider(sim.base_url, MemoryJournal(), plan)
            p.clock = lambda: clock["now"]

            async def later() -> None:
                await asyncio.sleep(0.5)
                clock["now"] = 950.0  # inside the reserve kept for synchronous work

            answers, _ = await asyncio.gather(_ask_all(p, 6), later())
            stats = sim.stats.snapshot()["batches"]
        assert [a.mode for a in answers] == ["sync"] * 6
        assert stats["created"] == 1 and stats["cancelled"] == 1  # type: ignore[index]

    asyncio.run(main())
