"""`StallWatch`: when a run without progress stops, and what its reason tells the user."""

from __future__ import annotations

from pipeline.engine.stall import StallWatch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def snap(rows: int, in_flight: int = 0, batch_waiting: int = 0) -> dict[str, object]:
    return {"rows_done": rows, "in_flight": {"p/m": in_flight}, "batch_waiting": batch_waiting}


def test_rows_answered_keep_the_run_going_and_silence_stops_it() -> None:
    clock = Clock()
    watch = StallWatch(60, clock=clock)
    for rows in range(1, 10):
        clock.now += 30
        watch.observe([snap(rows * 10, in_flight=4)], workers=1)
        assert watch.stalled() is None
    clock.now += 59
    watch.observe([snap(90, in_flight=4)], workers=1)  # no new row
    assert watch.stalled() is None
    clock.now += 2
    reason = watch.stalled()
    assert reason is not None
    assert reason.startswith("no progress for 61 s")
    assert "run.stall_timeout_s is 60" in reason and "4 calls in flight" in reason


def test_a_unit_ending_is_progress() -> None:
    clock = Clock()
    watch = StallWatch(60, clock=clock)
    watch.observe([snap(5)], workers=1)
    clock.now += 50
    watch.unit_ended()
    clock.now += 50
    assert watch.stalled() is None


def test_workers_that_do_not_answer_are_named() -> None:
    clock = Clock()
    watch = StallWatch(10, clock=clock)
    watch.observe([snap(0)], workers=3)
    clock.now += 11
    reason = watch.stalled()
    assert reason is not None and "2 of 3 busy workers not answering" in reason


def test_waiting_on_provider_batches_is_not_a_stall_and_none_turns_it_off() -> None:
    clock = Clock()
    watch = StallWatch(10, clock=clock)
    for _ in range(100):  # hours of a batch in flight, no row answered meanwhile
        clock.now += 60
        watch.observe([snap(0, batch_waiting=1)], workers=1)
        assert watch.stalled() is None
    off = StallWatch(None, clock=clock)
    clock.now += 10**6
    assert off.stalled() is None
