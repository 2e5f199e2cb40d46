"""The answer journal: what it keeps, how it is read back, and which rows it answers."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.calls.outcome import CallRecord, RowOutcome
from pipeline.engine.journal import (
    UnitJournal,
    clear_settled,
    journalled_usd,
    settled_parts,
    take_back,
    worth_keeping,
)
from pipeline.jobfolder import JobFolder
from pipeline.store import Store, table_to_parquet_bytes
from schemas.records import FileEntry, UnitCommit


def answered(rid: str, *, ok: bool = True, error: str | None = None) -> RowOutcome:
    call = CallRecord("p", "gpt-4o-mini", "cheap", 120, 3, "ok" if ok else "invalid_output", 1)
    out = RowOutcome(id=rid, tier="cheap", ok=ok, output="billing" if ok else None, calls=[call])
    out.provider, out.model, out.error_type = "p", "gpt-4o-mini", error
    return out


def flat(outcomes: Sequence[RowOutcome]) -> list[float]:
    return [0.01] * len(outcomes)


async def written(j: UnitJournal, n: int) -> None:
    while j.written < n:
        await asyncio.sleep(0.01)


def journal(tmp_path: Path, unit: int = 3, every_rows: int = 2) -> UnitJournal:
    folder = JobFolder(Store.open(str(tmp_path)))
    return UnitJournal(folder, unit, flat, every_rows=every_rows, every_s=0.05)


def test_paid_answers_are_kept_retryable_and_free_ones_are_not() -> None:
    assert worth_keeping(answered("a"))
    assert worth_keeping(answered("b", ok=False, error="invalid_output"))  # billed all the same
    assert not worth_keeping(answered("c", ok=False, error="budget_exhausted"))
    # An error met on the way (the provider gone after a paid, rejected answer) is asked
    # again by the next run, not kept as the row's final word.
    assert not worth_keeping(answered("f", ok=False, error="connection_failed"))
    unbilled = RowOutcome(id="d", tier="cheap", ok=False, error_type="bad_request")
    assert not worth_keeping(unbilled)
    cached = answered("e")
    cached.calls = [CallRecord("p", "m", "cheap", 1, 1, "cached", 0)]
    assert not worth_keeping(cached)


def test_answers_written_as_they_come_are_read_back_whole(tmp_path: Path) -> None:
    async def go() -> None:
        j = journal(tmp_path)
        async with j:
            for rid in ("a", "b", "c"):
                j.add(answered(rid))
            j.add(answered("x", ok=False, error="deferred"))
            # Two answers make a part, written in the background without waiting for the end.
            await asyncio.wait_for(written(j, 2), timeout=5)
        assert j.written == 3  # the rest is written when the block ends

    asyncio.run(go())
    back = journal(tmp_path).read()
    assert sorted(back) == ["a", "b", "c"]
    assert back["a"] == answered("a")
    assert journal(tmp_path).spent_usd() == 0.03
    assert journal(tmp_path, unit=4).read() == {}  # units do not see each other's answers
    journal(tmp_path).clear()
    assert journal(tmp_path).read() == {}


def test_take_back_answers_its_rows_and_their_identical_rows() -> None:
    earlier = {"a": answered("a")}
    done, ask = take_back(["a", "b", "c", "d"], ["k1", "k1", "k2", None], earlier)
    assert ask == [2, 3]
    assert done[0] is earlier["a"]
    assert done[1].id == "b" and done[1].output == "billing"
    assert [c.call_status for c in done[1].calls] == ["duplicate"]  # $0: paid once, for "a"
    assert take_back(["a"], [None], {}) == ({}, [0])


def test_block_ends_when_its_last_answer_and_its_end_come_in_one_turn(tmp_path: Path) -> None:
    """A unit's last answer wakes the journal's writer, and the unit's block ends before
    the writer has run: the block must still end, with the answer written. (On Python
    3.11, `asyncio.wait_for` dropped a cancel that met a wait already finished: the
    writer went on forever and its unit never reached its commit, issue 19.)"""
    j = journal(tmp_path, every_rows=1)
    j.every_s = 60.0  # only an answer wakes the writer

    async def unit_block() -> None:
        async with j:
            for _ in range(3):
                await asyncio.sleep(0)  # the writer starts and waits for answers
            j.add(answered("a"))  # wakes the writer; the block ends in this same turn

    async def go() -> bool:
        block = asyncio.create_task(unit_block())
        done, _ = await asyncio.wait({block}, timeout=5)
        return block in done

    assert asyncio.run(go()), "the journal's block did not end: its unit could not commit"
    assert j.written == 1
    assert sorted(journal(tmp_path).read()) == ["a"]


def test_a_part_being_written_when_the_block_ends_is_written_before_it_ends(
    tmp_path: Path,
) -> None:
    """The unit's block ends while the writer is in the middle of writing a part (slow
    storage): the block must wait for that write. (It cancelled the writer instead: the
    part's answers left memory, their write went on unawaited in its thread, and the unit
    went on to commit and clear its journal with the part not yet down, or landing after
    the clear; a crash in between paid for those answers again, issue 19.)"""
    j = journal(tmp_path, every_rows=2)
    store = j.folder.store
    writing, release = threading.Event(), threading.Event()
    plain_write = store.write_bytes

    def slow_write(rel: str, data: bytes) -> None:
        writing.set()
        release.wait(timeout=30)  # only a broken test waits this long
        plain_write(rel, data)

    store.write_bytes = slow_write  # type: ignore[method-assign]
    on_disk_at_end: list[str] = []

    async def unit_block(ending: asyncio.Event) -> None:
        async with j:
            j.add(answered("a"))
            j.add(answered("b"))  # a part's worth: the writer starts writing it
            while not writing.is_set():
                await asyncio.sleep(0.01)
            ending.set()
        on_disk_at_end.extend(sorted(journal(tmp_path).read()))

    async def go() -> None:
        ending = asyncio.Event()
        block = asyncio.create_task(unit_block(ending))
        await ending.wait()
        for _ in range(20):  # the block's end has run as far as it can without the write
            await asyncio.sleep(0)
        release.set()
        await asyncio.wait_for(block, timeout=10)

    asyncio.run(go())
    assert on_disk_at_end == ["a", "b"], "the block ended before its last part was written"
    assert j.written == 2


def commit_unit(folder: JobFolder, unit: int, retryable: Sequence[str] = ()) -> UnitCommit:
    """A unit's marker as `write_unit` leaves it; its errors file holds `retryable` rows."""
    errors = pa.table({"id": list(retryable), "retryable": [True] * len(retryable)})
    path = f"errors/unit-{unit:05d}.parquet"
    data = table_to_parquet_bytes(errors)
    folder.store.write_bytes(path, data)
    entry = FileEntry(path=path, rows=len(retryable), sha256=hashlib.sha256(data).hexdigest())
    commit = UnitCommit(
        job_id="j", unit=unit, generation=0, rows_retryable=len(retryable),
        source="a.parquet", row_groups=[0], row_offset=0, row_count=4, rows_ok=4 - len(retryable),
        rows_error=len(retryable), rows_duplicate=0, rows_recovered=0, cost_usd=0.04, calls=4,
        results=entry, costs=entry, errors=entry, written_at="2026-01-01T00:00:00+00:00",
    )  # fmt: skip
    folder.write_commit(commit)
    return commit


