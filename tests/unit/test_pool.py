"""A tier is a pool: which deployment a row goes to, by price, quota headroom and latency
(no Ray, no network: the limiter's view and the clock are scripted)."""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest

from jobs.base import get_job_kind
from pipeline.calls.execute import RowExecutor
from pipeline.calls.pool import HEADROOM_S, Option, Pool, choose
from pipeline.calls.retry import RetryPolicy
from pipeline.errors import RateLimited
from pipeline.limits.headroom import UNLIMITED, Headroom
from pipeline.limits.quota import QuotaState
from schemas.job import ClassifyTask, Deployment, Limits, parse_spec
from tests.unit.test_execute import Scripted

KIND = get_job_kind(ClassifyTask(kind="classify", labels=["billing", "technical", "other"]))
A, B, C = (Deployment.parse(d) for d in ("a/gpt-4o", "b/gpt-4o", "c/gpt-4o-mini"))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Rooms:
    """A limiter whose view of each account is set by the test."""

    def __init__(self, rooms: dict[str, Headroom] | None = None) -> None:
        self.rooms = rooms or {}

    @asynccontextmanager
    async def slot(self, deployment: Deployment, tokens: int) -> AsyncIterator[None]:
        yield

    def headroom(self, deployment: Deployment) -> Headroom:
        return self.rooms.get(deployment.provider, UNLIMITED)

    def feedback(self, *args: object, **kwargs: object) -> None:
        return None


def prices(dep: Deployment, tokens: int) -> float:
    return {"a": 0.010, "b": 0.010, "c": 0.001}[dep.provider]


def firsts(pool: Pool, tier: str, deps: Sequence[Deployment], n: int = 2000) -> Counter[str]:
    return Counter(pool.order(tier, deps, 400)[0].provider for _ in range(n))


# --- the choice --------------------------------------------------------------------------


def test_ordered_keeps_the_list_order_whatever_the_headroom() -> None:
    opts = [Option(30.0, 0.05, 0.01), Option(0.0, 0.05, 0.001)]
    assert choose("ordered", opts, random.Random(0)) == [0, 1]


def test_cheapest_takes_the_cheapest_deployment_with_headroom_now() -> None:
    rng = random.Random(0)
    opts = [Option(0.0, 0.05, 0.010), Option(0.2, 0.05, 0.001), Option(0.0, 0.05, 0.010)]
    assert choose("cheapest", opts, rng)[0] == 1
    # Its queue past about a second: it has no headroom now, the dearer ones take the row.
    opts[1] = Option(HEADROOM_S + 0.5, 0.05, 0.001)
    assert all(choose("cheapest", opts, rng)[0] in (0, 2) for _ in range(50))


def test_cheapest_skips_a_deployment_that_has_slowed_down() -> None:
    opts = [Option(0.0, 0.05, 0.010), Option(0.0, 4.0, 0.001)]
    assert choose("cheapest", opts, random.Random(0))[0] == 0


def test_spread_shares_rows_by_the_time_a_row_would_take() -> None:
    rng = random.Random(0)
    opts = [Option(1.0, 0.0, 0.01), Option(3.0, 0.0, 0.01)]
    picks = Counter(choose("spread", opts, rng)[0] for _ in range(4000))
    assert 0.70 < picks[0] / 4000 < 0.80  # weights 1/1 : 1/3


def test_a_paused_or_exhausted_deployment_gets_no_rows_while_another_can() -> None:
    rng = random.Random(0)
    opts = [Option(math.inf, 0.05, 0.001), Option(0.5, 0.05, 0.01)]
    assert all(choose(s, opts, rng)[0] == 1 for s in ("spread", "cheapest") for _ in range(50))


# --- headroom ----------------------------------------------------------------------------


def test_headroom_wait_counts_the_pause_the_queue_and_the_tokens() -> None:
    room = Headroom(
        pause_s=2.0, requests_per_s=5.0, requests_ready=1.0, requests_queued=4.0,
        tokens_per_s=1000.0, tokens_ready=0.0,
    )  # fmt: skip
    # 4 rows of others + 5 of ours + this one - 1 ready = 9 requests at 5/s; 6,000 tokens.
    assert room.wait_s(queued_here=5, tokens_each=1000) == pytest.approx(2.0 + 6.0)
    assert UNLIMITED.wait_s(100, 1000) == 0.0
    assert Headroom(exhausted=True).wait_s(0, 1) == math.inf


def test_the_quota_view_shows_other_workers_queues_and_the_rate_after_a_429() -> None:
    clock = Clock()
    q = QuotaState(Limits(rpm=600), clock=clock)
    q.report_waiting("w1", 30, 0)
    q.report_waiting("w2", 10, 0)
    seen_by_w1 = q.view("w1")
    assert seen_by_w1["requests_queued"] == 10 and seen_by_w1["requests_per_s"] == 10.0
    q.on_rate_limited(1.0)
    assert q.view("w1")["requests_per_s"] == 5.0  # halved: this account loses share


