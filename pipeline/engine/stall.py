"""A run that makes no progress ends, with what it was waiting for, instead of hanging.

    watch = StallWatch(timeout_s=spec.run.stall_timeout_s)
    watch.unit_ended()                         # a unit came back (done or failed)
    watch.observe(snapshots, workers=3)        # the workers' live figures, once a second
    stop.set(watch.stalled())                  # None, or the reason the run stops

Progress is a row answered anywhere or a unit that came back. Waiting on provider
batches is not a stall (a batch may take hours by design), nor is time before the run's
first hand-out. What the reason names lets the user tell the causes apart: calls in
flight that never come back, workers that do not answer at all (blocked, or never
placed by Ray), or workers that are idle while their units never end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any


class StallWatch:
    def __init__(
        self, timeout_s: float | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._since = clock()
        self._rows = -1
        self._state = "no worker has answered yet"

    def unit_ended(self) -> None:
        self._since = self._clock()

    def observe(self, snapshots: Sequence[dict[str, Any]], workers: int) -> None:
        """The live figures of the workers that answered (`workers` were asked)."""
        rows = sum(int(s.get("rows_done", 0)) for s in snapshots)
        if rows != self._rows or any(s.get("batch_waiting") for s in snapshots):
            self._rows = rows
            self._since = self._clock()
        in_flight = sum(sum(s.get("in_flight", {}).values()) for s in snapshots)
        silent = workers - len(snapshots)
        parts = [f"{in_flight} calls in flight"]
        if silent:
            parts.append(
                f"{silent} of {workers} busy workers not answering (blocked, or not placed "
                "by Ray: see `ray status`)"
            )
        self._state = ", ".join(parts)

    def stalled(self) -> str | None:
        if self.timeout_s is None:
            return None
        idle = self._clock() - self._since
        if idle < self.timeout_s:
            return None
        return (
            f"no progress for {idle:.0f} s (no row answered, no unit ended; "
            f"run.stall_timeout_s is {self.timeout_s:g}): {self._state}"
        )
