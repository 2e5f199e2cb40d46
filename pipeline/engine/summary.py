"""The job summary: rows, spend by tier and model, savings against all-flagship.

    summary = build_summary(spec, plan, output_uri, wall_s=12.3)
    write_summary(output_uri, plan.job_id, summary)      # -> <output>/<job_id>/summary.json

Built from the committed unit files, not from what this run happened to see, so the
summary of a resumed job covers every unit of it.
"""

from __future__ import annotations

import contextlib
import io
from datetime import UTC, datetime
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from pipeline.calls.cache import CACHED, DUPLICATE, FREE_STATUSES, reused_answers_usd
from pipeline.calls.hedge import CANCELLED, HEDGE_STEP
from pipeline.costs import add_cost_column
from pipeline.drift.canary import CanaryResult
from pipeline.drift.shift import ShiftReport, routing_rates
from pipeline.engine.plan import Plan
from pipeline.errors import JobIncomplete
from pipeline.jobfolder import JobFolder, forecast_rows_usd
from pipeline.store import Store
from schemas.job import JobSpec
from schemas.prices import PriceTable, UnknownPrice
from schemas.records import COSTS, ERRORS, RESULTS


class Bucket(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: int = 0
    calls: int = 0
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0


class JobSummary(BaseModel):
    """A finished job's figures, as written to summary.json.

    summary = pipeline.run("spec.yaml")
    summary.rows_ok, summary.cost_usd, summary.savings_pct, summary.status
    """

    model_config = ConfigDict(extra="forbid")

    job_id: str
    name: str
    status: str = Field(description="complete | incomplete (units failed or not done)")
    output: str
    rows_total: int
    rows_ok: int
    rows_error: int
    rows_duplicate: int
    rows_retryable: int = Field(description="Error rows a rerun retries (deferred, budget).")
    rows_pending: int
    units_total: int
    units_committed: int
    units_failed: dict[str, str]
    bad_files: dict[str, str]
    units_retried: int = Field(
        default=0, description="Units handed out again after a worker died or a unit failed."
    )
    workers_lost: int = Field(
        default=0, description="Worker processes that died and were replaced."
    )
    rows_recovered: int = Field(
        default=0,
        description="Rows whose answer an earlier, interrupted run had paid for, taken from "
        "the unit's answer journal instead of being asked (and paid) again.",
    )
    rows_journalled: int = Field(
        default=0,
        description="After a stop: answered rows of uncommitted units, kept in their "
        "journals for the next run.",
    )
    journalled_usd: float = Field(
        default=0.0, description="After a stop: what those journalled answers cost."
    )
    stopped: str | None = Field(
        default=None,
        description="Why this run stopped before its end (a signal, a lost actor), if it did.",
    )
    calls: int = Field(description="Calls paid for (cost rows that are not reused answers).")
    cache_hits: int = Field(default=0, description="Rows answered from the response cache.")
    duplicates: int = Field(default=0, description="Rows answered by an identical row's call.")
    cache_saved_usd: float = Field(
        default=0.0, description="What the reused answers would have cost."
    )
    cost_usd: float
    by_tier: dict[str, Bucket]
    by_model: dict[str, Bucket]
    by_mode: dict[str, Bucket] = Field(
        default_factory=dict,
        description="Paid calls by how they went out: sync, or batch (the batch-API price).",
    )
    cached_input_tokens: int = Field(
        default=0, description="Input tokens the providers served from their prompt cache."
    )
    prompt_cache_saved_usd: float = Field(
        default=0.0, description="What those tokens would have cost at the plain input price."
    )
    errors_by_type: dict[str, int]
    flagship_model: str
    flagship_baseline_usd: float
    savings_pct: float
    price_version: str
    budget_usd: float | None
    wall_s: float
    forecast_vs_actual: dict[str, float | None] | None = Field(
        default=None, description="When `tierline forecast` ran first: its p50 against this run."
    )
    escalation_rate: float = Field(
        default=0.0, description="Share of rows sent above the tier routing chose."
    )
    hedges_sent: int = Field(
        default=0, description="Hedged requests sent (run.hedge): a slow call asked again."
    )
    hedges_won: int = Field(default=0, description="Hedges that answered first.")
    hedge_usd: float = Field(default=0.0, description="What the hedged requests cost.")
    cancelled_usd: float = Field(
        default=0.0,
        description="Calls cut off because the other call of their hedge answered first, "
        "counted at their worst case (a cancelled request may still be billed).",
    )
    disagreement_rate: float = Field(
        default=0.0, description="Share of rows whose agreement check disagreed."
    )
    finished_at: str | None = Field(default=None, description="When the job ended (UTC).")
    canary: CanaryResult | None = Field(
        default=None, description="The golden set's scores per deployment (routing.canary)."
    )
    shift: ShiftReport | None = Field(
        default=None, description="Tier shares and rates against the previous run."
    )

    def raise_for_status(self) -> JobSummary:
        """Raise `JobIncomplete` when units were not done (rows pending, units failed,
        or input files skipped); return the summary otherwise.

            pipeline.run("spec.yaml").raise_for_status().cost_usd
        """
        if self.status == "complete":
            return self
        reasons = [f"unit {u}: {why}" for u, why in sorted(self.units_failed.items())]
        if self.canary is not None and not self.canary.passed:
            reasons.insert(0, "the canary failed (see summary.canary)")
        reasons += [f"file {f}: {why}" for f, why in sorted(self.bad_files.items())]
        if self.stopped:
            reasons.insert(0, self.stopped)
        if self.rows_pending:
            reasons.append(f"{self.rows_pending} rows not done")
        raise JobIncomplete(
            f"job {self.job_id} is incomplete: "
            + ("; ".join(reasons[:5]) or self.status)
            + (f" (+{len(reasons) - 5} more)" if len(reasons) > 5 else "")
            + "; run it again to resume",
            job_id=self.job_id,
            units_failed=dict(self.units_failed),
        )


def _read(store: Store, paths: list[str], schema: object) -> pl.DataFrame:
    frames = [pl.read_parquet(io.BytesIO(store.read_bytes(p))) for p in paths]
    if not frames:
        return pl.from_arrow(schema.empty_table())  # type: ignore[attr-defined,return-value]
    return pl.concat(frames, how="diagonal_relaxed")


def load_outputs(out: Store, plan: Plan) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    commits = sorted(plan.committed.values(), key=lambda c: c.unit)
    results = _read(out, [c.results.path for c in commits], RESULTS)
    costs = _read(out, [c.costs.path for c in commits], COSTS)
    errors = _read(out, [c.errors.path for c in commits], ERRORS)
    return results, costs, errors


def flagship_baseline(costs: pl.DataFrame, model: str, prices: PriceTable) -> float:
    """What the rows that made calls would have cost on `model`: each row's last billed
    call's tokens, priced at the flagship's rates."""
    if costs.is_empty():
        return 0.0
    try:
        price = prices.lookup(model)
    except UnknownPrice:
        return float("nan")
    last = (
        costs.sort("attempt")
        .group_by("id")
        .agg(pl.col("input_tokens").last(), pl.col("output_tokens").last())
    )
    tin = int(last["input_tokens"].sum())
    tout = int(last["output_tokens"].sum())
    return (tin * price.input_per_mtok + tout * price.output_per_mtok) / 1e6


def _buckets(rows: pl.DataFrame, costs: pl.DataFrame, keys: list[str]) -> dict[str, Bucket]:
    """Rows, calls, cost and tokens grouped by `keys` (joined with '/'; a null is 'none')."""

    def name(values: tuple[object, ...]) -> str:
        return "/".join("none" if v is None else str(v) for v in values)

    out: dict[str, Bucket] = {}
    for *key, n in rows.group_by(keys).len().iter_rows():
        out[name(tuple(key))] = Bucket(rows=n)
    sums = costs.group_by(keys).agg(
        pl.len(),
        pl.col("cost_usd").sum(),
        pl.col("input_tokens").sum(),
        pl.col("output_tokens").sum(),
    )
    for *key, calls, cost, tin, tout in sums.iter_rows():
        b = out.setdefault(name(tuple(key)), Bucket())
        b.calls, b.cost_usd, b.input_tokens, b.output_tokens = calls, cost, tin, tout
    return out


def _hedge_figures(costs: pl.DataFrame) -> dict[str, Any]:
    """Hedges sent and won, their cost, and the cost of the calls hedging cut off."""
    if costs.is_empty() or "step" not in costs.columns:
        return {}
    hedges = costs.filter(pl.col("step") == HEDGE_STEP)
    cancelled = costs.filter(pl.col("call_status") == CANCELLED)
    return {
        "hedges_sent": hedges.height,
        "hedges_won": hedges.filter(pl.col("call_status") != CANCELLED).height,
        "hedge_usd": float(hedges["cost_usd"].sum()) if hedges.height else 0.0,
        "cancelled_usd": float(cancelled["cost_usd"].sum()) if cancelled.height else 0.0,
    }


def _paid_calls(costs: pl.DataFrame) -> pl.DataFrame:
    """Billed calls, with the prompt-cache and mode columns older cost files lack."""
    paid = costs.filter(~pl.col("call_status").is_in(list(FREE_STATUSES)))
    defaults = {"cached_input_tokens": 0, "cache_write_tokens": 0, "mode": "sync"}
    return paid.with_columns(
        (pl.col(c).fill_null(v) if c in paid.columns else pl.lit(v)).alias(c)
        for c, v in defaults.items()
    )


def _prompt_cache_saved(paid: pl.DataFrame, prices: PriceTable) -> float:
    """The same calls priced as if nothing came from the prompt cache, minus their cost."""
    if paid.is_empty() or int(paid["cached_input_tokens"].sum()) == 0:
        return 0.0
    try:
        uncached = add_cost_column(
            paid.with_columns(pl.lit(0).alias("cached_input_tokens")), prices
        )
    except (KeyError, ValueError):
        return 0.0
    return max(0.0, float(uncached["cost_usd"].sum()) - float(paid["cost_usd"].sum()))


def build_summary(
    spec: JobSpec,
    plan: Plan,
    output_uri: str,
    *,
    wall_s: float,
    failed_units: dict[int, str] | None = None,
    prices: PriceTable | None = None,
) -> JobSummary:
    prices = prices or spec.price_table()
    out = Store.open(output_uri).child(plan.job_id)
    plan.committed = JobFolder(out).committed_units()
    results, costs, errors = load_outputs(out, plan)

    routed = pl.concat([results.select("id", "tier"), errors.select("id", "tier")])
    by_tier = _buckets(routed, costs, ["tier"])
    by_model = _buckets(results, costs, ["provider", "model"])
    paid = _paid_calls(costs)
    by_mode = _buckets(paid.unique(["id", "mode"]), paid, ["mode"])

    cost = float(costs["cost_usd"].sum()) if not costs.is_empty() else 0.0
    flagship = spec.flagship()
    baseline = flagship_baseline(costs, flagship.model, prices)
    savings = (1.0 - cost / baseline) * 100.0 if baseline and baseline == baseline else 0.0
    committed_rows = sum(c.row_count for c in plan.committed.values())
    failed = failed_units or {}
    rows_dup = sum(c.rows_duplicate for c in plan.committed.values())
    retryable = sum(c.rows_retryable for c in plan.committed.values())
    complete = len(plan.committed) == len(plan.units) and not failed and not retryable
    escalation, disagreement = routing_rates(results, costs, errors)
    return JobSummary(
        job_id=plan.job_id,
        name=spec.name,
        status="complete" if complete else "incomplete",
        output=out.display(),
        rows_total=plan.rows_total,
        rows_ok=results.height,
        rows_error=errors.height,
        rows_duplicate=rows_dup,
        rows_retryable=retryable,
        rows_recovered=sum(c.rows_recovered for c in plan.committed.values()),
        rows_pending=plan.rows_total - committed_rows,
        units_total=len(plan.units),
        units_committed=len(plan.committed),
        units_failed={str(k): v for k, v in failed.items()},
        bad_files={b.source: b.reason for b in plan.bad_files},
        calls=costs.filter(~pl.col("call_status").is_in(list(FREE_STATUSES))).height,
        cache_hits=costs.filter(pl.col("call_status") == CACHED).height,
        duplicates=costs.filter(pl.col("call_status") == DUPLICATE).height,
        cache_saved_usd=reused_answers_usd(costs, prices),
        cost_usd=cost,
        by_tier=dict(sorted(by_tier.items())),
        by_model=dict(sorted(by_model.items())),
        by_mode=dict(sorted(by_mode.items())),
        cached_input_tokens=int(paid["cached_input_tokens"].sum()),
        prompt_cache_saved_usd=_prompt_cache_saved(paid, prices),
        errors_by_type=dict(errors.group_by("error_type").len().sort("error_type").iter_rows()),
        flagship_model=flagship.name,
        flagship_baseline_usd=baseline,
        savings_pct=savings,
        price_version=prices.version,
        budget_usd=spec.budget_usd,
        wall_s=round(wall_s, 3),
        escalation_rate=round(escalation, 6),
        disagreement_rate=round(disagreement, 6),
        **_hedge_figures(costs),
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def attach_forecast(summary: JobSummary, output_uri: str) -> JobSummary:
    """Set the dry run's forecast against what the run spent and took, when one exists."""
    # An unreadable, older or foreign forecast file: leave the comparison out.
    with contextlib.suppress(KeyError, TypeError, ValueError):
        doc = JobFolder.open(output_uri, summary.job_id).read_forecast()
        if doc is not None:
            summary.forecast_vs_actual = compare_forecast(doc, summary)
    return summary


def write_summary(output_uri: str, job_id: str, summary: JobSummary) -> None:
    JobFolder.open(output_uri, job_id).write_summary(summary.model_dump(mode="json"))


def _error_pct(forecast: float, actual: float) -> float | None:
    if actual == 0:
        return 0.0 if forecast == 0 else None
    return (forecast - actual) / actual * 100.0


def compare_forecast(forecast_json: dict[str, Any], summary: JobSummary) -> dict[str, float | None]:
    """Forecast (p50) against the run. Errors are signed percentages of the actual
    (positive: the forecast was high), None when the actual is 0 and the forecast not.

        compare_forecast(folder.read_forecast(), summary)["cost_error_pct"]   # -2.1
    """
    fc_cost = forecast_rows_usd(forecast_json, "p50")  # the canary is not in summary.cost_usd
    fc_duration = float(forecast_json["duration_s"]["p50"])
    return {
        "forecast_cost_usd": fc_cost,
        "actual_cost_usd": summary.cost_usd,
        "cost_error_pct": _error_pct(fc_cost, summary.cost_usd),
        "forecast_duration_s": fc_duration,
        "actual_duration_s": summary.wall_s,
        "duration_error_pct": _error_pct(fc_duration, summary.wall_s),
    }
