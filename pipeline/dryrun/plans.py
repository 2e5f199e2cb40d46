"""What the dry run assumes and plans per tier: answer lengths by task kind, each tier's
first deployment and prices, the sensitive rows' deployments, long documents, askers
(cascades, votes), the response cache to read answers from, and where rows are counted.

    plans = tier_plans(spec, prices, history)     # tier -> TierPlan (model, prices, output)
    backend = choose_backend(rows=2_000_000, parallel=True)

`pipeline.dryrun.forecast` puts these together.
"""

from __future__ import annotations

import sys
from typing import Any

import polars as pl

from jobs.base import framing_tokens, get_job_kind
from pipeline.dryrun.estimates import (
    Interval,
    OutputAssumption,
)
from pipeline.dryrun.history import (
    calls_for,
    observed_assumption,
)
from pipeline.dryrun.pool import Backend, workers_available
from pipeline.dryrun.units import LongDocPlanner, TierPlan
from pipeline.longdoc.plan import tier_options
from pipeline.store import Store
from pipeline.tokens import count_tokens
from schemas.job import TIER_ORDER, Deployment, JobSpec, SummariseTask
from schemas.prices import PriceTable

# Below this many rows one process is quicker than starting more.
PARALLEL_MIN_ROWS = 50_000


def _labels(spec: JobSpec, model: str, family: str, cap: int) -> OutputAssumption:
    labels: list[str] = list(getattr(spec.task, "labels", []))
    return OutputAssumption.labels([count_tokens(lab, model, family) for lab in labels], cap)


def _words(spec: JobSpec, model: str, family: str, cap: int) -> OutputAssumption:
    return OutputAssumption.words(int(getattr(spec.task, "max_words", 0)), cap)


# task kind -> its answer-length assumption when no earlier run says better
ASSUMPTIONS = {"classify": _labels, "summarise": _words}
# task kind -> how earlier runs are read: answers of set length, or (auto) whichever of
# set length and growing with the text fits the earlier answers better
OBSERVED = {"classify": "observed_mean", "summarise": "auto", "extract": "observed_mean"}


def _default_assumption(spec: JobSpec, model: str, family: str, cap: int) -> OutputAssumption:
    make = ASSUMPTIONS.get(spec.task.kind)
    if make is not None:
        return make(spec, model, family, cap)
    typical = float(get_job_kind(spec.task).estimate_output_tokens())
    spread = Interval(typical * 0.5, typical, typical * 1.5)
    return OutputAssumption("estimate", cap, fixed=spread)


def tier_plans(
    spec: JobSpec, prices: PriceTable, history: pl.DataFrame | None = None
) -> dict[str, TierPlan]:
    """Each tier's first deployment, prompt overhead and answer-length assumption."""
    kind = get_job_kind(spec.task)
    observed = OBSERVED.get(spec.task.kind) if history is not None and history.height else None
    plans: dict[str, TierPlan] = {}
    for tier in TIER_ORDER:
        deps = spec.tiers.get(tier) or []  # type: ignore[call-overload]
        if not deps:
            continue
        dep = deps[0]
        price = prices.lookup(dep.model)
        family = price.provider_family
        prompt = framing_tokens(kind, dep.model, family)  # the model's prompt variant
        cap = min(kind.max_output_tokens(), price.max_output_tokens)
        if observed is not None and history is not None:
            # Earlier runs' output tokens hold their hidden reasoning already.
            output = observed_assumption(calls_for(history, dep.model), observed, cap)
        else:
            output = _default_assumption(spec, dep.model, family, cap)
            output = output.with_thinking(price.reasoning_tokens)
        cap += price.reasoning_tokens  # the cap the run sends (and the budget reserves)
        plans[tier] = TierPlan(dep.provider, dep.model, family, prompt, cap, output)
    return plans


def _plan(spec: JobSpec, tier: str, dep: Deployment, prices: PriceTable, output: Any) -> TierPlan:
    kind = get_job_kind(spec.task)
    price = prices.lookup(dep.model)
    family = price.provider_family
    prompt = framing_tokens(kind, dep.model, family)
    cap = min(kind.max_output_tokens(), price.max_output_tokens) + price.reasoning_tokens
    return TierPlan(dep.provider, dep.model, family, prompt, cap, output)


def sensitive_plans(
    spec: JobSpec, plans: dict[str, TierPlan], prices: PriceTable
) -> dict[str, TierPlan | None]:
    """Where a sensitive row of each tier goes: the first deployment on an allowed
    provider from its tier up (as the run escalates), None when there is none."""
    rule = spec.routing.sensitive
    if rule is None:
        return {}
    allowed = set(rule.allowed_providers)
    out: dict[str, TierPlan | None] = {}
    for tier, tp in plans.items():
        upward = TIER_ORDER[TIER_ORDER.index(tier) :]
        chain = [d for t in upward for d in spec.tiers.get(t) or []]  # type: ignore[call-overload]
        dep = next((d for d in chain if d.provider in allowed), None)
        out[tier] = None if dep is None else _plan(spec, tier, dep, prices, tp.output)
    return out


def long_doc_planner(spec: JobSpec, prices: PriceTable) -> LongDocPlanner | None:
    """Summarise jobs plan rows too long for their tier as the run does; None otherwise."""
    task = spec.task
    if not isinstance(task, SummariseTask):
        return None
    options = tuple(tier_options(spec, prices))
    return LongDocPlanner(options, task.max_words, task.instructions, task.output_token_cap())


def asker_plans(
    spec: JobSpec, plans: dict[str, TierPlan], prices: PriceTable, *, agreement: bool = True
) -> dict[str, tuple[TierPlan, ...]]:
    """Tiers whose rows are asked of more than one deployment, and those deployments:
    a vote's voters; with `agreement`, a cascade's `agree` pair (the row's first answer
    and its check). Disagreements are escalations, forecast by the escalation rate."""
    out: dict[str, tuple[TierPlan, ...]] = {}
    routing = spec.routing
    pairs: list[tuple[str, list[Deployment]]] = []
    if routing.cascade is not None and routing.cascade.agree and agreement:
        first = routing.cascade.agree[0]
        tier = next((t for t in TIER_ORDER if first in (spec.tiers.get(t) or [])), None)  # type: ignore[call-overload]
        if tier is not None:
            pairs.append((tier, list(routing.cascade.agree)))
    if routing.vote is not None:
        pairs.append((routing.vote.tier, list(routing.vote.deployments)))  # a vote wins
    for tier, deps in pairs:
        if tier in plans:
            out[tier] = tuple(_plan(spec, tier, d, prices, plans[tier].output) for d in deps)
    return out


def cache_with_answers(spec: JobSpec, out_uri: str) -> str | None:
    """The response cache's URI when the run would read it and it holds answers."""
    if spec.cache == "off":
        return None
    uri = spec.cache_uri or (out_uri.rstrip("/") + "/_cache")
    return uri if Store.open(uri).list_files("", suffix=".parquet") else None


def choose_backend(rows: int, parallel: bool) -> Backend:
    """Where to count. Measured on 2 cores, 1M rows: a process pool about 220,000 rows/s,
    Ray tasks 60,000-80,000 (worker start-up and scheduling), one process about 100,000.
    Ray is used only when this process is on a cluster with more cores than this machine
    (more nodes); one process for small inputs."""
    local = workers_available()
    if not parallel or rows < PARALLEL_MIN_ROWS:
        return "inline"
    ray: Any = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        cores = float(ray.cluster_resources().get("CPU", 0))
        if cores > 2 * local:
            return "ray"
    return "process" if local > 1 else "inline"
