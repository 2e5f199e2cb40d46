"""What the canary will cost: every golden row asked of every routed deployment.

    fc = forecast_canary(spec, prices)      # None without routing.canary
    fc.calls, fc.cost_usd.p50               # rows x deployments, at sync prices

Input tokens are counted as the run sends them (the row's text under each deployment's
tokenizer, plus the task's prompt and the chat framing); answers are a label's length
for classify (shortest / mean / longest), else the task's typical answer +/- 50%. The
canary always calls synchronously and never reads the response cache, so neither batch
prices nor reuse apply. A golden set that cannot be read fails as `validate` does.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from jobs.base import get_job_kind
from pipeline.costs import call_cost_usd
from pipeline.drift.canary import canary_targets
from pipeline.drift.golden import load_golden
from pipeline.dryrun.sums import Range
from pipeline.tokens import chat_overhead_tokens, count_tokens
from schemas.job import ClassifyTask, JobSpec
from schemas.prices import PriceTable


class CanaryDeploymentForecast(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deployment: str
    tier: str
    calls: int
    input_tokens: int
    est_output_tokens: int = Field(description="Answer tokens at p50.")
    cost_usd: Range


class CanaryForecast(BaseModel):
    """forecast.json's `canary`: its calls are in `cost_usd` too."""

    model_config = ConfigDict(extra="forbid")

    data: str
    rows: int
    deployments: list[CanaryDeploymentForecast]
    calls: int = Field(description="Golden rows x deployments.")
    cost_usd: Range = Field(description="All the canary's calls, at sync prices.")


def _answer_tokens(spec: JobSpec, model: str, family: str, cap: int) -> tuple[float, ...]:
    if isinstance(spec.task, ClassifyTask):
        sizes = [count_tokens(label, model, family) for label in spec.task.labels]
        spread: tuple[float, ...] = (min(sizes), sum(sizes) / len(sizes), max(sizes))
    else:
        typical = float(get_job_kind(spec.task).estimate_output_tokens())
        spread = (typical * 0.5, typical, typical * 1.5)
    return tuple(min(v, float(cap)) for v in spread)


def forecast_canary(spec: JobSpec, prices: PriceTable) -> CanaryForecast | None:
    if spec.routing.canary is None:
        return None
    golden = load_golden(spec)
    kind = get_job_kind(spec.task)
    framing = kind.build_messages("")
    per: list[CanaryDeploymentForecast] = []
    for target in canary_targets(spec):
        model = target.deployment.model
        price = prices.lookup(model)
        family = price.provider_family
        prompt = sum(count_tokens(m.content, model, family) for m in framing)
        prompt += chat_overhead_tokens(len(framing))
        tin = sum(count_tokens(t, model, family) for t in golden.texts) + prompt * golden.rows
        cap = min(kind.max_output_tokens(), price.max_output_tokens)
        outs = _answer_tokens(spec, model, family, cap)
        usd = [call_cost_usd(price, tin, round(o * golden.rows)) for o in outs]
        per.append(
            CanaryDeploymentForecast(
                deployment=target.deployment.name,
                tier=target.tier,
                calls=golden.rows,
                input_tokens=tin,
                est_output_tokens=round(outs[1] * golden.rows),
                cost_usd=Range(p10=usd[0], p50=usd[1], p90=usd[2]),
            )
        )
    return CanaryForecast(
        data=golden.source,
        rows=golden.rows,
        deployments=per,
        calls=sum(d.calls for d in per),
        cost_usd=Range(
            p10=sum(d.cost_usd.p10 for d in per),
            p50=sum(d.cost_usd.p50 for d in per),
            p90=sum(d.cost_usd.p90 for d in per),
        ),
    )


def plus(a: Range, b: Range | None) -> Range:
    """`a` with the canary's range `b` added (a is returned unchanged without one)."""
    if b is None:
        return a
    return Range(p10=a.p10 + b.p10, p50=a.p50 + b.p50, p90=a.p90 + b.p90)


def canary_method(canary: CanaryForecast | None) -> list[str]:
    """The forecast's `method` line for the canary (none without one)."""
    if canary is None:
        return []
    return [
        f"canary: {canary.rows} golden rows asked of each of {len(canary.deployments)} "
        f"deployments ({canary.calls} calls, synchronously, label-length answers), in the totals"
    ]
