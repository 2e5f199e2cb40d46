"""Why a run stops before its end, and how it is told to: signals, and lost actors.

    stop = StopRequest()
    with stop.on_signals():                  # SIGTERM, Ctrl-C: stop; a second Ctrl-C: now
        while work_left and not stop.requested:
            ...
            stop.set(watch.lost())           # an actor the job cannot go on without

    watch = ActorWatch()
    watch.add("the job's budget actor (tierline-budget-<id>)", budget_handle)
    watch.lost()                             # None, or a reason naming the lost actor

A stop is graceful: no new unit is handed out, calls in flight get `run.stop_grace_s` to
finish, what was answered is journalled, and the run ends incomplete (exit 1) with one
line saying why. A second Ctrl-C (or SIGTERM) makes the stop immediate: committed units
are kept all the same, since a unit counts only once its marker is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType
from typing import Any, TypeVar

import ray
from ray.exceptions import GetTimeoutError, RayActorError

RERUN_HINT = "the job stopped rather than go on without it"
T = TypeVar("T")

# Once a second: a lost actor is noticed within about this long (the driver's poll).
PING_EVERY_S = 1.0


class StopRequest:
    """A thread-safe flag with a reason; `hard` once a signal comes while stopping.

    Only a signal makes a stop hard (a second Ctrl-C): a watch that reports the same lost
    actor at every turn must not cut off the calls whose answers the grace is there for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reason: str | None = None
        self.hard = False
        self.signalled = False  # a signal asked for the stop

    @property
    def requested(self) -> bool:
        return self.reason is not None

    def set(self, reason: str | None, *, hard: bool = False) -> None:
        if reason is None:
            return
        with self._lock:
            self.reason = self.reason or reason
            self.hard = self.hard or hard

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Asked again while stopping (a second Ctrl-C, or Ctrl-C during a stop the job
        # began itself): now.
        again = self.requested
        self.signalled = True
        self.set(f"stopped by {signal.Signals(signum).name}", hard=again)

    @contextlib.contextmanager
    def on_signals(self) -> Iterator[None]:
        """Route SIGTERM and SIGINT to this request while the block runs (main thread
        only: elsewhere, as in a notebook's worker thread, signals stay as they were)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        for s in saved:
            signal.signal(s, self._on_signal)
        try:
            yield
        finally:
            for s, handler in saved.items():
                signal.signal(s, handler)


class ActorWatch:
    """Actors the job cannot go on without (its budget, the simulator), pinged about once
    a second without blocking: a ping that fails says the actor is gone.

    A busy actor answers late, not never; only an actor Ray reports dead counts as lost."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.actors: dict[str, Any] = {}
        self._pings: dict[str, Any] = {}
        self._last = 0.0
        self._clock = clock
        self.lost_reason: str | None = None

    def add(self, what: str, actor: Any) -> None:
        self.actors[what] = actor

    def _ping(self, what: str) -> None:
        self._pings[what] = self.actors[what].__ray_ready__.remote()

    def lost(self, wait_s: float = 0.0) -> str | None:
        """A one-line reason when a watched actor is gone; None while all are there.
        With `wait_s`, waits up to that long for the answers (after a unit failed because
        some actor was lost: was it one of these?)."""
        if self.lost_reason is not None or not self.actors:
            return self.lost_reason
        now = self._clock()
        if wait_s <= 0 and now - self._last < PING_EVERY_S:
            return None
        self._last = now
        for what in self.actors:
            if what not in self._pings:
                self._ping(what)
        refs = list(self._pings.values())
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=wait_s)
        ready_ids = {r.hex() for r in ready}
        for what, ref in list(self._pings.items()):
            if ref.hex() not in ready_ids:
                continue
            del self._pings[what]
            try:
                ray.get(ref, timeout=0)
            except (RayActorError, GetTimeoutError) as exc:
                if isinstance(exc, RayActorError):
                    self.lost_reason = f"{what} was lost (its process died); {RERUN_HINT}"
                    return self.lost_reason
        return None


class RowGate:
    """A worker's side of a stop: rows not started do not start, rows in flight get
    `grace_s` to finish and are cancelled after it.

        gate = RowGate()
        outcome = await gate.run(lambda: executor.run(...))   # None: the stop came first
        gate.request(grace_s=20.0)                             # from the driver
    """

    def __init__(self) -> None:
        self.stopping = False
        self.hard = False
        self._tasks: set[asyncio.Task[Any]] = set()

    def request(self, grace_s: float) -> None:
        self.stopping = True
        if grace_s <= 0:
            self._cancel()
        else:
            asyncio.get_running_loop().call_later(grace_s, self._cancel)

    def _cancel(self) -> None:
        self.hard = True
        for task in list(self._tasks):
            task.cancel()

    async def run(self, make: Callable[[], Awaitable[T]]) -> T | None:
        if self.stopping:
            return None
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            return await make()
        except asyncio.CancelledError:
            if not self.hard:
                raise
            task.uncancel()  # our own cancel, answered: the unit goes on to journal
            return None
        finally:
            self._tasks.discard(task)
