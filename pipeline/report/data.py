"""A job's report: where the money went, how the tiers were used, how fast and how cleanly.

    data = build_report("s3://bucket/tierline/nightly-tickets-1a2b3c4d5e/")
    html = render_html(data)              # pipeline.report.html: one self-contained page
    print_report_table(data, Console())   # pipeline.cli.report: the key figures

Its figures are the sum of the commit markers' unit figures (`pipeline.engine.figures`,
as summary.json's are), so the report of a running or crashed job shows exactly what is
committed, and a job of any size is reported without reading its rows (a marker of an
older version, without figures: its unit's files, one unit at a time). summary.json
supplies the job-level facts (status, wall time, baseline); without it they are derived
from the committed units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.drift.canary import CanaryResult
from pipeline.drift.shift import ShiftReport
from pipeline.engine.figures import forecast_error_pct, job_figures
from pipeline.errors import InputError
from pipeline.jobfolder import FigureSum, JobFolder
from pipeline.report.tables import (
    DeploymentShare,
    ErrorType,
    LatencyHistogram,
    Spend,
    Timeline,
    deployment_shares,
    error_types,
    latency_histograms,
    spend_rows,
    timeline,
)
from pipeline.store import Store
from schemas.figures import UnitFigures
from schemas.prices import PriceTable, load_prices
from schemas.records import UnitCommit

__all__ = [  # the report's figures; the tables' types come from pipeline.report.tables
    "DeploymentShare",
    "ErrorType",
    "ForecastFigures",
    "LatencyHistogram",
    "NotAJob",
    "ReportData",
    "Spend",
    "Timeline",
    "build_report",
    "deployment_shares",
    "fmt_delta",
    "fmt_usd",
    "timeline",
]


class NotAJob(InputError):
    """The prefix holds neither summary.json nor commit markers."""

    error_type = "not_a_job"


@dataclass(frozen=True)
class ForecastFigures:
    """A dry run's estimate beside what the run did; any figure may be unknown (None)."""

    cost_p50: float | None
    cost_low: float | None
    cost_high: float | None
    duration_p50: float | None
    duration_low: float | None
    duration_high: float | None
    actual_cost: float
    actual_duration: float | None


@dataclass(frozen=True)
class ReportData:
    job_id: str
    name: str
    status: str
    prefix: str
    rows_total: int
    rows_ok: int
    rows_error: int
    rows_pending: int
    rows_escalated: int  # answered by another tier than routing chose first
    units_committed: int
    units_total: int | None
    calls: int  # paid calls (answers reused from the cache or an identical row are not)
    cost_usd: float
    budget_usd: float | None
    cache_hits: int  # rows answered from the response cache
    duplicates: int  # rows answered by an identical row's call
    reuse_saved_usd: float | None  # what those answers would have cost (None: unknown)
    flagship_model: str | None
    flagship_baseline_usd: float | None
    savings_pct: float | None
    price_version: str | None
    wall_s: float | None
    last_commit_at: str | None
    by_tier: tuple[Spend, ...]
    by_model: tuple[Spend, ...]
    by_tier_model: tuple[Spend, ...]
    by_mode: tuple[Spend, ...]  # sync against batch-API spend
    latency: tuple[LatencyHistogram, ...]
    timeline: Timeline
    errors: tuple[ErrorType, ...]  # the most frequent types, at most 10
    error_types_total: int
    forecast: ForecastFigures | None
    problems: tuple[str, ...]  # failed units, bad input files, rows pending
    notes: tuple[str, ...]  # what could not be read, or had to be derived
    pools: tuple[DeploymentShare, ...] = ()  # tiers answered by more than one deployment
    canary: CanaryResult | None = None  # the golden set's scores (routing.canary)
    shift: ShiftReport | None = None  # tier shares and rates against the previous run


