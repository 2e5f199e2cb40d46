"""The job summary: rows, spend by tier and model, savings against all-flagship.

    summary = build_summary(spec, plan, output_uri, wall_s=12.3)
    write_summary(output_uri, plan.job_id, summary)      # -> <output>/<job_id>/summary.json

Built from the committed units' figures (their markers; `pipeline.engine.figures`), not
from what this run happened to see, so the summary of a resumed job covers every unit of
it, and never needs all the job's rows in one process.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.drift.canary import CanaryResult
from pipeline.drift.shift import ShiftReport
from pipeline.engine.figures import forecast_error_pct, job_figures
from pipeline.engine.plan import Plan
from pipeline.errors import JobIncomplete
from pipeline.jobfolder import FigureSum, JobFolder, forecast_rows_usd
from pipeline.store import Store
from schemas.figures import Tally, UnitFigures
from schemas.job import JobSpec
from schemas.prices import PriceTable, UnknownPrice

Bucket = Tally  # the name older code used for a group's figures


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
    calls: int = Field(
        description="Calls paid for (cost rows that are not reused answers); the tiers' and "
        "the models' calls add up to it."
    )
    rows_reused: int = Field(
        default=0, description="Rows answered without a call: cache_hits + duplicates."
    )
    cache_hits: int = Field(default=0, description="Rows answered from the response cache.")
    duplicates: int = Field(default=0, description="Rows answered by an identical row's call.")
    cache_saved_usd: float = Field(
        default=0.0, description="What the reused answers would have cost."
    )
    cost_usd: float
    by_tier: dict[str, Tally] = Field(
        description="Rows by the tier that answered (an error row: its last call's tier, "
        "'none' when it reached none); calls and cost by the tier called."
    )
    by_model: dict[str, Tally] = Field(description="The same by provider/model.")
    by_mode: dict[str, Tally] = Field(
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
        default=None,
        description="When `tierline forecast` ran first: its p50 against this run. Errors "
        "are (actual - forecast) / forecast in percent: positive when the run cost or took "
        "more than forecast.",
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

    reasons: list[str] = Field(
        default_factory=list,
        description="Why the job is incomplete (empty when complete): units failed, input "
        "files skipped, a stop, rows not done. What raise_for_status() raises with.",
    )

    @property
    def ok(self) -> bool:
        """Every row done: the job is complete."""
        return self.status == "complete"

    def why_incomplete(self) -> list[str]:
        """The reasons the job is not complete, most telling first; [] when it is."""
        if self.status == "complete":
            return []
        reasons = [f"unit {u}: {why}" for u, why in sorted(self.units_failed.items())]
        if self.canary is not None and not self.canary.passed:
            reasons.insert(0, "the canary failed (see summary.canary)")
        reasons += [
            f"file {f} skipped: {why} (fix it and rerun, or accept it with "
            "--accept-skipped-files / input.accept_skipped_files)"
            for f, why in sorted(self.bad_files.items())
        ]
        if self.stopped:
            reasons.insert(0, self.stopped)
        if self.rows_retryable:
            reasons.append(f"{self.rows_retryable} rows deferred or over budget")
        if self.rows_pending:
            reasons.append(f"{self.rows_pending} rows not done")
        return reasons or [self.status]

    def raise_for_status(self) -> JobSummary:
        """Raise `JobIncomplete` when units were not done (rows pending, units failed,
        or input files skipped); return the summary otherwise.

            pipeline.run("spec.yaml").raise_for_status().cost_usd
        """
        if self.status == "complete":
            return self
        reasons = self.reasons or self.why_incomplete()
        raise JobIncomplete(
            f"job {self.job_id} is incomplete: "
            + "; ".join(reasons[:5])
            + (f" (+{len(reasons) - 5} more)" if len(reasons) > 5 else "")
            + "; run it again to resume",
            job_id=self.job_id,
            units_failed=dict(self.units_failed),
            reasons=list(reasons),
        )


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
    folder = JobFolder(Store.open(output_uri).child(plan.job_id))
    summed = FigureSum()
    plan.committed = folder.committed_units(sum_into=summed)
    f = job_figures(folder, plan.committed.values(), prices, summed=summed)
    cost = f.cost_usd
    flagship = spec.flagship()
    baseline = baseline_usd(f, flagship.model, prices)
    savings = (1.0 - cost / baseline) * 100.0 if baseline and baseline == baseline else 0.0
    committed_rows = sum(c.row_count for c in plan.committed.values())
    failed = failed_units or {}
    rows_dup = sum(c.rows_duplicate for c in plan.committed.values())
    retryable = sum(c.rows_retryable for c in plan.committed.values())
    # A file that could not be used leaves its rows in neither results nor errors.
    skipped = bool(plan.bad_files) and not spec.input.accept_skipped_files
    complete = (
        len(plan.committed) == len(plan.units) and not failed and not retryable and not skipped
    )
    rows = f.rows
    return JobSummary(
        job_id=plan.job_id,
        name=spec.name,
        status="complete" if complete else "incomplete",
        output=folder.display(),
        rows_total=plan.rows_total,
        rows_ok=f.rows_ok,
        rows_error=f.rows_error,
        rows_duplicate=rows_dup,
        rows_retryable=retryable,
        rows_recovered=sum(c.rows_recovered for c in plan.committed.values()),
        rows_pending=plan.rows_total - committed_rows,
        units_total=len(plan.units),
        units_committed=len(plan.committed),
        units_failed={str(k): v for k, v in failed.items()},
        bad_files={b.source: b.reason for b in plan.bad_files},
        calls=f.calls,
        rows_reused=f.reused,
        cache_hits=f.cache_hits,
        duplicates=f.duplicates,
        cache_saved_usd=f.reused_saved_usd,
        cost_usd=cost,
        by_tier=f.by_tier,
        by_model=f.by_model,
        by_mode=f.by_mode,
        cached_input_tokens=f.cached_input_tokens,
        prompt_cache_saved_usd=f.prompt_cache_saved_usd,
        errors_by_type={t: e.count for t, e in sorted(f.errors.items())},
        flagship_model=flagship.name,
        flagship_baseline_usd=baseline,
        savings_pct=savings,
        price_version=prices.version,
        budget_usd=spec.budget_usd,
        wall_s=round(wall_s, 3),
        escalation_rate=round(f.rows_escalated / rows, 6) if rows else 0.0,
        disagreement_rate=round(f.rows_disagreed / rows, 6) if rows else 0.0,
        hedges_sent=f.hedges_sent,
        hedges_won=f.hedges_won,
        hedge_usd=f.hedge_usd,
        cancelled_usd=f.cancelled_usd,
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def baseline_usd(f: UnitFigures, model: str, prices: PriceTable) -> float:
    """What the rows that made calls would have cost on `model`: each row's last call's
    tokens, priced at its rates (NaN when it has no price)."""
    try:
        price = prices.lookup(model)
    except UnknownPrice:
        return float("nan") if f.baseline_input_tokens else 0.0
    tin, tout = f.baseline_input_tokens, f.baseline_output_tokens
    return (tin * price.input_per_mtok + tout * price.output_per_mtok) / 1e6


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


def compare_forecast(forecast_json: dict[str, Any], summary: JobSummary) -> dict[str, float | None]:
    """Forecast (p50) against the run. Errors are (actual - forecast) / forecast in
    percent (positive: the run cost or took more), None when the forecast is 0 and the
    run not (`pipeline.engine.figures.forecast_error_pct`).

        compare_forecast(folder.read_forecast(), summary)["cost_error_pct"]   # +2.1
    """
    fc_cost = forecast_rows_usd(forecast_json, "p50")  # the canary is not in summary.cost_usd
    fc_duration = float(forecast_json["duration_s"]["p50"])
    return {
        "forecast_cost_usd": fc_cost,
        "actual_cost_usd": summary.cost_usd,
        "cost_error_pct": forecast_error_pct(fc_cost, summary.cost_usd),
        "forecast_duration_s": fc_duration,
        "actual_duration_s": summary.wall_s,
        "duration_error_pct": forecast_error_pct(fc_duration, summary.wall_s),
    }
