"""A tier is a pool: which of its deployments a row goes to, by free capacity.

    pool = Pool(limiter, {"flagship": "spread"}, price_of=lambda dep, tokens: 0.01)
    for dep in pool.order("flagship", deps, tokens=420):   # first the choice, then fallbacks
        async with pool.admit(dep, tokens=420):            # the limiter's slot, tracked
            ...call...

Strategies (per tier, `pools.<tier>.strategy` in the spec):

- `ordered`: the list order; the next deployment only when one fails (the old behaviour).
- `spread`: rows shared by headroom: each deployment is drawn with a weight of one over the
  time a row would take there (its quota wait plus its latency), so a deployment whose
  queue is twice as long gets half the new rows, and queues even out.
- `cheapest` (default): the cheapest deployment that has headroom now (a row would wait
  less than about a second for its permits, and it is not slower than the pool's fastest
  by more than that); when none has, as `spread`.

A row binds late: while no deployment of its pooled tier could take it within about a
second (`Pool.room`), it waits unbound, and goes to whichever deployment frees first. A
row that joined one deployment's queue early would wait there while another idles (the
end of a job, where the queues drain unevenly, measured at 0.82-0.90 of each limit).

The quota wait comes from the limiter's `Headroom` (the quota actors' view, refreshed at
every lease and sync, with this worker's own queue counted here), so a 429 (a pause and a
halved rate) moves rows away within one sync. Latency is this worker's own: an EWMA of
answers, and the median age of calls still open, so a deployment that hangs loses its
share while its calls are still hanging, and gets it back once answers come quickly again.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import statistics
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import count
from typing import TYPE_CHECKING, Literal

from schemas.job import Deployment

if TYPE_CHECKING:
    from pipeline.calls.execute import Limiter

Strategy = Literal["ordered", "spread", "cheapest"]
HEADROOM_S = 1.0  # the quota buckets hold one second of rate: a shorter wait is "now"
FLOOR_S = 0.01  # spread weights: no deployment counts as faster than this
EWMA_ALPHA = 0.2  # about five answers move the latency estimate most of the way
RECENT = 200  # answers kept per deployment for its p95
ROOM_MAX_S = 30.0  # a row waits unbound at most this long, then joins a queue anyway
ROOM_POLL_S = 0.25  # ...looking again at least this often (the quota view changes by sync)


@dataclass(frozen=True, slots=True)
class Option:
    """One deployment as the choice sees it."""

    wait_s: float  # quota wait a new row would have
    latency_s: float  # how long an answer takes there now
    price_usd: float  # the row's worst-case cost there

    @property
    def completion_s(self) -> float:
        return self.wait_s + self.latency_s


def choose(strategy: str, options: Sequence[Option], rng: random.Random) -> list[int]:
    """Indices of `options` in the order to try them: the chosen one first."""
    n = len(options)
    if strategy == "ordered" or n <= 1:
        return list(range(n))
    by_completion = sorted(range(n), key=lambda i: (options[i].completion_s, i))
    if strategy == "cheapest":
        fastest = min(o.latency_s for o in options)
        ready = [
            i
            for i in range(n)
            if options[i].wait_s + options[i].latency_s <= fastest + HEADROOM_S
            and math.isfinite(options[i].price_usd)
        ]
        if ready:
            cheapest = min(options[i].price_usd for i in ready)
            ties = [i for i in ready if options[i].price_usd <= cheapest * (1 + 1e-9)]
            first = _draw(ties, options, rng)
            rest = sorted(
                (i for i in range(n) if i != first),
                key=lambda i: (i not in ready, options[i].price_usd, options[i].completion_s),
            )
            return [first, *rest]
    first = _draw(list(range(n)), options, rng)
    return [first, *(i for i in by_completion if i != first)]


def _draw(indices: list[int], options: Sequence[Option], rng: random.Random) -> int:
    """One of `indices`, weighted by one over its completion time (finite ones only)."""
    weights = [
        1.0 / max(options[i].completion_s, FLOOR_S)
        if math.isfinite(options[i].completion_s)
        else 0.0
        for i in indices
    ]
    total = sum(weights)
    if total <= 0:
        return indices[0]
    x = rng.random() * total
    for i, w in zip(indices, weights, strict=True):
        x -= w
        if x < 0:
            return i
    return indices[-1]


@dataclass
class DeploymentStats:
    """One deployment as this worker sees it."""

    queued: int = 0  # rows waiting for its permits here
    open_calls: dict[int, float] = field(default_factory=dict)  # call -> start time
    ewma_s: float | None = None
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))
    chosen: int = 0  # rows that went to it first
    answered: int = 0

    def latency_s(self, now: float) -> float:
        seen = self.ewma_s or 0.0
        if self.open_calls:
            # Calls still open count with their age: a hang shows before any answer does.
            seen = max(seen, statistics.median(now - t for t in self.open_calls.values()))
        return seen

    def p95_s(self) -> float | None:
        if len(self.recent) < 20:
            return None  # too few answers to say where the tail starts
        ordered = sorted(self.recent)
        return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


class Pool:
    def __init__(
        self,
        limiter: Limiter,
        strategies: Mapping[str, str],
        *,
        price_of: Callable[[Deployment, int], float],
        clock: Callable[[], float],
        rng: random.Random | None = None,
        default: Strategy = "ordered",
    ) -> None:
        self.limiter = limiter
        self.strategies = dict(strategies)
        self.default = default
        self.price_of = price_of
        self.clock = clock
        self.rng = rng or random.Random()
        self.stats: dict[str, DeploymentStats] = {}
        self._ids = count()
        self._moved = asyncio.Event()  # set (and replaced) when a queued row gets its permits

    def strategy(self, tier: str) -> str:
        return self.strategies.get(tier, self.default)

    def of(self, dep: Deployment) -> DeploymentStats:
        s = self.stats.get(dep.name)
        if s is None:
            s = self.stats[dep.name] = DeploymentStats()
        return s

    def option(self, dep: Deployment, tokens: int) -> Option:
        s = self.of(dep)
        wait = self.limiter.headroom(dep).wait_s(s.queued, tokens)
        return Option(wait, s.latency_s(self.clock()), self.price_of(dep, tokens))

    async def room(self, tier: str, deps: Sequence[Deployment], tokens: int) -> None:
        """Wait, unbound, until some deployment of a pooled tier could take a new row within
        HEADROOM_S (or ROOM_MAX_S have passed, or every one is closed for good)."""
        if self.strategy(tier) == "ordered" or len(deps) <= 1:
            return
        loop = asyncio.get_running_loop()
        give_up = loop.time() + ROOM_MAX_S
        while True:
            best = min(self.option(d, tokens).wait_s for d in deps)
            left = give_up - loop.time()
            if best <= HEADROOM_S or not math.isfinite(best) or left <= 0:
                return
            moved = self._moved
            # Not `asyncio.wait_for`: on Python 3.11 it can drop a cancel (see journal.py).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(ROOM_POLL_S, best - HEADROOM_S, left)):
                    await moved.wait()

    def _moving(self) -> None:
        self._moved.set()
        self._moved = asyncio.Event()

    def order(self, tier: str, deps: Sequence[Deployment], tokens: int) -> list[Deployment]:
        """The tier's deployments for one row: the chosen one first, then the fallbacks."""
        strategy = self.strategy(tier)
        if strategy == "ordered" or len(deps) <= 1:
            out = list(deps)
        else:
            options = [self.option(d, tokens) for d in deps]
            out = [deps[i] for i in choose(strategy, options, self.rng)]
        if out:
            self.of(out[0]).chosen += 1
        return out

    @asynccontextmanager
    async def admit(self, dep: Deployment, tokens: int) -> AsyncIterator[None]:
        """The limiter's slot for one call, with the call counted as queued, then open.
        Only answers (no exception) feed the latency estimate."""
        s = self.of(dep)
        s.queued += 1
        queued = True
        try:
            async with self.limiter.slot(dep, tokens):
                s.queued, queued = s.queued - 1, False
                self._moving()
                call = next(self._ids)
                started = s.open_calls[call] = self.clock()
                try:
                    yield
                finally:
                    s.open_calls.pop(call, None)
                took = self.clock() - started
                s.answered += 1
                s.recent.append(took)
                s.ewma_s = took if s.ewma_s is None else s.ewma_s + EWMA_ALPHA * (took - s.ewma_s)
        finally:
            if queued:
                s.queued -= 1
