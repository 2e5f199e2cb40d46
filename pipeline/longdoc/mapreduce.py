"""Summarising a document of any length: one direct call when it fits, else map-reduce.

    plan = choose_plan(tokens, "cheap", options, max_words=60)   # forecast-cost decision
    outcome = await summarise_document("doc-7", text, plan, call)
    outcome.ok, outcome.output, [(r.step, r.chunk, r.level) for r in outcome.records]

`call` is injected: it sends one `StepRequest` through its tier (retries, fallback and
cache lookups are its business), returns a `CallResult` and should not raise. A document
ends as one summary or one error naming the failed step, plus a `StepRecord` for every
billed or cached call, tagged with its step (direct, map, reduce), chunk and reduce level.
The plan arithmetic (`estimate_calls`, `choose_plan`) is pure, so the dry-run forecast
can count the calls a chunked document will make.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from jobs.longdoc_prompts import map_messages, reduce_messages
from jobs.summarise import SummariseJob
from pipeline.calls.outcome import CallRecord
from pipeline.longdoc.chunking import Count, fit_group, plan_reduce, split_text
from pipeline.longdoc.plan import (
    REDUCE_OVERHEAD,
    CallEstimate,
    DocPlan,
    TierOption,
    choose_plan,
    estimate_calls,
    prompt_tokens,
)
from pipeline.providers.base import Message, Usage
from pipeline.tokens import count_tokens
from schemas.job import SummariseTask
from schemas.records import RETRYABLE_ERRORS

__all__ = [
    "CallEstimate",
    "CallResult",
    "DocOutcome",
    "DocPlan",
    "DocWork",
    "StepRecord",
    "StepRequest",
    "TierOption",
    "choose_plan",
    "estimate_calls",
    "prepare_document",
    "run_document",
    "summarise_document",
]

Step = Literal["direct", "map", "reduce"]

# --- running a document -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepRequest:
    messages: tuple[Message, ...]
    step: Step
    tier: str
    max_tokens: int
    input_tokens: int  # prompt estimate, for quota and budget reservations
    chunk: int = 0  # chunk index (map) or group index within its level (reduce)
    level: int = 0  # 0 for direct and map, 1.. for reduce


@dataclass(frozen=True, slots=True)
class CallResult:
    """One step's result. `calls` are its billed calls (with retries and fallback); when
    empty, one record is made from `usage` (`cached` when the answer came from the cache)."""

    ok: bool
    text: str = ""
    usage: Usage | None = None
    provider: str | None = None
    model: str | None = None
    tier: str | None = None
    error_type: str | None = None
    message: str | None = None
    calls: tuple[CallRecord, ...] = ()
    cached: bool = False


@dataclass(frozen=True, slots=True)
class StepRecord:
    step: Step
    chunk: int
    level: int
    provider: str
    model: str
    tier: str
    input_tokens: int
    output_tokens: int
    call_status: str  # ok | invalid_output | cached | duplicate
    attempt: int
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    mode: str = "sync"  # sync | batch: the price the call is billed at


@dataclass(slots=True)
class DocOutcome:
    id: str
    ok: bool
    mode: str
    output: str | None = None
    tier: str | None = None
    provider: str | None = None
    model: str | None = None
    error_type: str | None = None
    message: str | None = None
    cause: str | None = None  # error_type of the call behind map_failed / reduce_failed
    records: list[StepRecord] = field(default_factory=list)
    chunks: int = 0
    levels: int = 0
    truncated: int = 0  # partial summaries cut to fit a reduce call

    @property
    def retryable(self) -> bool:
        return (self.cause or self.error_type) in RETRYABLE_ERRORS


DocCall = Callable[[StepRequest], Awaitable[CallResult]]


@dataclass(frozen=True, slots=True)
class DocWork:
    """A document's first calls, known before any is sent: one direct, or one per chunk."""

    id: str
    plan: DocPlan
    requests: tuple[StepRequest, ...]


def prepare_document(
    doc_id: str,
    text: str,
    plan: DocPlan,
    *,
    count: Count | None = None,
    direct: Callable[[str], tuple[Message, ...]] | None = None,
) -> DocWork:
    """Split (when chunked) and build the first requests; pure and deterministic, so the
    caller can look all of a unit's requests up in the cache at once."""
    cnt = count or (lambda s: count_tokens(s, plan.model))
    if plan.mode == "direct":
        if direct is None:
            task = SummariseTask(
                kind="summarise", max_words=plan.max_words, instructions=plan.instructions
            )
            direct = SummariseJob(task).build_messages
        msgs = direct(text)
        req = StepRequest(msgs, "direct", plan.tier, plan.output_tokens, prompt_tokens(msgs, cnt))
        return DocWork(doc_id, plan, (req,))
    chunks = split_text(text, plan.chunk_tokens, plan.overlap_tokens, cnt)
    reqs = []
    for i, chunk in enumerate(chunks):
        msgs = map_messages(chunk, i, len(chunks), plan.map_words, plan.instructions)
        reqs.append(
            StepRequest(msgs, "map", plan.tier, plan.map_output_tokens, prompt_tokens(msgs, cnt), i)
        )
    return DocWork(doc_id, plan, tuple(reqs))


