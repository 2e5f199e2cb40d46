"""Hedged requests: a call still unanswered after the deployment's p95 (or a fixed time) is
sent again to the next deployment of the tier's pool; the first answer wins.

    hedges = Hedges(HedgeSpec(after="p95", max_extra_pct=5))
    delay = hedges.delay(pool.of(dep).p95_s())          # None: do not hedge (yet)
    results, winner = await first_answer(ask(dep), delay, launch, is_answer)

A slow answer (a provider's long tail) then holds a row for about the p95 plus one more
call instead of its whole tail. The loser is cancelled; a cancelled HTTP request may still
be billed, so it stays a cost row at its worst case (call_status `cancelled`,
token_method `worst_case`), and hedges stop while their worst-case cost would pass
`max_extra_pct` of the rest of the spend (counted per worker, so never past it in total).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from schemas.job import HedgeSpec

R = TypeVar("R")
CANCELLED = "cancelled"  # call_status of a call cut off because the other answered first
HEDGE_STEP = "hedge"  # the cost row's step of a hedge call (whichever answered first)


class Hedges:
    """When to hedge, and the share of extra spend hedges may take (one per worker)."""

    def __init__(self, spec: HedgeSpec) -> None:
        self.spec = spec
        self.base_usd = 0.0  # spend of every call that is not a hedge
        self.hedge_usd = 0.0  # worst case of every hedge sent
        self.sent = 0
        self.won = 0

    def delay(self, p95_s: float | None) -> float | None:
        if self.spec.after == "p95":
            return p95_s
        return float(self.spec.after) / 1000.0

    def paid(self, usd: float, hedge: bool) -> None:
        if not hedge:
            self.base_usd += usd

    def take(self, worst_usd: float) -> bool:
        """May one more hedge go out (its worst case within the share)? Counts it if so."""
        if self.hedge_usd + worst_usd > self.spec.max_extra_pct / 100.0 * self.base_usd:
            return False
        self.hedge_usd += worst_usd
        self.sent += 1
        return True


async def first_answer(
    primary: Coroutine[Any, Any, R],
    delay_s: float,
    launch: Callable[[], Coroutine[Any, Any, R] | None],
    is_answer: Callable[[R], bool],
) -> tuple[list[R | None], int | None]:
    """Run `primary`; if it has not finished after `delay_s`, start `launch()` (None: no
    hedge) beside it. The first result that `is_answer` wins and the other is cancelled.

    Returns both results ([primary, hedge]; None for one cancelled or never started) and
    the index of the winner (None when neither answered)."""
    tasks: list[asyncio.Task[R]] = [asyncio.ensure_future(primary)]
    try:
        done, _ = await asyncio.wait(tasks, timeout=delay_s)
        if not done:
            second = launch()
            if second is not None:
                tasks.append(asyncio.ensure_future(second))
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for t in sorted(done, key=tasks.index):
                if is_answer(t.result()):
                    await _cancel(pending)
                    return _results(tasks), tasks.index(t)
        return _results(tasks), None
    finally:
        await _cancel({t for t in tasks if not t.done()})


async def _cancel(tasks: set[asyncio.Task[R]]) -> None:
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t


def _results(tasks: list[asyncio.Task[R]]) -> list[R | None]:
    out: list[R | None] = [None if t.cancelled() or not t.done() else t.result() for t in tasks]
    return out + [None] * (2 - len(out))
