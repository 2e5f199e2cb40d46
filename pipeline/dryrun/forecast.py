"""The dry run: what a job would cost and how long it would take, with no provider calls.

    fc = forecast_job(spec)                       # plan, read, route, count, price, write
    fc.cost_usd.p50, fc.duration_s.p50, fc.binding_limit
    # wrote <output>/<job_id>/forecast.json and <output>/<job_id>/forecast/unit-<n>.parquet


It uses the run's own plan (`make_plan`), row preparation and routing (`pipeline.engine.rows`),
tokenizers and prices, so each row is counted as the run will send it: its text under
its tier's first model, plus the system prompt and the chat overhead. It covers the
whole input (`rows_total`, `cost_usd`) and, apart, the units a run would still do
(`rows_todo`, `cost_todo_usd`). How answer lengths, escalations and durations are
estimated: `pipeline.dryrun.estimates`. Nothing here talks to a provider.

Big inputs are counted on every core (`pipeline.dryrun.pool`); a script that calls
`forecast_job` on more than `PARALLEL_MIN_ROWS` rows needs the usual
`if __name__ == "__main__":` guard, as any program that starts worker processes does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from jobs.base import get_job_kind
from pipeline.calls.batching import BatchPlan
from pipeline.calls.reuse import AnswerReuse
from pipeline.dryrun.canary import CanaryForecast, canary_method, forecast_canary, plus
from pipeline.dryrun.estimates import (
    STARTUP_S,
    job_duration,
)
from pipeline.dryrun.history import (
    history_dirs,
    observed_escalation,
    read_history,
)
from pipeline.dryrun.plans import (
    asker_plans,
    cache_with_answers,
    choose_backend,
    long_doc_planner,
    sensitive_plans,
    tier_plans,
)
from pipeline.dryrun.pool import Backend, run_units, start_pool, workers_available
from pipeline.dryrun.reasks import default_escalation, reask_rate, with_reasks
from pipeline.dryrun.sums import (
    ForecastBucket,
    Range,
    price_usage,
    provider_loads,
    sum_results,
    total_range,
    with_escalation,
)
from pipeline.dryrun.units import TierPlan, UnitContext
from pipeline.engine.plan import Plan, make_plan
from pipeline.jobfolder import JobFolder, batch_turnaround
from pipeline.store import Store
from pipeline.tokens import token_method
from schemas.job import JobSpec, deadline_at
from schemas.prices import PriceTable, load_prices

# Extra calls per row by routing policy, when no earlier run says otherwise: rules and
# learned routing send each row once; a cascade is assumed to re-ask a fifth of its rows.
POLICY_ESCALATION = {"cascade": 0.2}


class ProviderForecast(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str
    requests: float
    tokens: float = Field(description="Input + max_tokens of every request, as limiters count.")
    duration_s: Range
    binding_limit: str = Field(description="The limit that takes longest, e.g. 'openai rpm=500'.")
    limits_s: dict[str, float] = Field(description="Each limit's time at p50, seconds.")


class Forecast(BaseModel):
    """A job's forecast, as written to forecast.json."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    name: str
    task: str
    output: str = Field(description="The job's output prefix (where this forecast is).")
    rows_total: int = Field(description="Rows in the whole input.")
    rows_todo: int = Field(description="Rows in units not yet committed.")
    rows_callable: int = Field(description="Rows that would be sent to a model.")
    rows_early_error: dict[str, int] = Field(description="Rows that fail before any call.")
    rows_duplicate: int = Field(description="Repeated ids within a unit (done once).")
    rows_reused: dict[str, int] = Field(
        description="Rows answered for free: 'cached' (response cache), 'duplicate' (the "
        "same request as another row of the unit, sent once)."
    )
    units_total: int
    units_todo: int
    input_tokens: int
    est_output_tokens: int = Field(description="Answer tokens at p50.")
    cost_usd: Range = Field(description="The whole input, and the canary's calls.")
    cost_todo_usd: Range = Field(
        description="Only the units not yet committed, and the canary's calls (it runs "
        "before them)."
    )
    canary: CanaryForecast | None = Field(
        default=None, description="The golden set asked of every routed deployment."
    )
    mode: str = Field(
        default="sync", description="How the calls would go out: sync or batch (run.mode)."
    )
    cost_by_mode: dict[str, Range] = Field(
        default_factory=dict, description="The whole input at sync and at batch-API prices."
    )
    finish_by: str | None = Field(
        default=None, description="Expected end (UTC, ISO 8601) if the job started now."
    )
    deadline: str | None = Field(default=None, description="run.deadline as a UTC time.")
    deadline_holds: bool | None = Field(
        default=None, description="Whether the expected end is before the deadline."
    )
    by_tier: dict[str, ForecastBucket]
    by_model: dict[str, ForecastBucket] = Field(description="Keyed 'provider/model'.")
    duration_s: Range
    binding_limit: str
    providers: list[ProviderForecast]
    escalation_rate: float = Field(description="Extra calls per row, on the next tier up.")
    reask_rate: float = Field(
        default=0.0, description="extract: re-asks per row, on the same model."
    )
    price_version: str
    method: list[str] = Field(description="How each number was made, in words.")
    history_jobs: list[str] = Field(description="Earlier runs whose answers were used.")
    backend: str = Field(description="Where units were counted: inline, process or ray.")
    elapsed_s: float