def journalled(folder: JobFolder, unit: int, ids: Sequence[str]) -> None:
    """A part of `unit`'s journal holding answers to `ids` (one hand-out of the unit)."""
    j = UnitJournal(folder, unit, flat)
    for rid in ids:
        j.add(answered(rid))
    asyncio.run(j.flush())


def test_journals_left_beside_committed_units_are_settled_and_cleared(tmp_path: Path) -> None:
    """A run killed between a unit's marker and the clearing of its journal leaves the
    journal behind. The marker counts: the next run clears it, and the budget does not
    count its answers again. Only a part answering a row the commit left retryable (a
    later hand-out of the unit, stopped before its own commit) is kept, to be taken back."""
    folder = JobFolder(Store.open(str(tmp_path)))
    committed = {
        0: commit_unit(folder, 0),
        1: commit_unit(folder, 1, retryable=["1-d"]),
    }
    journalled(folder, 0, ["0-a", "0-b"])  # answers now in unit 0's committed files
    journalled(folder, 1, ["1-a", "1-b", "1-c"])  # the run that committed unit 1
    journalled(folder, 1, ["1-d"])  # the next hand-out, stopped: its answer not committed
    journalled(folder, 2, ["2-a"])  # unit 2 is not committed: its journal is taken back

    settled = settled_parts(folder, committed)
    assert sorted(settled) == [0, 1] and len(settled[1]) == 1
    # Before they are cleared, a rerun's budget would count unit 1's committed answers.
    assert journalled_usd(folder, [1]) == pytest.approx(0.04)

    assert clear_settled(folder, committed) == 2
    assert settled_parts(folder, committed) == {}
    assert journal(tmp_path, unit=0).read() == {}
    assert sorted(journal(tmp_path, unit=1).read()) == ["1-d"]
    assert journalled_usd(folder, [1]) == pytest.approx(0.01)  # spent, not yet committed
    assert sorted(journal(tmp_path, unit=2).read()) == ["2-a"]
