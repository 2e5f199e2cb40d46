"""The canary's verdict: which deployments answer the golden set, how each scored.

    targets = canary_targets(spec)                  # every routed deployment, with its tier
    result = score_canary(spec, golden, answers, costs)
    result.passed, result.deployments[0].accuracy
    failure_message(result)                         # names each deployment below the floor

A row is right when the deployment's answer, after the task's own parsing (a classify
answer is matched to its label, case and decoration forgiven), equals the row's label;
for a generate task both are compared after `normalise`. An answer that fails parsing,
or a call that fails, is wrong: a deployment that cannot answer is not fit to route to.
Pure: the calls are made by the engine, priced and budgeted like any row.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from pipeline.drift.golden import GoldenSet
from pipeline.routing.cascade import normalise
from schemas.job import TIER_ORDER, ClassifyTask, Deployment, JobSpec


@dataclass(frozen=True, slots=True)
class CanaryTarget:
    """One deployment the canary asks, and the tier it serves."""

    tier: str
    deployment: Deployment

    @property
    def name(self) -> str:
        return f"{self.deployment.name} ({self.tier})"


@dataclass(frozen=True, slots=True)
class CanaryAnswer:
    """One golden row asked of one deployment: its parsed answer or why there is none."""

    id: str
    provider: str
    model: str
    tier: str
    output: str | None
    error_type: str | None  # None: answered and parsed; else invalid_output, timeout, ...
    skipped: bool = False  # a sensitive row this deployment may not see: not scored


class DeploymentScore(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deployment: str = Field(description="provider/model")
    provider: str
    model: str
    tier: str
    rows: int = Field(description="Golden rows scored (sensitive rows it may not see left out).")
    correct: int
    accuracy: float
    errors: dict[str, int] = Field(description="Rows with no usable answer, by reason.")
    calls: int = Field(description="Billed calls, retries of a failed call not included.")
    cost_usd: float
    passed: bool


class CanaryResult(BaseModel):
    """The canary of one run, as in summary.json (`canary`) and _canary/result.json."""

    model_config = ConfigDict(extra="forbid")

    data: str
    rows: int
    min_accuracy: float
    passed: bool
    cost_usd: float
    fingerprint: str = Field(description="Golden rows, floor and deployments it vouches for.")
    deployments: list[DeploymentScore]
    reused: bool = Field(
        default=False, description="A passed canary of an earlier run of this job, not re-run."
    )


def canary_targets(spec: JobSpec) -> list[CanaryTarget]:
    """Every deployment that may answer a row: each tier's, a vote's voters and a
    cascade's agreement pair, once each, under the first tier they serve."""
    found: dict[str, CanaryTarget] = {}
    for tier in TIER_ORDER:
        for dep in spec.tiers.get(tier) or []:  # type: ignore[call-overload]
            found.setdefault(dep.name, CanaryTarget(tier, dep))
    routing = spec.routing
    if routing.vote is not None:
        for dep in routing.vote.deployments:
            found.setdefault(dep.name, CanaryTarget(routing.vote.tier, dep))
    if routing.cascade is not None and routing.cascade.agree:
        first = found.get(routing.cascade.agree[0].name)
        tier = first.tier if first is not None else "cheap"
        for dep in routing.cascade.agree:
            found.setdefault(dep.name, CanaryTarget(tier, dep))
    return list(found.values())


def is_right(spec: JobSpec, output: str | None, label: str) -> bool:
    """The answer (already parsed by the task) against the label."""
    if output is None:
        return False
    if isinstance(spec.task, ClassifyTask):
        return output == label  # both spelled as task.labels spells them
    return normalise(output) == normalise(label)


def score_canary(
    spec: JobSpec,
    golden: GoldenSet,
    answers: list[CanaryAnswer],
    costs: pl.DataFrame,
    *,
    fingerprint: str = "",
) -> CanaryResult:
    """Per target: rows scored, right answers, accuracy, errors, calls and cost."""
    canary = spec.routing.canary
    assert canary is not None
    label = dict(zip(golden.ids, golden.labels, strict=True))
    spend: dict[tuple[str, str], tuple[int, float]] = {}
    if not costs.is_empty():
        sums = costs.group_by("provider", "model").agg(pl.len(), pl.col("cost_usd").sum())
        spend = {(p, m): (int(n), float(c)) for p, m, n, c in sums.iter_rows()}
    scores = []
    for target in canary_targets(spec):
        dep = target.deployment
        mine = [a for a in answers if a.provider == dep.provider and a.model == dep.model]
        scored = [a for a in mine if not a.skipped]
        right = sum(
            1 for a in scored if a.error_type is None and is_right(spec, a.output, label[a.id])
        )
        errors: dict[str, int] = {}
        for a in scored:
            if a.error_type is not None:
                errors[a.error_type] = errors.get(a.error_type, 0) + 1
        accuracy = right / len(scored) if scored else 1.0
        calls, cost = spend.get((dep.provider, dep.model), (0, 0.0))
        scores.append(
            DeploymentScore(
                deployment=dep.name,
                provider=dep.provider,
                model=dep.model,
                tier=target.tier,
                rows=len(scored),
                correct=right,
                accuracy=round(accuracy, 6),
                errors=dict(sorted(errors.items())),
                calls=calls,
                cost_usd=cost,
                passed=accuracy >= canary.min_accuracy,
            )
        )
    return CanaryResult(
        data=golden.source,
        rows=golden.rows,
        min_accuracy=canary.min_accuracy,
        passed=all(s.passed for s in scores),
        cost_usd=sum(s.cost_usd for s in scores),
        fingerprint=fingerprint,
        deployments=scores,
    )


def failure_message(result: CanaryResult) -> str:
    """One line: which deployments fell below the floor, by how much, and what to do."""
    below = [s for s in result.deployments if not s.passed]
    parts = []
    for s in below:
        errs = ", ".join(f"{n} {t}" for t, n in s.errors.items())
        parts.append(
            f"{s.deployment} (provider {s.provider}, model {s.model}, tier {s.tier}) scored "
            f"{s.accuracy:.3f} ({s.correct}/{s.rows} right{'; ' + errs if errs else ''})"
        )
    return (
        f"canary failed on {result.data} ({result.rows} rows, min_accuracy "
        f"{result.min_accuracy:g}): {'; '.join(parts)}. No row of the job was called; fix or "
        "replace the deployment, or lower routing.canary.min_accuracy"
    )