# --- the forecast ---------------------------------------------------------------------


def forecast_job(
    spec: JobSpec,
    *,
    output_uri: str | None = None,
    job_id: str | None = None,
    parallel: bool = True,
    prices: PriceTable | None = None,
    escalation_rate: float | None = None,
    write: bool = True,
) -> Forecast:
    """Forecast `spec` over its whole input; writes forecast.json and the per-unit
    Parquet under `<output>/<job_id>/` unless `write=False`. Fails as planning fails
    (`ConfigError`, `UnknownPrice`) before any row is read."""
    started = time.monotonic()
    prices = prices or load_prices()
    out_uri = output_uri or spec.output.uri
    plan = make_plan(spec, output_uri=out_uri, job_id=job_id)
    backend = choose_backend(plan.rows_total, parallel)
    pool = None
    if backend == "process":
        first = [deps[0].model for deps in spec.tiers.values() if deps]
        models = [(m, prices.lookup(m).provider_family) for m in first]
        pool = start_pool(models, workers_available())
    try:
        return _forecast(
            spec, plan, out_uri, prices, escalation_rate, write, backend, pool, started
        )
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _forecast(
    spec: JobSpec,
    plan: Plan,
    out_uri: str,
    prices: PriceTable,
    escalation_rate: float | None,
    write: bool,
    backend: Backend,
    pool: Any,
    started: float,
) -> Forecast:
    root = Store.open(out_uri)
    dirs = history_dirs(root, spec.name, plan.job_id)
    history, used = read_history(root, dirs) if dirs else (None, [])
    if history is not None and history.is_empty():
        history, used = None, []
    plans = tier_plans(spec, prices, history)
    rate, rate_note = _escalation(spec, history, escalation_rate)
    reasks, reask_note = reask_rate(spec, history)

    cache_uri = cache_with_answers(spec, out_uri)
    ctx = UnitContext(
        spec,
        prices,
        plans,
        out_uri if write else None,
        plan.job_id,
        sensitive=sensitive_plans(spec, plans, prices),
        reuse=AnswerReuse(spec, get_job_kind(spec.task), None).enabled,
        cache_uri=cache_uri,
        longdocs=long_doc_planner(spec, prices),
        # Earlier runs' escalation rate already holds the agreement checks' calls.
        askers=asker_plans(spec, plans, prices, agreement=history is None),
    )
    todo = {u.index for u in plan.todo}
    totals = sum_results(run_units(ctx, plan.units, backend=backend, pool=pool), todo)
    usage = with_reasks(with_escalation(totals.usage.values(), rate, plans), reasks)
    todo_usage = with_reasks(with_escalation(totals.todo.values(), rate, plans), reasks)
    duration = job_duration(provider_loads(spec, usage), spec.run.workers)
    turnaround = batch_turnaround(root, dirs, spec.run.batch_turnaround_s)
    timing = plan_finish(spec, duration.seconds.p50, rate, turnaround[0])
    batch = timing.mode == "batch"
    by_tier = price_usage(usage, prices, "tier", batch=batch)
    cost_by_mode = {
        "sync": total_range(price_usage(usage, prices, "tier")),
        "batch": total_range(price_usage(usage, prices, "tier", batch=True)),
    }
    rows_todo = sum(u.row_count for u in plan.todo)
    canary = forecast_canary(spec, prices)
    canary_usd = canary.cost_usd if canary is not None else None

    earlier = None if history is None else f"{', '.join(used)} ({history.height} billed calls)"
    method = _method(plan, ctx, plans, prices, (rate, rate_note), rows_todo, earlier, cache_uri)
    if spec.run.mode != "sync":
        method.append(f"batch turnaround: {turnaround[0]:.0f} s per stage, {turnaround[1]}")
    method += canary_method(canary)
    if reasks > 0:
        method.append(
            f"re-asks: {reasks:.3f} per row on the same model, with the failed answer and "
            f"the errors quoted ({reask_note})"
        )
    fc = Forecast(
        job_id=plan.job_id,
        name=spec.name,
        task=spec.task.kind,
        output=root.child(plan.job_id).display(),
        rows_total=plan.rows_total,
        rows_todo=rows_todo,
        rows_callable=totals.callable,
        rows_early_error=dict(sorted(totals.early.items())),
        rows_duplicate=totals.duplicates,
        rows_reused=dict(sorted(totals.reused.items())),
        units_total=len(plan.units),
        units_todo=len(plan.todo),
        input_tokens=sum(b.input_tokens for b in by_tier.values()),
        est_output_tokens=sum(b.est_output_tokens for b in by_tier.values()),
        cost_usd=plus(total_range(by_tier), canary_usd),
        cost_todo_usd=plus(
            total_range(price_usage(todo_usage, prices, "tier", batch=batch)),
            canary_usd if plan.todo else None,
        ),
        canary=canary,
        mode=timing.mode,
        cost_by_mode={m: plus(r, canary_usd) for m, r in cost_by_mode.items()},
        finish_by=timing.finish_by,
        deadline=timing.deadline,
        deadline_holds=timing.holds,
        by_tier=by_tier,
        by_model=price_usage(usage, prices, "model", batch=batch),
        duration_s=Range.of(duration.seconds),
        binding_limit=duration.binding,
        providers=[
            ProviderForecast(
                provider=pd.provider,
                requests=round(pd.requests, 1),
                tokens=round(pd.tokens),
                duration_s=Range.of(pd.seconds),
                binding_limit=pd.binding,
                limits_s={k: round(v, 3) for k, v in pd.limits.items()},
            )
            for pd in duration.providers
        ],
        escalation_rate=rate,
        reask_rate=reasks,
        price_version=prices.version,
        method=method,
        history_jobs=used,
        backend=backend,
        elapsed_s=round(time.monotonic() - started, 3),
    )
    if write:
        write_forecast(out_uri, fc)
    return fc


