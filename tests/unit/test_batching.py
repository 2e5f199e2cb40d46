"""The batching provider against the simulator's real batch API over loopback HTTP: calls
that arrive together go out as one batch, a rerun re-attaches instead of paying again,
and under auto a deadline sends calls (or takes a batch back) synchronously."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from typing import Any

import aiohttp
import pytest

from pipeline.calls.batching import BatchingProvider, BatchPlan, custom_id
from pipeline.errors import ProviderUnavailable
from pipeline.jobfolder import BatchIntent, BatchJournal, JobFolder, batch_turnaround
from pipeline.providers import registry
from pipeline.providers.base import ChatRequest, Message
from pipeline.providers.batch import BatchOutcome, match_outcomes
from pipeline.sim import SimConfig, SimServer
from pipeline.store import Store
from schemas.job import Timeouts


class MemoryJournal(BatchJournal):
    """The job folder's journal on a fresh local folder, with `records` to look at."""

    def __init__(self) -> None:
        super().__init__(JobFolder.at(tempfile.mkdtemp(prefix="journal-")))

    @property
    def records(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for cid, bid in self._load("sim").items():
            out.setdefault(bid, []).append(cid)
        return out


class CrashAfterSubmit(MemoryJournal):
    """Dies right after the provider accepted a batch, before its id is written down."""

    def record(
        self, provider: str, batch_id: str, custom_ids: list[str], token: str | None = None
    ) -> None:
        raise RuntimeError("killed between submit and record")


def _request(i: int) -> ChatRequest:
    msgs = (Message("system", "Label: billing or other."), Message("user", f"invoice {i}"))
    return ChatRequest(model="gpt-4o-mini", messages=msgs, max_tokens=8)


def _provider(
    base_url: str, journal: MemoryJournal, plan: BatchPlan, wire: str = "sim"
) -> BatchingProvider:
    kw: dict[str, Any] = {"name": "sim", "base_url": base_url, "api_key_env": None}
    return BatchingProvider(
        name="sim",
        sync=registry.create(wire, timeouts=Timeouts(), **kw),
        batches=registry.create_batch(wire, timeouts=Timeouts(), **kw),
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


@pytest.mark.parametrize("wire", ["sim", "anthropic"])
def test_a_crash_between_submit_and_record_is_found_again_not_paid_twice(wire: str) -> None:
    async def main() -> None:
        async with SimServer(_config()) as sim:
            crashed = CrashAfterSubmit()
            with pytest.raises(ProviderUnavailable, match="killed between"):
                await _ask_all(_provider(sim.base_url, crashed, FAST, wire), 8)
            rerun = MemoryJournal()
            rerun.folder = crashed.folder  # the same job folder, read afresh
            p = _provider(sim.base_url, rerun, FAST, wire)
            answers = await _ask_all(p, 8)
            stats = sim.stats.snapshot()["batches"]
        assert [a.mode for a in answers] == ["batch"] * 8
        assert stats["created"] == 1  # type: ignore[index]
        assert (p.batches_submitted, p.batches_attached) == (0, 1)
        assert rerun.intents("sim") == []  # the intent became a record
        assert len(rerun.records) == 1

    asyncio.run(main())


def test_an_intent_whose_submit_never_arrived_is_submitted_afresh() -> None:
    async def main() -> None:
        async with SimServer(_config()) as sim:
            journal = MemoryJournal()
            ids = tuple(custom_id("sim", _request(i)) for i in range(4))
            journal.intend("sim", BatchIntent("g-lost", ids, time.time()))  # never sent
            p = _provider(sim.base_url, journal, FAST)
            answers = await _ask_all(p, 4)
            stats = sim.stats.snapshot()["batches"]
        assert [a.mode for a in answers] == ["batch"] * 4
        assert stats["created"] == 1 and p.batches_submitted == 1  # type: ignore[index]
        assert journal.intents("sim") == []

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


def test_turnaround_comes_from_earlier_runs_batches_once_there_are_enough(tmp_path: Any) -> None:
    root = Store.open(str(tmp_path))
    default = 3600.0
    assert batch_turnaround(root, [], default)[0] == default
    seconds = [100.0, 200.0, 300.0, 400.0, 5000.0]
    for i, took in enumerate(seconds):
        journal = BatchJournal(JobFolder(root.child(f"nightly-{i % 2}")))
        journal.record("sim", f"batch_{i}", [f"t-{i}"])
        journal.ended("sim", f"batch_{i}", "completed", 1_000.0, 1_000.0 + took)
    # A taken-back batch says nothing of a batch's pace.
    journal.record("sim", "batch_x", ["t-x"])
    journal.ended("sim", "batch_x", "cancelled", 1_000.0, 1_001.0)
    dirs = ["nightly-0", "nightly-1"]
    took, source = batch_turnaround(root, dirs, default)
    assert took == 5000.0 and "5 batches of earlier runs" in source  # the p90 of five
    # Too few: the stated default, and the forecast says which.
    took, source = batch_turnaround(root, ["nightly-1"], default)
    assert took == default and "run.batch_turnaround_s" in source


def test_a_finished_batch_leaves_its_turnaround_in_the_journal() -> None:
    async def main() -> None:
        async with SimServer(_config()) as sim:
            journal = MemoryJournal()
            await _ask_all(_provider(sim.base_url, journal, FAST), 3)
        (took,) = journal.turnarounds()
        assert took >= 0

    asyncio.run(main())


class LossyResults:
    """The real adapter, except that the first batch's output lacks two requests and holds
    one the caller never asked for (as a provider's output file sometimes does)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def results(self, session: Any, batch_id: str, *, expected: Any = None) -> list[Any]:
        outcomes = await self.inner.results(session, batch_id, expected=None)
        self.calls += 1
        if self.calls == 1:
            ghost = BatchOutcome("t-ghost", "succeeded", response=outcomes[0].response)
            outcomes = [*outcomes[2:], ghost]
        return match_outcomes(outcomes, expected, batch_id)


def test_requests_missing_from_a_batch_output_are_asked_again_unknown_ones_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        async with SimServer(_config()) as sim:
            p = _provider(sim.base_url, MemoryJournal(), FAST)
            p.batches = LossyResults(p.batches)  # type: ignore[assignment]
            with caplog.at_level(logging.WARNING):
                answers = await _ask_all(p, 6)
            stats = sim.stats.snapshot()["batches"]
        assert [a.mode for a in answers] == ["batch"] * 6 and all(a.text for a in answers)
        # The two missing requests went out again, in a second batch; nothing else did.
        assert stats["created"] == 2 and stats["requests"] == 8  # type: ignore[index]
        assert "did not report 2 requests" in caplog.text
        assert "dropped 1 results for custom_ids not asked for" in caplog.text

    asyncio.run(main())


class FlakyPolls:
    """The real adapter, except that its first polls and its first results call time out
    (a loaded provider, a network blip)."""

    def __init__(self, inner: Any, failures: int) -> None:
        self.inner, self.left = inner, {"retrieve": failures, "results": 1}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _blip(self, what: str) -> None:
        if self.left[what] > 0:
            self.left[what] -= 1
            raise ProviderUnavailable(f"{what}: read timed out")

    async def retrieve(self, session: Any, batch_id: str) -> Any:
        self._blip("retrieve")
        return await self.inner.retrieve(session, batch_id)

    async def results(self, session: Any, batch_id: str, *, expected: Any = None) -> Any:
        self._blip("results")
        return await self.inner.results(session, batch_id, expected=expected)


def test_a_failed_poll_is_asked_again_not_the_batch_paid_twice() -> None:
    async def main() -> None:
        async with SimServer(_config()) as sim:
            p = _provider(sim.base_url, MemoryJournal(), FAST)
            p.batches = FlakyPolls(p.batches, failures=3)  # type: ignore[assignment]
            answers = await _ask_all(p, 5)
            stats = sim.stats.snapshot()["batches"]
        assert [a.mode for a in answers] == ["batch"] * 5
        assert stats["created"] == 1 and stats["custom_ids_answered_twice"] == 0  # type: ignore[index]

    asyncio.run(main())
