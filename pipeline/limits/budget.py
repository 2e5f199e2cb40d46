"""Hard spending caps: the ledger arithmetic, and the worker-side client that leases
budget in chunks so a call never waits on an actor round trip.

    book = LeaseBook(cap_usd=25.0, spent_usd=already_spent)       # inside the budget actor
    client = BudgetClient(source)                                   # one per worker
    r = await client.reserve(worst_case_usd)     # None: budget exhausted, no call goes out
    ...call...
    client.settle(r, actual_usd)                 # the real cost; the rest comes back
    await client.close()                         # unused lease goes back to the actor

How the cap holds. The actor grants a lease only while `spent + reserved + lease <= cap`.
A client reserves each call's worst case (input tokens plus max output tokens at the
price, `pipeline.costs.worst_case_cost_usd`) from its own lease, never beyond it, and
settles the real cost after the call. So the job's spend stays within the cap, except
where a call cost more than its reserved worst case (a provider billing past
`max_tokens`, a price table behind the provider's), and then only by that overrun.

Leases are sized for about `chunk_calls` worst-case calls, but the actor gives no
client more than a fair share of what remains (`remaining / (2 x holders)`, at least the
call at hand), so the last dollars are not stranded in one worker's lease. A client that
is refused gives its unused lease back at once, for the others, and answers later
reservations of that size without asking again for `recheck_s`.

One actor call costs about 1 ms; per-call round trips would cap a cluster near 1,300
calls/s. Here a worker asks the actor about once per `chunk_calls` calls.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

EPS = 1e-12
CHUNK_CALLS = 50
RECHECK_S = 1.0


class BudgetLedger:
    """cap, spent and reserved USD; pure arithmetic, no clocks, no I/O."""

    def __init__(self, cap_usd: float, spent_usd: float = 0.0) -> None:
        if cap_usd < 0 or spent_usd < 0:
            raise ValueError("cap and spent must be >= 0")
        self.cap = float(cap_usd)
        self.spent = float(spent_usd)
        self.reserved = 0.0

    @property
    def remaining(self) -> float:
        return max(0.0, self.cap - self.spent - self.reserved)

    def fits(self, amount: float) -> bool:
        return self.spent + self.reserved + amount <= self.cap + EPS

    def reserve(self, amount: float) -> bool:
        """Hold `amount` if it fits under the cap; False (nothing held) when it does not."""
        if amount < 0:
            raise ValueError("amount must be >= 0")
        if not self.fits(amount):
            return False
        self.reserved += amount
        return True

    def settle(self, reserved: float, actual: float) -> None:
        """A reservation is done: `reserved` is no longer held, `actual` was spent (may
        exceed `reserved`: that is an overrun, and it is counted, not refused)."""
        if reserved < 0 or actual < 0:
            raise ValueError("amounts must be >= 0")
        self.reserved = max(0.0, self.reserved - reserved)
        self.spent += actual

    def release(self, reserved: float) -> None:
        """A reservation that spent nothing (the call never went out or was not billed)."""
        self.settle(reserved, 0.0)


def lease_size(remaining: float, want: float, need: float, holders: int) -> float:
    """How much to lease: at least `need` (else 0: it does not fit), at most `want`, and
    no more than a fair share of `remaining` among `holders` clients beyond `need`.

        lease_size(remaining=10.0, want=0.5, need=0.01, holders=1)   # 0.5
        lease_size(remaining=0.4, want=0.5, need=0.01, holders=2)    # 0.1 (0.4 / 4)
        lease_size(remaining=0.005, want=0.5, need=0.01, holders=1)  # 0.0
    """
    need = max(0.0, need)
    if need > remaining + EPS:
        return 0.0
    share = remaining / (2 * max(1, holders))
    return min(remaining, max(need, min(want, share)))


@dataclass
class BudgetStatus:
    cap_usd: float
    spent_usd: float
    reserved_usd: float
    remaining_usd: float
    clients: int


class LeaseBook:
    """A ledger whose reservations are leases held by named clients (workers).

    The budget actors are thin Ray wrappers around one of these."""

    def __init__(self, cap_usd: float, spent_usd: float = 0.0) -> None:
        self.ledger = BudgetLedger(cap_usd, spent_usd)
        self.held: dict[str, float] = {}

    def configure(self, cap_usd: float, already_spent_usd: float = 0.0) -> None:
        """A (re)start of the job: the cap may change; spend never goes down (what this
        book saw spent and what the committed cost rows say, whichever is more)."""
        self.ledger.cap = float(cap_usd)
        self.ledger.spent = max(self.ledger.spent, float(already_spent_usd))

    def settle(self, client: str, leased: float, spent: float) -> None:
        """`client` gives back `leased` of its lease, of which `spent` was spent.

        A client the book does not know (forgotten as dead) is ignored: its whole lease
        was already counted as spent."""
        held = self.held.get(client)
        if held is None:
            return
        leased = min(max(0.0, leased), held)
        self.ledger.settle(leased, max(0.0, spent))
        if held - leased > EPS:
            self.held[client] = held - leased
        else:
            del self.held[client]

    def lease(
        self,
        client: str,
        max_usd: float,
        min_usd: float = 0.0,
        returned_usd: float = 0.0,
        spent_usd: float = 0.0,
    ) -> float:
        """Settle what `client` reports, then lease it between `min_usd` and `max_usd`
        (0 when even `min_usd` does not fit)."""
        if returned_usd or spent_usd:
            self.settle(client, returned_usd, spent_usd)
        holders = len(self.held) + (client not in self.held)
        grant = lease_size(self.ledger.remaining, max_usd, min_usd, holders)
        if grant <= 0 or not self.ledger.reserve(grant):
            return 0.0
        self.held[client] = self.held.get(client, 0.0) + grant
        return grant

    def forget(self, client: str) -> None:
        """A client died holding a lease: what it held counts as spent (it may have been)."""
        held = self.held.pop(client, 0.0)
        self.ledger.settle(held, held)

    def status(self) -> BudgetStatus:
        led = self.ledger
        return BudgetStatus(led.cap, led.spent, led.reserved, led.remaining, len(self.held))


class DailyLeaseBook(LeaseBook):
    """A LeaseBook whose spend starts again at each UTC midnight of `clock` (epoch s).

    Leases held across midnight stay held, and what they spend counts on the new day."""

    def __init__(self, cap_usd: float, clock: Callable[[], float] = time.time) -> None:
        super().__init__(cap_usd)
        self.clock = clock
        self.day = self._today()

    def _today(self) -> int:
        return int(self.clock() // 86_400)

    def roll(self) -> None:
        today = self._today()
        if today != self.day:
            self.day = today
            self.ledger.spent = 0.0

    def lease(
        self,
        client: str,
        max_usd: float,
        min_usd: float = 0.0,
        returned_usd: float = 0.0,
        spent_usd: float = 0.0,
    ) -> float:
        self.roll()
        return super().lease(client, max_usd, min_usd, returned_usd, spent_usd)

    def settle(self, client: str, leased: float, spent: float) -> None:
        self.roll()
        super().settle(client, leased, spent)

    def status(self) -> BudgetStatus:
        self.roll()
        return super().status()


# --- the worker side ------------------------------------------------------------------


class LeaseSource(Protocol):
    """Where a client's leases come from: the budget actor, or a book in this process."""

    async def lease(
        self, max_usd: float, min_usd: float, returned_usd: float, spent_usd: float
    ) -> float: ...

    async def settle(self, leased: float, spent: float) -> None: ...