def write_forecast(output_uri: str, fc: Forecast) -> None:
    JobFolder.open(output_uri, fc.job_id).write_forecast(fc.model_dump(mode="json"))


def _escalation(
    spec: JobSpec, history: pl.DataFrame | None, given: float | None
) -> tuple[float, str]:
    """Extra calls per row on the next tier up, and where that figure comes from."""
    if given is not None:
        return given, "as given"
    if history is not None:
        return observed_escalation(history), "observed in earlier runs"
    if (extract := default_escalation(spec)) is not None and spec.routing.escalates():
        return extract
    cascading = spec.routing.cascade is not None or spec.routing.vote is not None
    rate = POLICY_ESCALATION.get("cascade" if cascading else spec.routing.policy, 0.0)
    return rate, "a stated default for cascades" if rate else "routing sends each row once"


def _method(
    plan: Plan,
    ctx: UnitContext,
    plans: dict[str, TierPlan],
    prices: PriceTable,
    escalation: tuple[float, str],
    rows_todo: int,
    earlier: str | None,
    cache_uri: str | None,
) -> list[str]:
    """How each figure was reached, in words, for forecast.json and the report."""
    rate, rate_note = escalation
    method = [
        "input tokens: "
        + "; ".join(
            f"{t} -> {p.provider}/{p.model}: {token_method(p.model, p.family)} "
            f"+ {p.prompt_tokens} prompt tokens"
            for t, p in plans.items()
        ),
        "output tokens: " + "; ".join(f"{t}: {p.output.describe()}" for t, p in plans.items()),
        f"cost interval: all rows at their p10 / p50 / p90 answer length, prices {prices.version}",
        f"escalation: {rate:.3f} extra calls per row on the next tier up ({rate_note})",
        "duration: slowest of each provider's limits (rpm, tpm, tokens/day, in flight x "
        f"latency), the run's shared in-flight slots and client throughput, + {STARTUP_S:g} s",
        f"rows: the whole input, {plan.rows_total - rows_todo} rows of committed units included",
    ]
    if earlier is not None:
        method.append(f"earlier runs: {earlier}")
    if ctx.longdocs is not None:
        method.append(
            "long documents: a row too long for its tier's context window is planned as the "
            "run plans it (map-reduce, or one call to a longer-context tier when cheaper), "
            "with every call's tokens"
        )
    for tier, askers in ctx.askers.items():
        who = ", ".join(f"{p.provider}/{p.model}" for p in askers)
        method.append(f"each {tier} row asked of {who} (vote or agreement check)")
    if ctx.reuse:
        looked = f"answers looked up in {cache_uri}" if cache_uri else "no cached answers yet"
        method.append(f"reuse: identical requests of a unit sent once; {looked}")
    return method