def build_report(prefix_uri: str) -> ReportData:
    """Read one job prefix (`<output>/<job_id>/`, local or s3://) into report figures.

    Every figure is the sum of the committed units' figures (`pipeline.engine.figures`,
    the function summary.json is built with): the markers are read, not the rows, so the
    report of a job of any size fits in memory. A marker of an older version, without
    figures, has its unit's files read instead, one unit at a time."""
    folder = JobFolder.at(prefix_uri)
    store = folder.store
    notes: list[str] = []
    summary = _read_summary(folder, notes)
    markers = folder.commit_markers()
    if summary is None and not markers:
        raise NotAJob(_no_job_message(store))
    summed = FigureSum()
    commits = _read_commits(folder, [m.path for m in markers], notes, summed)
    prices = _prices(notes)
    f = job_figures(folder, commits, prices, skipped=notes, summed=summed)
    if summary is None:
        notes.append("no summary.json (job running or interrupted): figures cover committed units")
        job_id = commits[0].job_id if commits else _tail(store)
        summary = _Summary(job_id=job_id, rows_total=sum(c.row_count for c in commits))
    s = summary
    cost = f.cost_usd
    canary = _section(CanaryResult, s.canary, "canary", notes)
    shift = _section(ShiftReport, s.shift, "shift", notes)
    base = s.flagship_baseline_usd
    baseline = base if base is not None and math.isfinite(base) and base > 0 else None
    if s.flagship_model and baseline is None:
        notes.append(f"no all-flagship baseline: {s.flagship_model} has no price")
    return ReportData(
        job_id=s.job_id,
        name=s.name,
        status=s.status,
        prefix=store.display(),
        rows_total=s.rows_total,
        rows_ok=f.rows_ok,
        rows_error=f.rows_error,
        rows_pending=s.rows_pending,
        rows_escalated=f.rows_escalated,
        units_committed=len(commits),
        units_total=s.units_total,
        calls=f.calls,
        cost_usd=cost,
        budget_usd=s.budget_usd,
        cache_hits=f.cache_hits,
        duplicates=f.duplicates,
        reuse_saved_usd=_reuse_saved(s, f, prices),
        flagship_model=s.flagship_model,
        flagship_baseline_usd=baseline,
        savings_pct=(1.0 - cost / baseline) * 100.0 if baseline else None,
        price_version=s.price_version,
        wall_s=s.wall_s,
        last_commit_at=max((c.written_at for c in commits), default=None),
        by_tier=spend_rows(f.by_tier, tiers=True),
        by_model=spend_rows(f.by_model),
        by_tier_model=spend_rows(f.by_deployment, grouped=True),
        by_mode=spend_rows(f.by_mode),
        latency=latency_histograms(f.latency),
        pools=deployment_shares(f.pools),
        timeline=timeline(f.timelines),
        errors=error_types(f.errors),
        error_types_total=len(f.errors),
        forecast=_read_forecast(folder, cost, s.wall_s, notes),
        problems=_problems(s, canary, shift),
        notes=tuple(notes),
        canary=canary,
        shift=shift,
    )


# --- reading ------------------------------------------------------------------------


class _Summary(BaseModel):
    """The fields of summary.json (pipeline.engine.summary.JobSummary) the report reads. Others are
    ignored and missing ones default, so a summary from an older or newer version reads."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    job_id: str
    name: str = ""
    status: str = "incomplete"
    rows_total: int = 0
    rows_pending: int = 0
    rows_retryable: int = 0
    units_total: int | None = None
    units_failed: dict[str, str] = Field(default_factory=dict)
    bad_files: dict[str, str] = Field(default_factory=dict)
    flagship_model: str | None = None
    flagship_baseline_usd: float | None = None
    price_version: str | None = None
    budget_usd: float | None = None
    wall_s: float | None = None
    cache_saved_usd: float | None = None
    # Kept raw: a section a newer or older writer shaped otherwise must not hide the rest.
    canary: dict[str, Any] | None = None
    shift: dict[str, Any] | None = None


_M = TypeVar("_M", bound=BaseModel)


def _section(model: type[_M], doc: dict[str, Any] | None, name: str, notes: list[str]) -> _M | None:
    """summary.json's `name` section as `model`; None (and a note) when it does not fit."""
    if doc is None:
        return None
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        notes.append(f"summary.json's {name} section could not be read: {str(exc).splitlines()[0]}")
        return None


def _prices(notes: list[str]) -> PriceTable | None:
    """The price table, to price reused answers of units whose markers lack figures."""
    try:
        return load_prices()
    except (OSError, ValueError) as exc:
        notes.append(f"price table not readable: {exc}")
        return None


def _reuse_saved(s: _Summary, f: UnitFigures, prices: PriceTable | None) -> float | None:
    """What the reused answers would have cost: the summary's figure, else the units'."""
    if not f.reused:
        return 0.0
    if s.cache_saved_usd is not None:
        return s.cache_saved_usd
    return f.reused_saved_usd if prices is not None else None


def _read_summary(folder: JobFolder, notes: list[str]) -> _Summary | None:
    try:
        # json.loads, not pydantic's parser: a baseline without a price is written as NaN.
        doc = folder.read_summary()
        return None if doc is None else _Summary.model_validate(doc)
    except (ValueError, ValidationError) as exc:
        notes.append(f"summary.json could not be read: {str(exc).splitlines()[0]}")
        return None


def _read_commits(
    folder: JobFolder, paths: list[str], notes: list[str], summed: FigureSum
) -> list[UnitCommit]:
    """Every marker, its figures summed into `summed` as it is read (not kept)."""
    commits: list[UnitCommit] = []
    for path in paths:
        try:
            commits.append(summed.take(folder.read_commit(path)))
        except (ValidationError, ValueError, FileNotFoundError):
            notes.append(f"{path} is not a valid commit marker; its unit is left out")
    return sorted(commits, key=lambda c: c.unit)