# --- the pool in a worker ----------------------------------------------------------------


def test_rows_move_to_the_deployment_whose_quota_frees_first() -> None:
    rooms = Rooms({"a": Headroom(requests_per_s=5.0), "b": Headroom(requests_per_s=5.0)})
    pool = Pool(rooms, {"flagship": "spread"}, price_of=prices, clock=Clock(), rng=random.Random(1))
    even = firsts(pool, "flagship", [A, B])
    assert 0.4 < even["a"] / 2000 < 0.6
    # A's quota paused by a 429 (Retry-After 10 s): B takes nearly every row.
    rooms.rooms["a"] = Headroom(pause_s=10.0, requests_per_s=2.5)
    assert firsts(pool, "flagship", [A, B])["b"] > 0.95 * 2000


def test_cheapest_fills_the_cheap_deployment_then_spreads_the_rest() -> None:
    rooms = Rooms({p: Headroom(requests_per_s=5.0) for p in "abc"})
    pool = Pool(
        rooms, {"flagship": "cheapest"}, price_of=prices, clock=Clock(), rng=random.Random(1)
    )
    assert firsts(pool, "flagship", [A, B, C], n=100) == {"c": 100}
    # The cheap one has a queue of 20 rows here (4 s): rows go to a and b meanwhile.
    pool.of(C).queued = 20
    picks = firsts(pool, "flagship", [A, B, C])
    assert picks["c"] == 0 and picks["a"] > 600 and picks["b"] > 600


def test_a_hanging_deployment_loses_its_share_before_any_call_ends() -> None:
    clock = Clock()
    pool = Pool(Rooms(), {"flagship": "spread"}, price_of=prices, clock=clock, rng=random.Random(1))
    for dep in (A, B):
        pool.of(dep).ewma_s = 0.05
    pool.of(A).open_calls = {i: clock.now for i in range(8)}
    clock.now += 5.0  # a's eight calls have been open 5 s
    assert firsts(pool, "flagship", [A, B])["b"] > 0.97 * 2000
    pool.of(A).open_calls.clear()  # they ended: a gets its share back
    assert firsts(pool, "flagship", [A, B])["a"] > 0.4 * 2000


# --- the executor ------------------------------------------------------------------------


def execute(
    providers: dict[str, Scripted],
    strategy: str,
    rows: int = 1,
    allowed: frozenset[str] | None = None,
) -> tuple[list[object], list[float]]:
    slept: list[float] = []

    async def fake_sleep(s: float) -> None:
        slept.append(s)

    async def go() -> list[object]:
        ex = RowExecutor(
            KIND,
            providers,  # type: ignore[arg-type]
            {"flagship": [A, B]},
            session=None,  # type: ignore[arg-type]
            limiter=Rooms(),
            policy=RetryPolicy(max_attempts=3, base_s=1.0, cap_s=8.0),
            sleep=fake_sleep,
            rng=random.Random(3),
            strategies={"flagship": strategy},
        )
        return [
            await ex.run(f"r{i}", "charged twice", "flagship", 50, allowed) for i in range(rows)
        ]

    return asyncio.run(go()), slept


def test_a_429_moves_the_row_to_the_other_deployment_at_once() -> None:
    a = Scripted("a", [RateLimited("HTTP 429", retry_after_s=5.0)] * 100)
    b = Scripted("b", [])
    outs, slept = execute({"a": a, "b": b}, "spread", rows=20)
    assert a.calls  # some rows tried a first
    assert all(o.ok and o.provider == "b" for o in outs)  # type: ignore[attr-defined]
    assert slept == []  # no row waited out a Retry-After while b was free
    assert all(o.rate_limited <= 1 for o in outs)  # type: ignore[attr-defined]


def test_under_ordered_a_429_is_retried_in_place_as_before() -> None:
    a = Scripted("a", [RateLimited("HTTP 429", retry_after_s=5.0), "billing"])
    (out,), slept = execute({"a": a, "b": Scripted("b", [])}, "ordered")
    assert out.ok and out.provider == "a" and slept and slept[0] >= 5.0  # type: ignore[attr-defined]


def test_sensitive_rows_are_spread_only_among_allowed_providers() -> None:
    a, b = Scripted("a", []), Scripted("b", [])
    outs, _ = execute({"a": a, "b": b}, "spread", rows=40, allowed=frozenset({"b"}))
    assert not a.calls and len(b.calls) == 40
    assert all(o.ok for o in outs)  # type: ignore[attr-defined]


def test_spread_uses_both_deployments_of_an_idle_pool() -> None:
    a, b = Scripted("a", []), Scripted("b", [])
    execute({"a": a, "b": b}, "spread", rows=60)
    assert len(a.calls) > 10 and len(b.calls) > 10


# --- the spec ------------------------------------------------------------------------------