class LocalSource:
    """A LeaseSource over a LeaseBook in this process (tests, single-process use)."""

    def __init__(self, book: LeaseBook, client: str, delay_s: float = 0.0) -> None:
        self.book, self.client, self.delay_s = book, client, delay_s

    async def lease(
        self, max_usd: float, min_usd: float, returned_usd: float, spent_usd: float
    ) -> float:
        await asyncio.sleep(self.delay_s)  # an actor round trip lets other tasks run
        return self.book.lease(self.client, max_usd, min_usd, returned_usd, spent_usd)

    async def settle(self, leased: float, spent: float) -> None:
        await asyncio.sleep(self.delay_s)
        self.book.settle(self.client, leased, spent)


_ids = itertools.count(1)


@dataclass(eq=False)
class Reservation:
    usd: float
    id: int = field(default_factory=lambda: next(_ids))
    settled: bool = False


class BudgetClient:
    """One worker's share of a budget: leases in chunks, reserves per call locally.

    Not thread-safe; use it from one event loop (the worker's)."""

    def __init__(
        self,
        source: LeaseSource,
        *,
        chunk_calls: int = CHUNK_CALLS,
        recheck_s: float = RECHECK_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.chunk_calls = chunk_calls
        self.recheck_s = recheck_s
        self.clock = clock
        self.held = 0.0  # leased from the source, not yet given back
        self.reserved = 0.0  # held by calls in flight
        self.consumed = 0.0  # lease used by settled calls, not yet reported
        self.spent = 0.0  # what those calls cost (above `consumed` when they overran)
        self.spent_total = 0.0
        self.leases = 0
        self._typical = 0.0
        self._refused_at: float | None = None  # smallest amount refused
        self._retry_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def free(self) -> float:
        return self.held - self.reserved - self.consumed

    @property
    def exhausted(self) -> bool:
        """The last lease was refused (and the refusal is fresh)."""
        return self._refused_at is not None and self.clock() < self._retry_at

    def _take(self, usd: float) -> Reservation:
        self.reserved += usd
        return Reservation(usd)

    def _refused(self, usd: float) -> bool:
        return (
            self._refused_at is not None
            and usd >= self._refused_at - EPS
            and self.clock() < self._retry_at
        )

    async def reserve(self, usd: float) -> Reservation | None:
        """Hold `usd` for one call; None when the budget cannot cover it (do not call)."""
        if usd < 0 or math.isnan(usd):
            raise ValueError("a reservation must be >= 0")
        self._typical = usd if not self._typical else 0.9 * self._typical + 0.1 * usd
        if self.free >= usd - EPS:
            return self._take(usd)
        if self._refused(usd):
            return None
        async with self._lock:
            while True:
                if self.free >= usd - EPS:  # another task refilled while this one waited
                    return self._take(usd)
                if self._refused(usd):
                    return None
                need = usd - self.free
                want = max(need, self.chunk_calls * self._typical - self.free)
                returned, spent = self._report()
                granted = await self.source.lease(want, need, returned, spent)
                self.leases += 1
                if granted > 0:
                    # Calls may have taken some of it during the await: check again.
                    self.held += granted
                    self._refused_at = None
                    continue
                # Refused: give the unused lease back now, so other workers can use it.
                self._refused_at = min(usd, self._refused_at or usd)
                self._retry_at = self.clock() + self.recheck_s
                give_back = max(0.0, self.free)
                if give_back > EPS:
                    self.held -= give_back
                    await self.source.settle(give_back, 0.0)
                return None

    def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """The call is done and cost `actual_usd` (0 when it was not billed)."""
        if reservation.settled:
            raise ValueError(f"reservation {reservation.id} is already settled")
        if actual_usd < 0 or math.isnan(actual_usd):
            raise ValueError("actual cost must be >= 0")
        reservation.settled = True
        self.reserved -= reservation.usd
        self.consumed += min(actual_usd, reservation.usd)
        self.spent += actual_usd
        self.spent_total += actual_usd

    def release(self, reservation: Reservation) -> None:
        """The call did not go out, or was not billed."""
        self.settle(reservation, 0.0)

    def _report(self) -> tuple[float, float]:
        """Take the settled part off the books before telling the source (no await in
        between, so a reservation made meanwhile cannot use lease that is being returned)."""
        returned, spent = self.consumed, self.spent
        self.held -= returned
        self.consumed = self.spent = 0.0
        return returned, spent

    async def flush(self) -> None:
        """Tell the source what settled calls spent (keeps its status current)."""
        async with self._lock:
            returned, spent = self._report()
            if returned or spent:
                await self.source.settle(returned, spent)

    async def close(self) -> None:
        """Give every unused dollar back. Calls still in flight count as spent in full."""
        async with self._lock:
            returned, spent = self._report()
            returned += self.held
            spent += self.reserved
            self.held = self.reserved = 0.0
            if returned or spent:
                await self.source.settle(returned, spent)


@dataclass
class Hold:
    """A call's reservations on its job budget and its provider's daily budget."""

    reservations: list[tuple[BudgetClient, Reservation]]
    refused_by: str | None = None  # 'job' or 'daily:<provider>' when the call must not go

    @property
    def granted(self) -> bool:
        return self.refused_by is None


class Budgets:
    """The job budget and the per-provider daily budgets one worker reserves from.

    hold = await budgets.reserve("openai", worst_case_usd)
    if not hold.granted: ...            # error row 'budget_exhausted'
    budgets.settle(hold, actual_usd)
    """

    def __init__(
        self, job: BudgetClient | None = None, daily: Mapping[str, BudgetClient] | None = None
    ) -> None:
        self.job = job
        self.daily = dict(daily or {})

    async def reserve(self, provider: str, usd: float) -> Hold:
        taken: list[tuple[BudgetClient, Reservation]] = []
        for name, client in (("job", self.job), (f"daily:{provider}", self.daily.get(provider))):
            if client is None:
                continue
            r = await client.reserve(usd)
            if r is None:
                for c, held in taken:
                    c.release(held)
                return Hold([], refused_by=name)
            taken.append((client, r))
        return Hold(taken)

    def settle(self, hold: Hold, actual_usd: float) -> None:
        for client, r in hold.reservations:
            client.settle(r, actual_usd)

    async def close(self) -> None:
        for client in [self.job, *self.daily.values()]:
            if client is not None:
                await client.close()