def _read_forecast(
    folder: JobFolder, actual_cost: float, actual_duration: float | None, notes: list[str]
) -> ForecastFigures | None:
    try:
        doc = folder.read_forecast()
    except ValueError:
        notes.append("forecast.json is not valid JSON; no forecast shown")
        return None
    if doc is None:
        return None
    cost, duration = _rows_only(doc, _estimate(doc, "cost_usd")), _estimate(doc, "duration_s")
    if cost[0] is None and duration[0] is None:
        notes.append("forecast.json has neither cost_usd.p50 nor duration_s.p50")
        return None
    return ForecastFigures(
        *cost, *duration, actual_cost=actual_cost, actual_duration=actual_duration
    )


def _rows_only(doc: object, cost: _Est) -> _Est:
    """The forecast's cost less its canary's, to set against the rows' actual cost."""
    canary = _estimate(doc.get("canary") if isinstance(doc, dict) else None, "cost_usd")
    return cast(
        _Est,
        tuple(None if v is None else v - (c or 0.0) for v, c in zip(cost, canary, strict=True)),
    )


_Est = tuple[float | None, float | None, float | None]


def _estimate(doc: object, key: str) -> tuple[float | None, float | None, float | None]:
    """(p50, low, high) from `{key: {p50, p10, p90}}`, `{key: number}` or `{"key.p50": ..}`.

    The forecast format is provisional: anything unexpected reads as unknown."""
    if not isinstance(doc, dict):
        return None, None, None
    node = doc.get(key)
    if not isinstance(node, dict):
        node = {"p50": node}
        node.update({k.split(".", 1)[1]: v for k, v in doc.items() if k.startswith(key + ".")})

    def num(*names: str) -> float | None:
        for name in names:
            v = node.get(name)
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                return float(v)
        return None

    return num("p50", "median"), num("p10", "p05", "low"), num("p90", "p95", "high")


def _problems(
    s: _Summary, canary: CanaryResult | None = None, shift: ShiftReport | None = None
) -> tuple[str, ...]:
    out = [f"unit {u} failed: {why}" for u, why in s.units_failed.items()]
    out += [f"input file {f} skipped: {why}" for f, why in s.bad_files.items()]
    if canary is not None and not canary.passed:
        below = ", ".join(d.deployment for d in canary.deployments if not d.passed)
        out.append(f"the canary failed ({below} below {canary.min_accuracy:g}): no row was called")
    if shift is not None and shift.flagged:
        moved = ", ".join(shift.flagged)
        out.append(f"routing shifted since {shift.previous_job}: {moved} (see Drift)")
    if s.rows_pending:
        out.append(f"{s.rows_pending:,} rows not done yet (rerun the job to resume)")
    if s.rows_retryable:
        out.append(f"{s.rows_retryable:,} error rows a rerun will retry (deferred or over budget)")
    return tuple(out)


def _tail(store: Store) -> str:
    return store.display().rstrip("/").rsplit("/", 1)[-1]


def _no_job_message(store: Store) -> str:
    """Say so, and name job folders one level down: people often pass the output root."""
    msg = f"{store.display()} holds no tierline job (no summary.json, no _commits/)"
    try:
        infos = store.fs.get_file_info(pafs.FileSelector(store.root, allow_not_found=True))
    except OSError:
        return msg
    below = sorted(
        i.base_name
        for i in infos
        if i.type == pafs.FileType.Directory and not i.base_name.startswith((".", "_"))
    )
    if not below:
        return msg
    return f"{msg}; job folders below it: {', '.join(below[:5])}{' ...' if len(below) > 5 else ''}"


# --- formatting shared by the page and the table --------------------------------------


def fmt_usd(v: float | None) -> str:
    """Dollars with the precision the amount needs: $1,234 / $12.34 / $0.4155 / $0.00202."""
    if v is None:
        return "n/a"
    if v == 0:
        return "$0"
    a = abs(v)
    digits = 0 if a >= 100 else 2 if a >= 1 else 4 if a >= 0.01 else 2 - math.floor(math.log10(a))
    return f"{'-' if v < 0 else ''}${a:,.{digits}f}"


def fmt_delta(actual: float | None, forecast: float | None) -> str:
    """'+12.0%': how far the actual figure came from the forecast, as summary.json's
    forecast_vs_actual and `tierline run` say it ((actual - forecast) / forecast)."""
    if actual is None or forecast is None:
        return ""
    pct = forecast_error_pct(forecast, actual)
    return "" if pct is None else f"{pct:+.1f}%"
