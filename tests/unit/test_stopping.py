"""A stop: asked once it is graceful, asked twice it is immediate; rows in its grace."""

from __future__ import annotations

import asyncio
import os
import signal

from pipeline.engine.stopping import RowGate, StopRequest


def test_a_stop_turns_hard_on_a_signal_not_on_the_same_reason_again() -> None:
    stop = StopRequest()
    stop.set(None)  # nothing to say: no stop
    assert not stop.requested
    lost = "the simulator actor of provider 'sim' was lost"
    stop.set(lost)
    stop.set(lost)  # the watch says it again at its next turn: still graceful
    assert stop.requested and not stop.hard and stop.reason == lost
    with stop.on_signals():
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while stopping: now
    assert stop.hard and stop.reason == lost


def test_signals_are_routed_to_the_request_only_inside_the_block() -> None:
    stop = StopRequest()
    before = signal.getsignal(signal.SIGINT)
    with stop.on_signals():
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt: a stop instead
        assert stop.reason == "stopped by SIGINT" and stop.signalled and not stop.hard
        os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C
        assert stop.hard
    assert signal.getsignal(signal.SIGINT) is before


def test_rows_in_flight_finish_within_the_grace_and_are_cut_off_after_it() -> None:
    async def go() -> None:
        gate = RowGate()

        async def answer(delay: float) -> str:
            await asyncio.sleep(delay)
            return "answered"

        fast = asyncio.create_task(gate.run(lambda: answer(0.01)))
        slow = asyncio.create_task(gate.run(lambda: answer(30.0)))
        await asyncio.sleep(0)  # both rows are in flight
        gate.request(grace_s=0.2)
        assert await fast == "answered"  # finished inside its grace
        assert await asyncio.wait_for(slow, timeout=5) is None  # cut off at the grace's end
        assert await gate.run(lambda: answer(0.0)) is None  # not started after the stop

    asyncio.run(go())