async def summarise_document(
    doc_id: str,
    text: str,
    plan: DocPlan,
    call: DocCall,
    *,
    count: Count | None = None,
    max_concurrency: int = 8,
) -> DocOutcome:
    """One document through `plan`: one outcome, whatever the number of calls."""
    work = prepare_document(doc_id, text, plan, count=count)
    return await run_document(work, call, count=count, max_concurrency=max_concurrency)


async def run_document(
    work: DocWork, call: DocCall, *, count: Count | None = None, max_concurrency: int = 8
) -> DocOutcome:
    plan = work.plan
    cnt = count or (lambda s: count_tokens(s, plan.model))
    out = DocOutcome(work.id, ok=False, mode=plan.mode, chunks=len(work.requests))
    if not work.requests:
        out.error_type, out.message = "empty_input", "the document has no text"
        return out
    results = await _run_bounded(work.requests, call, max_concurrency, out)
    if _failed(out, work.requests, results):
        return out
    if plan.mode == "direct":
        return _finish(out, plan, results[0])
    summaries = [r.text for r in results if r is not None]
    while len(summaries) > 1:
        out.levels += 1
        groups = plan_reduce(summaries, plan.reduce_tokens, cnt, overhead=REDUCE_OVERHEAD)
        reqs: list[StepRequest] = []
        for g, group in enumerate(x for x in groups if len(x) > 1):
            texts, cut = fit_group(
                [summaries[i] for i in group], plan.reduce_tokens, cnt, overhead=REDUCE_OVERHEAD
            )
            out.truncated += cut
            msgs = reduce_messages(texts, plan.max_words, plan.instructions)
            n_in = prompt_tokens(msgs, cnt)
            reqs.append(
                StepRequest(msgs, "reduce", plan.tier, plan.output_tokens, n_in, g, out.levels)
            )
        results = await _run_bounded(reqs, call, max_concurrency, out)
        if _failed(out, reqs, results):
            return out
        answers = iter([r.text for r in results if r is not None])
        summaries = [summaries[x[0]] if len(x) == 1 else next(answers) for x in groups]
    return _finish(out, plan, results[-1], summaries[0])


async def _run_bounded(
    reqs: Sequence[StepRequest], call: DocCall, limit: int, out: DocOutcome
) -> list[CallResult | None]:
    """Run concurrently, at most `limit` at a time; after a failure, start no more."""
    sem = asyncio.Semaphore(max(1, limit))
    failed = False

    async def one(req: StepRequest) -> CallResult | None:
        nonlocal failed
        async with sem:
            if failed:
                return None
            try:
                res = await call(req)
            except Exception as exc:  # a broken call is this document's error, not the unit's
                res = CallResult(ok=False, error_type="internal_error", message=repr(exc))
            failed = failed or not res.ok
            return res

    results = await asyncio.gather(*(one(r) for r in reqs))
    for req, res in zip(reqs, results, strict=True):
        if res is not None:
            out.records.extend(_records(req, res))
    return list(results)


def _records(req: StepRequest, res: CallResult) -> list[StepRecord]:
    if res.calls:
        return [
            StepRecord(
                req.step,
                req.chunk,
                req.level,
                c.provider,
                c.model,
                c.tier,
                c.input_tokens,
                c.output_tokens,
                c.call_status,
                c.attempt,
                c.cached_input_tokens,
                c.cache_write_tokens,
                c.mode,
            )
            for c in res.calls
        ]
    if res.usage is None or res.model is None:
        return []
    status = "cached" if res.cached else ("ok" if res.ok else "invalid_output")
    return [
        StepRecord(
            req.step,
            req.chunk,
            req.level,
            res.provider or "",
            res.model,
            res.tier or req.tier,
            res.usage.input_tokens,
            res.usage.output_tokens,
            status,
            1,
        )
    ]


def _failed(
    out: DocOutcome,
    reqs: Sequence[StepRequest],
    results: Sequence[CallResult | None],
) -> bool:
    for req, res in zip(reqs, results, strict=True):
        if res is None or res.ok:
            continue
        why = f"{res.error_type or 'error'}: {res.message or 'no message'}"
        if req.step == "direct":
            out.error_type, out.message = res.error_type or "error", f"direct step failed: {why}"
        elif req.step == "map":
            out.error_type, out.cause = "map_failed", res.error_type
            out.message = f"map step failed on chunk {req.chunk + 1} of {len(reqs)}: {why}"
        else:
            out.error_type, out.cause = "reduce_failed", res.error_type
            where = f"level {req.level}, group {req.chunk + 1} of {len(reqs)}"
            out.message = f"reduce step failed at {where}: {why}"
        out.tier, out.provider, out.model = res.tier or req.tier, res.provider, res.model
        return True
    return False


def _finish(
    out: DocOutcome, plan: DocPlan, last: CallResult | None, text: str | None = None
) -> DocOutcome:
    assert last is not None
    out.ok, out.output = True, last.text if text is None else text
    out.tier, out.provider, out.model = last.tier or plan.tier, last.provider, last.model
    return out
