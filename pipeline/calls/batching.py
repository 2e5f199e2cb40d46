"""A provider whose calls go out through its batch API: half the price, answers by a deadline.

    batching = BatchingProvider(sync=adapter, batches=batch_adapter, journal=journal,
                                plan=BatchPlan(mode="auto", deadline_at=t, turnaround_s=3600))
    response = await batching.complete(session, request)    # response.mode == "batch"

It has the per-call `Provider` shape, so the row executor's retries, fallback, cascades,
votes and long documents work unchanged: each caller awaits its own answer, while the
requests that arrive together (a unit's rows, then the rows it escalates) are gathered
into one provider batch. A request's `custom_id` is a hash of its body, so the same row
asks the same thing on every run.

Exactly once: a batch's id and its custom_ids are written to the job folder (the journal)
right after it is accepted and before any polling; a rerun after a crash finds them there
and re-attaches to the batch instead of submitting again. Requests a batch did not answer
(expired, errored, cancelled, missing from its output) fail with a transient error, so
the executor asks again: by batch, or synchronously when the deadline no longer allows a
batch. Under `auto`, a batch still running when the deadline comes near is cancelled;
what it answered is kept and the rest is finished synchronously.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol, TypeVar

from pipeline.errors import BadRequest, ProviderUnavailable, TierlineError
from pipeline.jobfolder import BatchIntent
from pipeline.limits.headroom import UNLIMITED, Headroom
from pipeline.providers.base import ChatRequest, ChatResponse, Provider
from pipeline.providers.batch import BatchItem, BatchProvider, BatchStatus, missing_ids

if TYPE_CHECKING:
    import aiohttp

    from pipeline.calls.execute import Limiter
    from schemas.job import Deployment

log = logging.getLogger(__name__)

MAX_REQUEUES = 2
# A batch found by listing is matched to an intent created up to this long before it
# (the provider's clock and ours may differ by that much).
CLOCK_SLACK_S = 600.0
GROUP_KEY = "tierline_group"
POLL_ATTEMPTS = 8  # transient failures in a row before a batch's poll gives up
T = TypeVar("T")

SyncCall = Callable[["aiohttp.ClientSession", ChatRequest], Awaitable[ChatResponse]]


class Journal(Protocol):
    """Where batch ids and their custom_ids are kept (pipeline.jobfolder.BatchJournal)."""

    def find(self, provider: str, custom_ids: list[str]) -> dict[str, list[str]]: ...

    def batch_ids(self, provider: str) -> set[str]: ...

    def intend(self, provider: str, intent: BatchIntent) -> None: ...

    def intents(self, provider: str) -> list[BatchIntent]: ...

    def forget(self, provider: str, token: str) -> None: ...

    def ended(
        self, provider: str, batch_id: str, status: str, created_at: float, ended_at: float
    ) -> None: ...

    def record(
        self, provider: str, batch_id: str, custom_ids: list[str], token: str | None = None
    ) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchPlan:
    """When to batch: `mode` batch always batches; auto batches only while a batch can
    end before `deadline_at` (epoch seconds) with `margin` x the expected turnaround."""

    mode: str = "batch"  # batch | auto
    deadline_at: float | None = None
    turnaround_s: float = 3600.0
    margin: float = 1.5
    sync_reserve_s: float = 300.0  # left for finishing taken-back rows synchronously
    poll_s: float = 30.0
    flush_s: float = 0.5  # a batch goes out once no new request came for this long

    def may_batch(self, now: float) -> bool:
        if self.mode == "batch" or self.deadline_at is None:
            return True
        return now + self.turnaround_s * self.margin + self.sync_reserve_s <= self.deadline_at

    def must_take_back(self, now: float) -> bool:
        return (
            self.mode == "auto"
            and self.deadline_at is not None
            and now >= self.deadline_at - self.sync_reserve_s
        )


def custom_id(provider: str, request: ChatRequest) -> str:
    """Deterministic id of a request (1-64 of [A-Za-z0-9_-], as Anthropic requires)."""
    body = json.dumps(
        [provider, request.model, [(m.role, m.content) for m in request.messages],
         request.max_tokens, request.temperature, request.logprobs],
        ensure_ascii=False,
    )  # fmt: skip
    return "t-" + hashlib.sha256(body.encode()).hexdigest()[:40]


class BatchingProvider:
    def __init__(
        self,
        *,
        name: str,
        sync: Provider,
        batches: BatchProvider,
        journal: Journal,
        plan: BatchPlan,
        sync_call: SyncCall | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name = name
        self.sync = sync
        self.batches = batches
        self.journal = journal
        self.plan = plan
        # Synchronous calls go through the quota limiter (the worker hands that in).
        self.sync_call: SyncCall = sync_call or sync.complete
        self.clock, self.sleep = clock, sleep
        self._pending: dict[str, tuple[ChatRequest, asyncio.Future[ChatResponse]]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches_submitted = 0
        self.batches_attached = 0
        # custom_ids an ended batch left unanswered: never re-attached to it again, and
        # sent in a new batch at most MAX_REQUEUES times before the executor hears of it.
        self._spent: set[str] = set()
        self._requeues: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"BatchingProvider(name={self.name!r}, mode={self.plan.mode!r})"

    @property
    def waiting(self) -> int:
        """Requests gathering for a batch, and batches submitted but not yet answered."""
        return len(self._pending) + len(self._tasks)

    async def complete(self, session: aiohttp.ClientSession, request: ChatRequest) -> ChatResponse:
        if not self.plan.may_batch(self.clock()):
            return await self.sync_call(session, request)
        cid = custom_id(self.name, request)
        entry = self._pending.get(cid)
        if entry is None:
            entry = (request, asyncio.get_running_loop().create_future())
            self._pending[cid] = entry
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_when_quiet(session))
        return await asyncio.shield(entry[1])

    async def close(self) -> None:
        for task in list(self._tasks) + ([self._flusher] if self._flusher else []):
            task.cancel()

    async def _flush_when_quiet(self, session: aiohttp.ClientSession) -> None:
        seen = -1
        while len(self._pending) != seen:
            seen = len(self._pending)
            await self.sleep(self.plan.flush_s)
        taken, self._pending = self._pending, {}
        task = asyncio.create_task(self._run(session, taken))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self,
        session: aiohttp.ClientSession,
        taken: dict[str, tuple[ChatRequest, asyncio.Future[ChatResponse]]],
    ) -> None:
        try:
            ids = list(taken)
            # Batches an earlier run submitted (not those that already left a request out).
            groups = self.journal.find(self.name, [c for c in ids if c not in self._spent])
            attached = {cid for cids in groups.values() for cid in cids}
            self.batches_attached += len(groups)
            wanted = {cid for cid in ids if cid not in attached}
            for bid, cids in (await self._adopt(session, wanted) if wanted else {}).items():
                groups.setdefault(bid, []).extend(cids)
                wanted.difference_update(cids)
            fresh = [BatchItem(cid, taken[cid][0]) for cid in ids if cid in wanted]
            for group in self.batches.split(fresh) if fresh else []:
                groups.update(await self._submit(session, group))
            await asyncio.gather(
                *(self._finish(session, bid, cids, taken) for bid, cids in groups.items())
            )
        except BadRequest as exc:
            # Refused whole (too large, a model it will not batch): under auto, sync.
            if self.plan.mode == "auto":
                log.warning("%s: batch refused (%s); calling synchronously", self.name, exc)
                await self._sync_rest(session, taken)
            _fail_rest(taken, exc)
        except Exception as exc:  # a broken batch must not leave callers waiting
            _fail_rest(taken, ProviderUnavailable(f"{self.name}: batch failed: {exc}"))
            if not isinstance(exc, TierlineError):
                raise
        finally:
            _fail_rest(taken, ProviderUnavailable(f"{self.name}: batch ended without it"))

    async def _submit(
        self, session: aiohttp.ClientSession, group: list[BatchItem]
    ) -> dict[str, list[str]]:
        """One batch out, its intent written before and its id right after (no polling
        before the id is kept): a crash between the two is found again by `_adopt`."""
        cids = [item.custom_id for item in group]
        token = "g-" + uuid.uuid4().hex[:24]
        self.journal.intend(self.name, BatchIntent(token, tuple(cids), time.time()))
        metadata = {"tierline": self.name, GROUP_KEY: token}
        try:
            status = await self.batches.submit(session, group, metadata=metadata)
        except BadRequest:
            self.journal.forget(self.name, token)  # refused: no batch exists
            raise
        self.batches_submitted += 1
        self.journal.record(self.name, status.id, cids, token=token)
        return {status.id: cids}

    async def _adopt(
        self, session: aiohttp.ClientSession, wanted: set[str]
    ) -> dict[str, list[str]]:
        """Batches an earlier run submitted but died before recording: an intent left in
        the journal is matched to the provider's list of recent batches (by the token in
        its metadata; where the provider keeps none, by request count and creation time,
        the earliest unclaimed one after the intent). Matched: attach to it, as to a
        recorded batch. Not found: the submit never reached the provider; ask afresh.
        A wrong match costs a wait, never a wrong answer: results are matched by
        custom_id, and requests the batch did not hold are asked again."""
        intents = [i for i in self.journal.intents(self.name) if wanted.intersection(i.custom_ids)]
        if not intents:
            return {}
        listed = await self.batches.recent(session, min(i.at for i in intents) - CLOCK_SLACK_S)
        claimed = self.journal.batch_ids(self.name)
        found: dict[str, list[str]] = {}
        for intent in sorted(intents, key=lambda i: i.at):
            match = _match(intent, listed, claimed)
            if match is None:
                log.info("%s: a batch intended before a crash never reached it", self.name)
                self.journal.forget(self.name, intent.token)
                continue
            log.warning("%s: found batch %s submitted before a crash; attaching", self.name, match)
            claimed.add(match)
            self.journal.record(self.name, match, list(intent.custom_ids), token=intent.token)
            self.batches_attached += 1
            found[match] = [cid for cid in intent.custom_ids if cid in wanted]
            wanted = wanted.difference(intent.custom_ids)
        return found

    async def _finish(
        self,
        session: aiohttp.ClientSession,
        batch_id: str,
        cids: list[str],
        taken: dict[str, tuple[ChatRequest, asyncio.Future[ChatResponse]]],
    ) -> None:
        status = await self._wait(session, batch_id)
        took_back = status.provider_status in {"cancelled", "canceled", "cancelling"} or (
            self.plan.must_take_back(self.clock())
        )
        if status.created_at is not None and status.ended_at is not None:
            # Anthropic says "ended" whatever became of the requests: its counts tell.
            how = status.provider_status
            how = (
                "expired"
                if status.counts.expired
                else "cancelled"
                if status.counts.canceled
                else how
            )
            self.journal.ended(self.name, batch_id, how, status.created_at, status.ended_at)
        outcomes = await self._patiently(
            lambda: self.batches.results(session, batch_id, expected=cids)
        )
        for o in outcomes:
            fut = taken[o.custom_id][1]
            if fut.done():
                continue
            if o.kind == "succeeded" and o.response is not None:
                fut.set_result(replace(o.response, mode="batch"))
            elif o.kind == "errored" and o.error is not None and not o.error.transient:
                fut.set_exception(o.error)
        unanswered = {cid: taken[cid] for cid in cids if not taken[cid][1].done()}
        gone = missing_ids(cids, outcomes)
        if gone:
            log.warning("%s: batch %s did not report %d requests", self.name, batch_id, len(gone))
        if took_back:
            await self._sync_rest(session, unanswered)
        elif self.plan.may_batch(self.clock()):
            # Expired, cancelled or missing: ask again in the next batch, here, so the
            # answered part of the batch is kept and the executor's breaker is not tripped.
            for cid in list(unanswered):
                if self._requeues.get(cid, 0) < MAX_REQUEUES:
                    self._requeue(session, cid, taken.pop(cid))
                    del unanswered[cid]
        _fail_rest(unanswered, ProviderUnavailable(f"{self.name}: batch {batch_id} left it"))

    def _requeue(
        self,
        session: aiohttp.ClientSession,
        cid: str,
        entry: tuple[ChatRequest, asyncio.Future[ChatResponse]],
    ) -> None:
        self._spent.add(cid)
        self._requeues[cid] = self._requeues.get(cid, 0) + 1
        waiting = self._pending.setdefault(cid, entry)[1]
        if waiting is not entry[1]:  # the same request is queued already: share its answer
            waiting.add_done_callback(lambda f: _copy(f, entry[1]))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_when_quiet(session))

    async def _wait(self, session: aiohttp.ClientSession, batch_id: str) -> BatchStatus:
        cancelled = False
        while True:
            status = await self._patiently(lambda: self.batches.retrieve(session, batch_id))
            if status.ended:
                return status
            if not cancelled and self.plan.must_take_back(self.clock()):
                log.warning("%s: deadline near; taking batch %s back", self.name, batch_id)
                await self._patiently(lambda: self.batches.cancel(session, batch_id))
                cancelled = True
            await self.sleep(self.plan.poll_s)

    async def _patiently(self, ask: Callable[[], Awaitable[T]]) -> T:
        """A poll of a batch in flight, asked again after a transient failure (a timeout,
        a 5xx): the batch lives on at the provider, and giving up on it would have its
        requests asked (and paid) a second time."""
        for attempt in range(1, POLL_ATTEMPTS + 1):
            try:
                return await ask()
            except TierlineError as exc:
                if not exc.transient or attempt == POLL_ATTEMPTS:
                    raise
                log.info("%s: batch poll failed (%s); asking again", self.name, exc)
                await self.sleep(min(self.plan.poll_s * attempt, 60.0))
        raise AssertionError("unreachable")

    async def _sync_rest(
        self,
        session: aiohttp.ClientSession,
        entries: dict[str, tuple[ChatRequest, asyncio.Future[ChatResponse]]],
    ) -> None:
        async def one(request: ChatRequest, fut: asyncio.Future[ChatResponse]) -> None:
            if fut.done():
                return
            try:
                fut.set_result(await self.sync_call(session, request))
            except TierlineError as exc:
                if not fut.done():
                    fut.set_exception(exc)

        await asyncio.gather(*(one(req, fut) for req, fut in entries.values()))


def _match(intent: BatchIntent, listed: list[BatchStatus], claimed: set[str]) -> str | None:
    for status in listed:
        if (status.metadata or {}).get(GROUP_KEY) == intent.token:
            return status.id
    candidates = [
        status
        for status in listed
        if status.id not in claimed
        and GROUP_KEY not in (status.metadata or {})
        and status.counts.total == len(intent.custom_ids)
        and (status.created_at is None or status.created_at >= intent.at - CLOCK_SLACK_S)
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda s: abs((s.created_at or intent.at) - intent.at)).id


def _fail_rest(
    entries: dict[str, tuple[ChatRequest, asyncio.Future[ChatResponse]]], error: Exception
) -> None:
    for _, fut in entries.values():
        if not fut.done():
            fut.set_exception(error)


class BatchAwareLimiter:
    """The executor's limiter, letting batched providers' calls through: a request waiting
    in a provider batch holds no connection and counts against no per-minute quota (the
    batching provider takes a slot itself for what it finishes synchronously)."""

    def __init__(self, inner: Limiter, batched: set[str]) -> None:
        self.inner, self.batched = inner, batched

    def slot(self, deployment: Deployment, tokens: int) -> AbstractAsyncContextManager[None]:
        if deployment.provider in self.batched:
            return _no_slot()
        return self.inner.slot(deployment, tokens)

    def headroom(self, deployment: Deployment) -> Headroom:
        if deployment.provider in self.batched:
            return UNLIMITED  # a batch waits for no per-minute permit
        return self.inner.headroom(deployment)

    def feedback(
        self,
        deployment: Deployment,
        error: TierlineError | None,
        response: ChatResponse | None,
        reserved_tokens: int = 0,
    ) -> None:
        if deployment.provider not in self.batched:
            self.inner.feedback(deployment, error, response, reserved_tokens)


@asynccontextmanager
async def _no_slot() -> AsyncIterator[None]:
    yield


def _copy(src: asyncio.Future[ChatResponse], dst: asyncio.Future[ChatResponse]) -> None:
    if dst.done():
        return
    if src.cancelled():
        dst.set_exception(ProviderUnavailable("the identical request was cancelled"))
    elif (exc := src.exception()) is not None:
        dst.set_exception(exc)
    else:
        dst.set_result(src.result())
