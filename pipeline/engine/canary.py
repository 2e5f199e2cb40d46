"""The canary before a job spends: the golden set through every routed deployment.

    result = run_canary(spec, out_uri, job_id, ask)   # ask: a worker's `canary` method
    if not result.passed: raise CanaryFailed(failure_message(result))

The driver reads and checks the golden set, a worker asks it of each deployment
(`call_canary`, through the row executor: the job's quota limiter, budget, retries and
prices, synchronously, never from the response cache), and the driver scores the answers
and writes `_canary/` (answers, costs, verdict) before any unit is handed out. A passed
canary of an earlier run of the same job (same golden rows, floor and deployments) is not
asked again when the job is resumed.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from pipeline.calls.execute import RowExecutor
from pipeline.drift.canary import (
    CanaryAnswer,
    CanaryResult,
    CanaryTarget,
    canary_targets,
    is_right,
    score_canary,
)
from pipeline.drift.golden import GoldenSet, load_golden
from pipeline.engine.outputs import price_calls
from pipeline.jobfolder import JobFolder
from pipeline.tokens import count_tokens
from schemas.job import JobSpec

if TYPE_CHECKING:
    from pipeline.engine.worker import UnitRunner

log = logging.getLogger(__name__)

# (id, text, sensitive) per golden row.
GoldenRow = tuple[str, str, bool]
AskFn = Callable[[list[GoldenRow], list[CanaryTarget]], tuple[list[CanaryAnswer], pa.Table]]

ANSWERS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("provider", pa.string()),
        pa.field("model", pa.string()),
        pa.field("tier", pa.string()),
        pa.field("label", pa.string()),
        pa.field("output", pa.string()),
        pa.field("correct", pa.bool_()),
        pa.field("error_type", pa.string()),
        pa.field("scored", pa.bool_()),
    ]
)


async def call_canary(
    executor_for: Callable[[CanaryTarget], RowExecutor],
    rows: list[GoldenRow],
    targets: list[CanaryTarget],
    *,
    in_flight: asyncio.Semaphore,
    tokens: Callable[[str, str], int],
    allowed: frozenset[str] | None,
) -> tuple[list[CanaryAnswer], list[dict[str, Any]]]:
    """Every golden row asked of every target; answers, and one call row per billed call
    (marked step `canary`) for pricing. `tokens(text, model)`: a request's input tokens."""

    async def one(
        target: CanaryTarget, executor: RowExecutor, row: GoldenRow
    ) -> tuple[CanaryAnswer, list[dict[str, Any]]]:
        rid, text, sensitive = row
        dep = target.deployment
        if sensitive and allowed is not None and dep.provider not in allowed:
            # Never sent where the job's own rows could not go; left out of the score.
            return CanaryAnswer(rid, dep.provider, dep.model, target.tier, None, None, True), []
        async with in_flight:
            o = await executor.run(rid, text, target.tier, tokens(text, dep.model))
        answer = CanaryAnswer(
            rid,
            dep.provider,
            dep.model,
            target.tier,
            o.output if o.ok else None,
            None if o.ok else (o.error_type or "error"),
        )
        calls = [c.cost_row(rid, None, step="canary") for c in o.calls]
        return answer, calls

    jobs: list[Awaitable[tuple[CanaryAnswer, list[dict[str, Any]]]]] = []
    for target in targets:
        executor = executor_for(target)
        jobs += [one(target, executor, row) for row in rows]
    done = await asyncio.gather(*jobs)
    return [a for a, _ in done], [c for _, calls in done for c in calls]


async def ask_canary(
    runner: UnitRunner, rows: list[GoldenRow], targets: list[CanaryTarget]
) -> tuple[list[CanaryAnswer], pa.Table]:
    """The golden rows asked of each target alone (no fallback, no escalation) by a
    worker's runner: its session, limiter, budget and prices; answers and priced costs."""
    assert runner.session is not None
    session, spec = runner.session, runner.spec
    rule = spec.routing.sensitive
    allowed = frozenset(rule.allowed_providers) if rule is not None else None
    windows = runner._context_windows()
    prefix = runner._shared_prefix()

    def executor_for(target: CanaryTarget) -> RowExecutor:
        return RowExecutor(
            runner.kind,
            runner.sync_providers,
            {target.tier: [target.deployment]},
            session,
            runner.limiter,
            runner.policy,
            context_windows=windows,
            metrics=runner.metrics,
            budgets=runner.budgets,
            prices=runner.prices,
            breaker_failures=spec.run.breaker_failures,
            breaker_cooldown_s=spec.run.breaker_cooldown_s,
            rng=random.Random(),
            cache_key=f"tierline-{spec.name}-{spec.task.kind}",
            cache_prefix=prefix,
            reasoning_effort={n: p.reasoning_effort for n, p in spec.providers.items()},
        )

    def tokens(text: str, model: str) -> int:
        return count_tokens(text, model) + runner._prompt_tokens(model)

    answers, calls = await call_canary(
        executor_for, rows, targets, in_flight=runner.in_flight, tokens=tokens, allowed=allowed
    )
    return answers, price_calls(calls, runner.prices)


def answers_table(spec: JobSpec, golden: GoldenSet, answers: list[CanaryAnswer]) -> pa.Table:
    label = dict(zip(golden.ids, golden.labels, strict=True))
    return pa.Table.from_pylist(
        [
            {
                "id": a.id,
                "provider": a.provider,
                "model": a.model,
                "tier": a.tier,
                "label": label.get(a.id),
                "output": a.output,
                "correct": (not a.skipped)
                and a.error_type is None
                and is_right(spec, a.output, label.get(a.id, "")),
                "error_type": a.error_type,
                "scored": not a.skipped,
            }
            for a in answers
        ],
        schema=ANSWERS,
    )


def earlier_pass(folder: JobFolder, fingerprint: str) -> CanaryResult | None:
    """A passed canary this job folder holds for the same rows, floor and deployments."""
    doc = folder.read_canary_result()
    if doc is None:
        return None
    try:
        result = CanaryResult.model_validate(doc)
    except ValueError:
        return None
    if result.passed and result.fingerprint == fingerprint:
        return result.model_copy(update={"reused": True})
    return None


def run_canary(spec: JobSpec, out_uri: str, job_id: str, ask: AskFn) -> CanaryResult:
    """Ask, score and record the canary (or reuse this job's earlier pass)."""
    golden = load_golden(spec)
    targets = canary_targets(spec)
    canary = spec.routing.canary
    assert canary is not None
    fingerprint = golden.fingerprint(canary.min_accuracy, [t.deployment.name for t in targets])
    folder = JobFolder.open(out_uri, job_id)
    earlier = earlier_pass(folder, fingerprint)
    if earlier is not None:
        log.info("canary passed earlier for this job; not asked again")
        return earlier
    rows = list(zip(golden.ids, golden.texts, golden.sensitive, strict=True))
    answers, costs = ask(rows, targets)
    frame = pl.from_arrow(costs)
    assert isinstance(frame, pl.DataFrame)
    result = score_canary(spec, golden, answers, frame, fingerprint=fingerprint)
    folder.write_canary(answers_table(spec, golden, answers), costs, result.model_dump(mode="json"))
    return result
