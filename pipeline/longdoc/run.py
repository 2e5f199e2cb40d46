"""The worker's side of long documents: which rows need map-reduce, and running them
through the same executor (quotas, retries, fallback, budget) as every other call.

    docs = LongDocs(spec, prices, executor)
    if docs.too_long(tier, text_tokens):
        outcome = await docs.run(row_id, text, tier, text_tokens, allowed)

A document that fits its routed tier's smallest context window is an ordinary row. One
that does not is planned by forecast cost (`pipeline.longdoc.plan.choose_plan`): chunked
on its tier, or one call to a higher tier whose window holds it. Every call is attributed
to the document (cost rows with step map / reduce / direct and the chunk); the document
is one result row, or one error row naming the step that failed.
"""

from __future__ import annotations

from dataclasses import replace

from jobs.prompts import FixedMessages
from jobs.summarise import SummariseJob
from pipeline.calls.execute import RowExecutor
from pipeline.calls.outcome import CallRecord, RowOutcome
from pipeline.longdoc.mapreduce import (
    CallResult,
    StepRequest,
    TierOption,
    choose_plan,
    prepare_document,
    run_document,
)
from pipeline.longdoc.plan import needs_plan, tier_options
from schemas.job import JobSpec, SummariseTask
from schemas.prices import PriceTable
from schemas.records import RETRYABLE_ERRORS


class LongDocs:
    def __init__(self, spec: JobSpec, prices: PriceTable, executor: RowExecutor) -> None:
        self.spec = spec
        self.executor = executor
        self.task = spec.task if isinstance(spec.task, SummariseTask) else None
        self.kind = SummariseJob(self.task) if self.task is not None else None
        self.options: list[TierOption] = tier_options(spec, prices)

    def too_long(self, tier: str, input_tokens: int) -> bool:
        """Summarise rows that would not fit their tier in one call."""
        if self.task is None:
            return False
        window = next((o.context_window for o in self.options if o.tier == tier), None)
        return needs_plan(input_tokens, window, self.task.output_token_cap())

    async def run(
        self,
        row_id: str,
        text: str,
        tier: str,
        text_tokens: int,
        allowed: frozenset[str] | None,
    ) -> RowOutcome:
        assert self.task is not None and self.kind is not None
        kind = self.kind
        out = RowOutcome(id=row_id, tier=tier, ok=False, routed_tier=tier, long_document=True)
        routed_model = next((o.model for o in self.options if o.tier == tier), None)
        try:
            plan = choose_plan(
                text_tokens,
                tier,
                self.options,
                max_words=self.task.max_words,
                instructions=kind.prompt(routed_model).text,
            )
        except ValueError as exc:
            out.error_type, out.message = "too_long", str(exc)
            return out
        # Every step of the document speaks with the variant of the model it was planned
        # on (a fallback inside the tier keeps it; the cost rows say which version).
        prompt = kind.prompt(plan.model)
        plan = replace(plan, instructions=prompt.text)

        async def call(req: StepRequest) -> CallResult:
            step = await self.executor.run_messages(
                f"{row_id}#{req.step}-{req.level}-{req.chunk}",
                FixedMessages(req.messages, prompt.version),
                req.tier,
                req.input_tokens,
                allowed,
                req.max_tokens,
            )
            out.attempts += step.attempts
            out.retries += step.retries
            out.rate_limited += step.rate_limited
            calls = tuple(replace(c, step=req.step, chunk=req.chunk) for c in step.calls)
            return CallResult(
                ok=step.ok,
                text=step.output or "",
                provider=step.provider,
                model=step.model,
                tier=step.tier,
                error_type=step.error_type,
                message=step.message,
                calls=calls,
            )

        doc = await run_document(prepare_document(row_id, text, plan), call)
        out.ok, out.output = doc.ok, doc.output
        out.tier = doc.tier or plan.tier
        out.provider, out.model = doc.provider, doc.model
        out.error_type, out.message = doc.error_type, doc.message
        if not doc.ok and doc.cause in RETRYABLE_ERRORS:
            out.error_type = doc.cause  # e.g. budget_exhausted: a rerun finishes it
        out.accepted_reason = f"{doc.mode} ({doc.chunks} chunks)" if doc.ok else None
        out.calls = [
            CallRecord(
                r.provider,
                r.model,
                r.tier,
                r.input_tokens,
                r.output_tokens,
                r.call_status,
                r.attempt,
                r.step,
                r.chunk,
                cached_input_tokens=r.cached_input_tokens,
                cache_write_tokens=r.cache_write_tokens,
                mode=r.mode,
                prompt_version=prompt.version,
            )
            for r in doc.records
        ]
        out.prompt_version = prompt.version if doc.ok else None
        return out
