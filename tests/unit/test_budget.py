"""The budget ledger, lease sizing and the worker-side client, against a lease book in
this process (no Ray): the cap holds under many concurrent calls."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from pipeline.limits.budget import (
    BudgetClient,
    BudgetLedger,
    Budgets,
    DailyLeaseBook,
    LeaseBook,
    LocalSource,
    lease_size,
)


class CountingSource(LocalSource):
    def __init__(self, book: LeaseBook, client: str, delay_s: float = 0.0) -> None:
        super().__init__(book, client, delay_s)
        self.grants: list[float] = []
        self.lease_calls = 0

    async def lease(
        self, max_usd: float, min_usd: float, returned_usd: float, spent_usd: float
    ) -> float:
        self.lease_calls += 1
        granted = await super().lease(max_usd, min_usd, returned_usd, spent_usd)
        self.grants.append(granted)
        return granted


class Clock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_ledger_reserves_only_what_fits_and_counts_overruns() -> None:
    led = BudgetLedger(1.0, spent_usd=0.25)
    assert led.reserve(0.5) and led.remaining == pytest.approx(0.25)
    assert not led.reserve(0.3)  # 0.25 + 0.5 + 0.3 > 1.0: refused, nothing held
    assert led.reserved == pytest.approx(0.5)
    led.settle(0.5, 0.2)
    assert (led.spent, led.reserved) == (pytest.approx(0.45), pytest.approx(0.0))
    assert led.reserve(0.55)
    led.settle(0.55, 0.6)  # billed past its worst case: counted, not refused
    assert led.spent == pytest.approx(1.05)
    assert not led.reserve(0.0001) and led.remaining == 0.0
    led.release(0.0)
    with pytest.raises(ValueError):
        led.reserve(-1.0)


def test_lease_size_is_between_need_and_a_fair_share() -> None:
    assert lease_size(10.0, want=0.5, need=0.01, holders=1) == 0.5
    assert lease_size(0.4, want=0.5, need=0.01, holders=2) == pytest.approx(0.1)
    assert lease_size(0.4, want=0.5, need=0.3, holders=4) == pytest.approx(0.3)  # need wins
    assert lease_size(0.005, want=0.5, need=0.01, holders=1) == 0.0
    assert lease_size(0.01, want=0.5, need=0.01, holders=1) == pytest.approx(0.01)


def test_many_concurrent_calls_never_push_spend_over_the_cap() -> None:
    cap = 2.0
    book = LeaseBook(cap)
    rng = random.Random(7)
    clients = [BudgetClient(LocalSource(book, f"w{i}", delay_s=0.001)) for i in range(4)]
    granted: list[float] = []
    refused = 0

    async def call(client: BudgetClient) -> None:
        nonlocal refused
        worst = rng.uniform(0.001, 0.02)
        r = await client.reserve(worst)
        if r is None:
            refused += 1
            return
        await asyncio.sleep(rng.uniform(0, 0.002))
        actual = worst * rng.uniform(0.0, 1.0)
        client.settle(r, actual)
        granted.append(actual)
        # At every moment, what the book saw spent plus what is held stays under the cap.
        assert book.ledger.spent + book.ledger.reserved <= cap + 1e-9

    async def main() -> None:
        await asyncio.gather(*(call(clients[i % 4]) for i in range(2000)))
        for c in clients:
            await c.close()

    asyncio.run(main())
    assert refused > 0, "the cap should bind in this test"
    assert book.ledger.spent == pytest.approx(sum(granted))
    assert book.ledger.spent <= cap + 1e-9
    assert book.ledger.reserved == pytest.approx(0.0, abs=1e-12) and not book.held
    # Few dollars stranded: the calls refused were refused near the end of the budget.
    assert book.ledger.spent > cap * 0.9


def test_exhausted_budget_returns_none_without_asking_again() -> None:
    clock = Clock()
    book = LeaseBook(0.05)
    source = CountingSource(book, "w")
    client = BudgetClient(source, clock=clock, recheck_s=1.0)

    async def main() -> None:
        assert await client.reserve(0.1) is None  # larger than the whole cap
        assert client.exhausted
        asked = source.lease_calls
        for _ in range(100):
            assert await client.reserve(0.2) is None
        assert source.lease_calls == asked  # refused locally, no round trips
        assert await client.reserve(0.04) is not None  # a smaller call still fits
        clock.t = 2.0
        assert await client.reserve(0.1) is None  # asked again after recheck_s
        assert source.lease_calls > asked

    asyncio.run(main())


def test_leases_shrink_as_the_budget_runs_out() -> None:
    book = LeaseBook(1.0)
    source = CountingSource(book, "w")
    client = BudgetClient(source, chunk_calls=50)

    async def main() -> None:
        while (r := await client.reserve(0.004)) is not None:
            client.settle(r, 0.004)

    asyncio.run(main())
    grants = [g for g in source.grants if g > 0]
    assert grants[0] == pytest.approx(0.2)  # 50 calls' worth
    assert grants[-1] < grants[0] / 4  # the last leases are small
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(grants))
    assert book.ledger.spent == pytest.approx(1.0, abs=0.004)  # nothing left stranded


def test_close_returns_unused_lease_and_reports_spend() -> None:
    book = LeaseBook(10.0)
    client = BudgetClient(LocalSource(book, "w"))

    async def main() -> None:
        a = await client.reserve(0.1)
        b = await client.reserve(0.1)
        assert a is not None and b is not None
        assert book.ledger.reserved == pytest.approx(5.0)  # one lease, 50 calls' worth
        client.settle(a, 0.03)
        client.release(b)
        with pytest.raises(ValueError):
            client.settle(a, 0.01)
        await client.close()

    asyncio.run(main())
    assert book.ledger.reserved == pytest.approx(0.0) and not book.held
    assert book.ledger.spent == pytest.approx(0.03)


def test_overrun_exceeds_the_cap_by_no_more_than_the_overrun() -> None:
    book = LeaseBook(0.1)
    client = BudgetClient(LocalSource(book, "w"), chunk_calls=1)

    async def main() -> None:
        r = await client.reserve(0.1)
        assert r is not None
        client.settle(r, 0.13)  # the provider billed 0.03 past the reserved worst case
        assert await client.reserve(0.01) is None
        await client.close()

    asyncio.run(main())
    assert book.ledger.spent == pytest.approx(0.13)


def test_a_dead_clients_lease_counts_as_spent() -> None:
    book = LeaseBook(1.0)
    assert book.lease("w1", 0.4, 0.1) == pytest.approx(0.4)
    book.forget("w1")
    assert book.ledger.spent == pytest.approx(0.4) and book.ledger.reserved == 0.0
    book.settle("w1", 0.4, 0.1)  # it comes back: already counted, ignored
    assert book.ledger.spent == pytest.approx(0.4)


def test_rerun_keeps_the_larger_spend_and_takes_the_new_cap() -> None:
    book = LeaseBook(1.0, spent_usd=0.3)
    book.configure(2.0, already_spent_usd=0.2)
    assert (book.ledger.cap, book.ledger.spent) == (2.0, 0.3)
    book.configure(2.0, already_spent_usd=0.5)
    assert book.ledger.spent == 0.5


def test_daily_book_starts_again_at_utc_midnight() -> None:
    clock = Clock(86_400 * 100 + 86_000)  # 23:53 UTC
    book = DailyLeaseBook(1.0, clock)
    assert book.lease("w", 0.8, 0.1) == pytest.approx(0.5)  # a fair share of 1.0
    book.settle("w", 0.3, 0.3)
    assert book.lease("w", 0.6, 0.6) == 0.0  # 0.3 spent + 0.2 held: 0.6 more does not fit
    clock.t += 600  # past midnight
    status = book.status()
    assert status.spent_usd == 0.0 and status.reserved_usd == pytest.approx(0.2)
    assert book.lease("w", 0.6, 0.6) == pytest.approx(0.6)


def test_budgets_release_the_job_reservation_when_the_daily_one_is_refused() -> None:
    job_book, daily_book = LeaseBook(1.0), LeaseBook(0.01)
    job = BudgetClient(LocalSource(job_book, "w"))
    daily = BudgetClient(LocalSource(daily_book, "w"))
    budgets = Budgets(job, {"openai": daily})

    async def main() -> None:
        hold = await budgets.reserve("openai", 0.05)
        assert not hold.granted and hold.refused_by == "daily:openai"
        assert job.reserved == 0.0
        ok = await budgets.reserve("sim", 0.05)  # no daily cap on this provider
        assert ok.granted
        budgets.settle(ok, 0.02)
        await budgets.close()

    asyncio.run(main())
    assert job_book.ledger.spent == pytest.approx(0.02) and job_book.ledger.reserved == 0.0


def test_no_call_is_refused_while_the_budget_has_room() -> None:
    book = LeaseBook(100.0)
    client = BudgetClient(LocalSource(book, "w", delay_s=0.002), chunk_calls=3)

    async def call(i: int) -> bool:
        r = await client.reserve(0.01 + (i % 7) * 0.001)
        if r is None:
            return False
        await asyncio.sleep(0)
        client.settle(r, 0.005)
        return True

    async def main() -> list[bool]:
        results = await asyncio.gather(*(call(i) for i in range(500)))
        await client.close()
        return list(results)

    assert all(asyncio.run(main()))
    assert book.ledger.spent == pytest.approx(2.5) and book.ledger.reserved == pytest.approx(0.0)