@dataclass(frozen=True, slots=True)
class Finish:
    mode: str
    finish_by: str
    deadline: str | None
    holds: bool | None


def plan_finish(
    spec: JobSpec, sync_s: float, escalation_rate: float, turnaround_s: float | None = None
) -> Finish:
    """How the calls would go out and when the job would end, started now.

    batch: each stage (the first answers, then the escalated rows) takes about
    `turnaround_s` (earlier runs' batches, else `run.batch_turnaround_s`); auto batches
    only while that ends before the deadline with the engine's margin, else the run is
    synchronous and takes the quotas' duration.
    """
    now = datetime.now(UTC)
    run = spec.run
    turnaround = run.batch_turnaround_s if turnaround_s is None else turnaround_s
    deadline = deadline_at(run.deadline, now) if run.deadline else None
    stages = 2 if escalation_rate > 0 else 1
    batch_s = turnaround * stages
    batching = BatchPlan(
        mode=run.mode, deadline_at=deadline.timestamp() if deadline else None,
        turnaround_s=turnaround, sync_reserve_s=run.batch_sync_reserve_s,
    )  # fmt: skip
    use_batch = run.mode == "batch" or (run.mode == "auto" and batching.may_batch(now.timestamp()))
    end = now + timedelta(seconds=batch_s if use_batch else sync_s)
    return Finish(
        mode="batch" if use_batch else "sync",
        finish_by=end.isoformat(timespec="seconds"),
        deadline=deadline.isoformat(timespec="seconds") if deadline else None,
        holds=None if deadline is None else end <= deadline,
    )