def _spec(**extra: object) -> dict[str, object]:
    return {
        "name": "p",
        "task": {"kind": "classify", "labels": ["x", "y"]},
        "input": {"uri": "in", "id_column": "id", "text_columns": ["t"]},
        "output": {"uri": "out"},
        "providers": {"a": {"kind": "sim"}, "b": {"kind": "sim"}},
        "tiers": {"cheap": ["a/gpt-4o-mini"], "flagship": ["a/gpt-4o", "b/gpt-4o"]},
        **extra,
    }


def test_every_tier_is_a_cheapest_pool_unless_the_spec_says_otherwise() -> None:
    spec = parse_spec(_spec(pools={"flagship": {"strategy": "spread"}}))
    assert spec.strategies() == {"cheap": "cheapest", "flagship": "spread"}


def test_a_pool_for_a_tier_without_deployments_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"pools\.mid: tier 'mid' has no deployments"):
        parse_spec(_spec(pools={"mid": {"strategy": "spread"}}))
    with pytest.raises(ValueError, match=r"pools\.flagship\.strategy"):
        parse_spec(_spec(pools={"flagship": {"strategy": "fastest"}}))


def test_one_model_served_by_several_providers_is_named_once() -> None:
    spec = parse_spec(
        _spec(
            tiers={"flagship": [{"model": "gpt-4o", "providers": ["a", "b"]}, "a/gpt-4o-mini"]},
            routing={"default": "flagship"},
        )
    )
    assert [d.name for d in spec.tiers["flagship"]] == ["a/gpt-4o", "b/gpt-4o", "a/gpt-4o-mini"]
    with pytest.raises(ValueError, match=r"tiers\.flagship: .*entry 0: a model served by"):
        parse_spec(
            _spec(tiers={"flagship": [{"model": "gpt-4o"}]}, routing={"default": "flagship"})
        )
    with pytest.raises(ValueError, match=r"tiers\.flagship.*names provider 'z'"):
        parse_spec(
            _spec(
                tiers={"flagship": [{"model": "gpt-4o", "providers": ["a", "z"]}]},
                routing={"default": "flagship"},
            )
        )


def test_a_deployment_priced_on_its_own_costs_its_own_price_everywhere() -> None:
    import polars as pl

    from pipeline.costs import add_cost_column

    spec = parse_spec(_spec(prices={"b/gpt-4o": {"input_per_mtok": 1.0, "output_per_mtok": 4.0}}))
    table = spec.price_table()
    assert table.for_deployment("b", "gpt-4o").input_per_mtok == 1.0
    assert table.for_deployment("a", "gpt-4o") == table.lookup("gpt-4o")  # the model's price
    calls = pl.DataFrame(
        {
            "provider": ["a", "b"],
            "model": ["gpt-4o", "gpt-4o"],
            "input_tokens": [1_000_000, 1_000_000],
            "output_tokens": [0, 0],
        }
    )
    costs = add_cost_column(calls, table)["cost_usd"].to_list()
    assert costs == [table.lookup("gpt-4o").input_per_mtok, 1.0]
    # The pool's `cheapest` sees the same prices the cost rows will be written with.
    ex = RowExecutor(
        KIND,
        {},
        {"flagship": [A, B]},
        None,
        Rooms(),
        RetryPolicy(),
        prices=table,  # type: ignore[arg-type]
    )
    assert ex.price_of(B, 500) < ex.price_of(A, 500)


def test_a_row_waits_unbound_while_no_deployment_has_room_then_takes_the_first_free() -> None:
    """Late binding: with every deployment's queue past a second, a new row joins none of
    them; once one gets room (its queued row got its permits), the row goes there. Bound
    early, it would have waited in one queue while the other idled (the end of a job)."""
    full = Headroom(requests_per_s=5.0, requests_queued=20.0)
    rooms = Rooms({"a": full, "b": full})
    pool = Pool(rooms, {"flagship": "spread"}, price_of=prices, clock=Clock())

    async def scenario() -> tuple[bool, list[str]]:
        waiting = asyncio.create_task(pool.room("flagship", [A, B], 400))
        await asyncio.sleep(0.05)
        held = not waiting.done()
        rooms.rooms["b"] = Headroom(requests_per_s=5.0, requests_ready=2.0)
        async with pool.admit(B, 400):  # a row of b's queue gets its permits: room is told
            pass
        await asyncio.wait_for(waiting, timeout=1.0)
        return held, [pool.order("flagship", [A, B], 400)[0].provider for _ in range(50)]

    held, firsts_after = asyncio.run(scenario())
    assert held
    assert Counter(firsts_after)["b"] > 40


def test_a_row_does_not_wait_on_deployments_closed_for_good() -> None:
    gone = Headroom(exhausted=True)
    pool = Pool(
        Rooms({"a": gone, "b": gone}), {"flagship": "cheapest"}, price_of=prices, clock=Clock()
    )
    asyncio.run(asyncio.wait_for(pool.room("flagship", [A, B], 400), timeout=1.0))
