"""Answers kept as they arrive, so an interrupted unit does not pay for them again.

    journal = UnitJournal(folder, unit=7, price=row_costs)
    earlier = journal.read()                 # id -> RowOutcome an earlier run paid for
    async with journal:                      # writes every `every_rows` answers or `every_s`
        journal.add(outcome)                 # ...and what is left when the block ends
    journal.clear()                          # after the unit's commit marker

A unit's rows count as done only when its marker is written (data first, marker last);
until then its answers live in memory, and a crash, a stop or a lost node would throw
away every answered row of every unit in flight. The journal writes them in small parts
beside the unit's outputs (`_journal/unit-<n>/`, named by `pipeline.jobfolder`); the next
run of the unit takes them back at $0 instead of asking again, and its commit records
them once, with the cost the first run paid (`rows_recovered` in the summary). A journal
left beside a committed unit (a crash between its marker and the clear) is removed when
the next run starts (`clear_settled`): the marker is what counts.

Only answers that cost money to redo are kept: a result or an `invalid_output` error,
with a billed call (an error met on the way, `budget_exhausted` say, is asked again).
A part is one JSON object per line: `{"id", "cost_usd", "outcome"}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.calls.cache import FREE_STATUSES
from pipeline.calls.outcome import CallRecord, RowOutcome
from pipeline.calls.reuse import AnswerReuse
from pipeline.errors import TierlineError
from pipeline.jobfolder import JobFolder
from schemas.records import UnitCommit

log = logging.getLogger(__name__)

ANSWER_ERRORS = frozenset({"invalid_output"})  # errors that asking again would not change
RowCosts = Callable[[Sequence[RowOutcome]], list[float]]  # USD per outcome, as billed
_OUTCOME_FIELDS = {f.name for f in fields(RowOutcome)}


def worth_keeping(outcome: RowOutcome) -> bool:
    """A paid answer that a rerun would otherwise pay for again: a result, or an error
    the answer itself decided (`invalid_output`). An error from the way there (a provider
    down, a timeout, a lost simulator, a budget) is asked again by the next run."""
    if not outcome.ok and outcome.error_type not in ANSWER_ERRORS:
        return False
    return any(c.call_status not in FREE_STATUSES for c in outcome.calls)


_CALL_FIELDS = tuple(f.name for f in fields(CallRecord))


def to_record(outcome: RowOutcome, cost_usd: float) -> dict[str, Any]:
    # Field by field, not `dataclasses.asdict`: its recursive deep copy was 15% of a
    # worker's CPU per row at zero latency; the values here are plain and only read.
    doc = {name: getattr(outcome, name) for name in _OUTCOME_FIELDS}
    doc["calls"] = [{k: getattr(c, k) for k in _CALL_FIELDS} for c in outcome.calls]
    return {"id": outcome.id, "cost_usd": cost_usd, "outcome": doc}


def from_record(record: dict[str, Any]) -> RowOutcome:
    doc = {k: v for k, v in record["outcome"].items() if k in _OUTCOME_FIELDS}
    doc["calls"] = [CallRecord(**c) for c in doc.get("calls", [])]
    return RowOutcome(**doc)


class UnitJournal:
    def __init__(
        self,
        folder: JobFolder,
        unit: int,
        price: RowCosts,
        *,
        every_rows: int = 32,
        every_s: float = 2.0,
    ) -> None:
        self.folder, self.unit, self.price = folder, unit, price
        # Each journal (one hand-out of a unit) names its own parts: never overwritten.
        self.writer = uuid.uuid4().hex[:12]
        self.every_rows, self.every_s = every_rows, every_s
        self.pending: list[RowOutcome] = []
        self.written = 0
        self._seq = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # --- reading ---------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """Every record of the unit's journal; a part that cannot be read is skipped
        (its rows are asked again, as they would have been without a journal)."""
        return [
            r for path in self.folder.journal_parts(self.unit) for r in _part(self.folder, path)
        ]

    def read(self) -> dict[str, RowOutcome]:
        """id -> the answer an earlier run of this unit paid for."""
        found: dict[str, RowOutcome] = {}
        for record in self.records():
            with contextlib.suppress(KeyError, TypeError, ValueError):
                found[str(record["id"])] = from_record(record)
        return found

    def spent_usd(self) -> float:
        """What the journalled answers cost: spent, though no marker records it yet."""
        return sum(float(r.get("cost_usd") or 0.0) for r in self.records())

    def clear(self) -> None:
        self.folder.clear_journal(self.unit)

    # --- writing ---------------------------------------------------------------------

    def add(self, outcome: RowOutcome) -> None:
        if worth_keeping(outcome):
            self.pending.append(outcome)
            if len(self.pending) >= self.every_rows:
                self._wake.set()

    async def flush(self) -> None:
        """Write what is pending as one new part (in a thread: S3 or fsync)."""
        async with self._lock:
            batch, self.pending = self.pending, []
            if not batch:
                return
            path = self.folder.journal_part(self.unit, self.writer, self._seq)
            self._seq += 1
            try:
                # Pricing and encoding too: in the loop they held up every call in
                # flight (10% of a worker's loop at 50 ms answers, 64 in flight).
                await asyncio.to_thread(self._write, path, batch)
            except TierlineError:
                self.pending[:0] = batch  # kept for the next try; the unit goes on
                raise
            self.written += len(batch)

    def _write(self, path: str, batch: Sequence[RowOutcome]) -> None:
        costs = self.price(batch)
        lines = [json.dumps(to_record(o, c)) for o, c in zip(batch, costs, strict=True)]
        self.folder.store.write_bytes(path, ("\n".join(lines) + "\n").encode())

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            # Not `asyncio.wait_for`: on Python 3.11 it drops a cancel that comes as the
            # wait ends (a unit's last answer wakes this writer, and the unit's block ends
            # in the same turn); the writer then never ends, nor does the block.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.every_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except TierlineError as exc:  # storage trouble: try again at the next turn
                log.warning("journal of unit %s not written: %s", self.unit, exc)
            # Never more than a few writes a second, however fast answers come.
            await asyncio.sleep(max(0.0, 0.2 - (time.monotonic() - started)))

    async def __aenter__(self) -> UnitJournal:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            # Not while it writes a part: cancelled there, the part's answers would leave
            # memory with their write still going on, unawaited, in its thread; the unit
            # could commit and clear its journal before (or a crash come before) it lands.
            try:
                await self._lock.acquire()
            finally:  # cancelled while waiting, the writer must still end
                self._task.cancel()
            self._lock.release()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.flush()  # what came back before the end (a stop, an error) is kept
        except TierlineError as e:  # the unit's own files hold them once it commits
            log.warning("journal of unit %s not written: %s", self.unit, e)


def _part(folder: JobFolder, path: str) -> list[dict[str, Any]]:
    try:
        text = folder.store.read_bytes(path).decode()
        return [json.loads(line) for line in text.splitlines() if line]
    except (OSError, ValueError, TierlineError) as exc:
        log.warning("journal part %s not read: %s", path, exc)
        return []


def settled_parts(folder: JobFolder, committed: Mapping[int, UnitCommit]) -> dict[int, list[str]]:
    """unit -> journal parts whose answers its commit marker already holds, left by a
    run that ended between the marker and the clearing of the journal. The marker is
    what counts; kept, a rerun's budget would count those answers again. A committed
    unit with retryable rows keeps a part that answers one of them: a later hand-out
    of the unit wrote it, and was stopped before its own commit.

        settled_parts(folder, plan.committed)    # {4: ["_journal/unit-00004/part-..."]}
    """
    settled: dict[int, list[str]] = {}
    for unit, parts in folder.journals().items():
        commit = committed.get(unit)
        if commit is None:
            continue  # not committed: its journal is what a rerun takes back
        try:
            retry = _retryable_ids(folder, commit) if commit.rows_retryable else frozenset()
        except (OSError, ValueError, pa.ArrowException, TierlineError) as exc:
            log.warning("unit %s: errors not read, its journal is kept: %s", unit, exc)
            continue
        done = [p for p in parts if not retry.intersection(_ids(folder, p))]
        if done:
            settled[unit] = done
    return settled


def clear_settled(folder: JobFolder, committed: Mapping[int, UnitCommit]) -> int:
    """Remove the `settled_parts` (at a run's start); how many were removed. Storage
    trouble is logged, not raised: a stale part costs a rerun nothing but budget."""
    removed = 0
    try:
        for parts in settled_parts(folder, committed).values():
            for path in parts:
                folder.store.delete(path)
                removed += 1
    except (OSError, TierlineError) as exc:
        log.warning("journals of committed units not cleared: %s", exc)
    return removed


def _ids(folder: JobFolder, path: str) -> set[str]:
    return {str(r.get("id")) for r in _part(folder, path)}


def _retryable_ids(folder: JobFolder, commit: UnitCommit) -> frozenset[str]:
    data = folder.store.read_bytes(commit.errors.path)
    errors = pq.read_table(pa.BufferReader(data), columns=["id", "retryable"])
    flags = errors.column("retryable").to_pylist()
    return frozenset(
        str(i) for i, r in zip(errors.column("id").to_pylist(), flags, strict=True) if r
    )


def journalled_usd(folder: JobFolder, units: Iterable[int]) -> float:
    """What the journalled answers of `units` cost: money spent that no commit marker
    records yet, so a rerun's budget counts it."""
    return sum(UnitJournal(folder, u, _unpriced).spent_usd() for u in units)


def journalled_rows(folder: JobFolder, units: Iterable[int]) -> int:
    """Answers kept in the journals of `units`: what a rerun takes back at $0."""
    return sum(len(UnitJournal(folder, u, _unpriced).read()) for u in units)


def _unpriced(outcomes: Sequence[RowOutcome]) -> list[float]:
    raise AssertionError("a journal opened for reading does not write")


def take_back(
    ids: Sequence[str], keys: Sequence[str | None], earlier: dict[str, RowOutcome]
) -> tuple[dict[int, RowOutcome], list[int]]:
    """Rows an earlier run answered (index -> its outcome; a row identical to one of them,
    by request key, gets that answer as a $0 duplicate), and the indices still to ask.

        done, ask = take_back(["a", "b", "c"], ["k1", "k1", "k2"], {"a": outcome})
        # done == {0: outcome, 1: <duplicate of outcome for "b">}, ask == [2]
    """
    if not earlier:
        return {}, list(range(len(ids)))
    done: dict[int, RowOutcome] = {}
    by_key: dict[str, RowOutcome] = {}
    for i, rid in enumerate(ids):
        if rid in earlier:
            done[i] = earlier[rid]
            if keys[i] is not None:
                by_key.setdefault(keys[i], earlier[rid])  # type: ignore[arg-type]
    ask = []
    for i, rid in enumerate(ids):
        if i in done:
            continue
        key = keys[i]
        if key is not None and key in by_key:
            done[i] = AnswerReuse.duplicate(rid, by_key[key])
        else:
            ask.append(i)
    return done, ask
