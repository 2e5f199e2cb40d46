"""A job's report: where the money went, how the tiers were used, how fast and how cleanly.

    data = build_report("s3://bucket/tierline/nightly-tickets-1a2b3c4d5e/")
    html = render_html(data)              # pipeline.report.html: one self-contained page
    print_report_table(data, Console())   # pipeline.cli.report: the key figures

Only unit files named by a commit marker are read, so the report of a running or crashed
job shows exactly what is committed. summary.json (written when the job ends) supplies the
job-level figures; without it they are derived from the committed units.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.calls.cache import CACHED, DUPLICATE, FREE_STATUSES, reused_answers_usd
from pipeline.drift.canary import CanaryResult
from pipeline.drift.shift import ShiftReport
from pipeline.errors import InputError
from pipeline.jobfolder import JobFolder
from pipeline.store import Store
from schemas.prices import load_prices
from schemas.records import COSTS, ERRORS, RESULTS, UnitCommit

_RESULT_COLS = ("id", "tier", "routed_tier", "provider", "model", "attempts", "rate_limited",
                "rate_limited_by", "latency_ms", "completed_at")  # fmt: skip
_COST_COLS = (
    "id", "provider", "model", "tier", "cost_usd", "call_status", "input_tokens",
    "output_tokens", "mode",
)  # fmt: skip
_ERROR_COLS = ("id", "error_type", "message", "tier")
TIER_ORDER = ("cheap", "mid", "flagship")
# Timeline bucket widths, seconds: the smallest that gives at most 60 buckets is used.
_STEPS_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0,
            1800.0, 3600.0, 21600.0, 86400.0)  # fmt: skip
LATENCY_BINS = 30


class NotAJob(InputError):
    """The prefix holds neither summary.json nor commit markers."""

    error_type = "not_a_job"


@dataclass(frozen=True)
class Spend:
    key: str  # tier, or "provider/model"
    rows: int
    calls: int
    cost_usd: float
    group: str = ""  # the tier, in the tier-by-model breakdown


@dataclass(frozen=True)
class LatencyHistogram:
    provider: str
    edges_ms: tuple[float, ...]  # log-spaced, shared by every provider; len(counts) + 1
    counts: tuple[int, ...]
    n: int
    p50: float
    p95: float
    p99: float


@dataclass(frozen=True)
class Timeline:
    """Rows completed, rows that needed a retry and 429s, per time bucket."""

    start: datetime | None
    step_s: float
    rows: tuple[int, ...]
    retried: tuple[int, ...]
    rate_limited: tuple[int, ...]
    per_call_429: bool  # False: files without per-row 429 counts (older writers)


@dataclass(frozen=True)
class DeploymentShare:
    """One deployment of a tier's pool: its share of the tier's answered rows, the 429s
    it answered (to any row that was then answered, there or elsewhere), its latency."""

    tier: str
    deployment: str  # provider/model
    rows: int
    share: float  # of the tier's answered rows
    rate_limited: int
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True)
class ErrorType:
    error_type: str
    count: int
    example_ids: tuple[str, ...]
    example_message: str


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
    """Read one job prefix (`<output>/<job_id>/`, local or s3://) into report figures."""
    folder = JobFolder.at(prefix_uri)
    store = folder.store
    notes: list[str] = []
    summary = _read_summary(folder, notes)
    markers = folder.commit_markers()
    if summary is None and not markers:
        raise NotAJob(_no_job_message(store))
    commits = _read_commits(folder, [m.path for m in markers], notes)
    results, costs, errors = _read_units(store, commits, notes)
    if summary is None:
        notes.append("no summary.json (job running or interrupted): figures cover committed units")
        job_id = commits[0].job_id if commits else _tail(store)
        summary = _Summary(job_id=job_id, rows_total=sum(c.row_count for c in commits))
    s = summary
    cost = float(costs["cost_usd"].sum())
    status = costs["call_status"]
    cached, duplicates = int((status == CACHED).sum()), int((status == DUPLICATE).sum())
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
        rows_ok=results.height,
        rows_error=errors.height,
        rows_pending=s.rows_pending,
        rows_escalated=results.filter(pl.col("routed_tier") != pl.col("tier")).height,
        units_committed=len(commits),
        units_total=s.units_total,
        calls=costs.height - cached - duplicates,
        cost_usd=cost,
        budget_usd=s.budget_usd,
        cache_hits=cached,
        duplicates=duplicates,
        reuse_saved_usd=_reuse_saved(s, costs, cached + duplicates, notes),
        flagship_model=s.flagship_model,
        flagship_baseline_usd=baseline,
        savings_pct=(1.0 - cost / baseline) * 100.0 if baseline else None,
        price_version=s.price_version,
        wall_s=s.wall_s,
        last_commit_at=max((c.written_at for c in commits), default=None),
        by_tier=spend_by(costs, pl.concat([results, errors], how="diagonal"), ("tier",)),
        by_model=spend_by(costs, results, ("provider", "model")),
        by_tier_model=spend_by(costs, None, ("tier", "provider", "model")),
        by_mode=spend_by(costs, None, ("mode",)),
        latency=latency_histograms(results),
        pools=deployment_shares(results),
        timeline=timeline(results, errors, {c.unit: c.written_at for c in commits}),
        errors=error_types(errors),
        error_types_total=errors["error_type"].n_unique() if errors.height else 0,
        forecast=_read_forecast(folder, cost, s.wall_s, notes),
        problems=_problems(s, canary, shift),
        notes=tuple(notes),
        canary=canary,
        shift=shift,
    )


# --- aggregations (pure: frames in, figures out) ---------------------------------------


def spend_by(
    costs: pl.DataFrame, rows: pl.DataFrame | None, keys: tuple[str, ...]
) -> tuple[Spend, ...]:
    """Paid calls and cost from the cost rows, rows routed from `rows`, grouped by `keys`.

    Tiers come in routing order; anything else by cost, largest first."""
    ks = list(keys)
    paid = ~pl.col("call_status").is_in(list(FREE_STATUSES)).fill_null(False)
    spent = costs.group_by(ks).agg(calls=paid.sum(), cost_usd=pl.col("cost_usd").sum())
    if rows is not None:
        counted = rows.group_by(ks).agg(rows=pl.len())
        spent = spent.join(counted, on=ks, how="full", coalesce=True, nulls_equal=True)
    else:
        spent = spent.with_columns(rows=pl.lit(0))
    out = []
    for r in spent.fill_null(0).iter_rows(named=True):
        name = "/".join(str(r[k] or "none") for k in ks if k != "tier") or str(r["tier"] or "none")
        group = str(r["tier"] or "none") if len(ks) > 1 and "tier" in ks else ""
        out.append(Spend(name, int(r["rows"]), int(r["calls"]), float(r["cost_usd"]), group))
    if ks == ["tier"]:
        return tuple(sorted(out, key=lambda s: (_tier_rank(s.key), s.key)))
    return tuple(sorted(out, key=lambda s: (_tier_rank(s.group), -s.cost_usd, s.key)))


def _tier_rank(tier: str) -> int:
    return TIER_ORDER.index(tier) if tier in TIER_ORDER else len(TIER_ORDER)


def deployment_shares(results: pl.DataFrame) -> tuple[DeploymentShare, ...]:
    """Per tier that more than one deployment answered (or whose rows met 429s): each
    deployment's share of the tier's rows, the 429s it answered them, their latency."""
    if results.is_empty():
        return ()
    limited: dict[tuple[str, str], int] = {}
    met = results.filter(pl.col("rate_limited_by").is_not_null())
    for tier, raw in met.select("tier", "rate_limited_by").iter_rows():
        for dep, n in json.loads(raw).items():
            limited[(tier, dep)] = limited.get((tier, dep), 0) + int(n)
    answered = results.filter(pl.col("provider").is_not_null()).with_columns(
        (pl.col("provider") + "/" + pl.col("model")).alias("deployment")
    )
    per = answered.group_by("tier", "deployment").agg(
        pl.len().alias("rows"),
        pl.col("latency_ms").quantile(0.5).alias("p50"),
        pl.col("latency_ms").quantile(0.95).alias("p95"),
    )
    rows = {(t, d): (n, p50, p95) for t, d, n, p50, p95 in per.iter_rows()}
    tier_rows = dict(answered.group_by("tier").len().iter_rows())
    deps_of: dict[str, set[str]] = {}
    for t, d in [*rows, *limited]:
        deps_of.setdefault(t, set()).add(d)
    shares = []
    for t, d in sorted(set(rows) | set(limited), key=lambda k: (_tier_rank(k[0]), k[1])):
        if len(deps_of[t]) < 2 and not limited.get((t, d)):
            continue  # one deployment and no 429s: not a pool worth showing
        n, p50, p95 = rows.get((t, d), (0, None, None))
        share = n / tier_rows[t] if tier_rows.get(t) else 0.0
        shares.append(
            DeploymentShare(t, d, n, share, limited.get((t, d), 0), p50 or 0.0, p95 or 0.0)
        )
    return tuple(shares)


def latency_histograms(results: pl.DataFrame) -> tuple[LatencyHistogram, ...]:
    """Per-provider histograms over shared log-spaced bins (latency has a long tail)."""
    lat = results.select("provider", "latency_ms").drop_nulls().filter(pl.col("latency_ms") > 0)
    if lat.is_empty():
        return ()
    lo_raw, hi_raw = float(lat["latency_ms"].min()), float(lat["latency_ms"].max())  # type: ignore[arg-type]
    lo = 10 ** math.floor(math.log10(lo_raw))
    hi = max(10 ** math.ceil(math.log10(hi_raw)), lo * 10)
    span = math.log(hi / lo)
    edges = tuple(lo * math.exp(span * i / LATENCY_BINS) for i in range(LATENCY_BINS + 1))
    binned = lat.with_columns(
        bin=((pl.col("latency_ms") / lo).log() / span * LATENCY_BINS)
        .floor()
        .clip(0, LATENCY_BINS - 1)
        .cast(pl.Int64)
    )
    out = []
    for provider, group in sorted(binned.group_by("provider"), key=lambda g: str(g[0][0])):
        counts = [0] * LATENCY_BINS
        for b, n in group.group_by("bin").len().iter_rows():
            counts[b] = n
        q = group["latency_ms"]
        out.append(
            LatencyHistogram(
                provider=str(provider[0]),
                edges_ms=edges,
                counts=tuple(counts),
                n=group.height,
                p50=float(q.quantile(0.5) or 0),
                p95=float(q.quantile(0.95) or 0),
                p99=float(q.quantile(0.99) or 0),
            )
        )
    return tuple(out)


def timeline(results: pl.DataFrame, errors: pl.DataFrame, unit_times: dict[int, str]) -> Timeline:
    """Rows done, rows retried (attempts > 1) and 429 answers per bucket of completion time.

    429s are the per-row counts on results, plus one for each row that finally failed as
    rate_limited, placed at its unit's commit time (error rows carry no time of their own).
    Files written before per-row counts existed have none: `per_call_429` is then False."""
    per_call = bool(results["rate_limited"].is_not_null().any())
    done = results.filter(pl.col("completed_at").is_not_null()).select(
        t=pl.col("completed_at").dt.epoch("us"),
        rows=pl.lit(1),
        retried=(pl.col("attempts").fill_null(1) > 1).cast(pl.Int64),
        rl=pl.col("rate_limited").fill_null(0).cast(pl.Int64),
    )
    when = pl.DataFrame(
        {"unit": list(unit_times), "at": list(unit_times.values())},
        schema={"unit": pl.Int32, "at": pl.String},
    ).with_columns(t=pl.col("at").str.to_datetime(time_zone="UTC").dt.epoch("us"))
    limited = errors.filter(pl.col("error_type") == "rate_limited").join(when, on="unit")
    failed = limited.select("t", rows=pl.lit(0), retried=pl.lit(0), rl=pl.lit(1))
    events = pl.concat([done, failed], how="vertical_relaxed").drop_nulls("t")
    if events.is_empty():
        return Timeline(None, 1.0, (), (), (), per_call)
    t0, t1 = int(events["t"].min()), int(events["t"].max())  # type: ignore[arg-type]
    step_s = next((s for s in _STEPS_S if (t1 - t0) / 1e6 / s < 60), _STEPS_S[-1])
    step = int(step_s * 1e6)
    start = t0 // step * step
    n = (t1 - start) // step + 1
    per = events.group_by(b=(pl.col("t") - start) // step).agg(
        pl.col("rows").sum(), pl.col("retried").sum(), pl.col("rl").sum()
    )
    rows, retried, rl = [0] * n, [0] * n, [0] * n
    for b, r, rt, x in per.iter_rows():
        rows[b], retried[b], rl[b] = r, rt, x
    at = datetime.fromtimestamp(start / 1e6, tz=UTC)
    return Timeline(at, step_s, tuple(rows), tuple(retried), tuple(rl), per_call)


def error_types(errors: pl.DataFrame, top: int = 10, examples: int = 5) -> tuple[ErrorType, ...]:
    g = (
        errors.group_by(t=pl.col("error_type").fill_null("unknown"))
        .agg(
            n=pl.len(),
            ids=pl.col("id").head(examples),
            msg=pl.col("message").drop_nulls().first(),
        )
        .sort(["n", "t"], descending=[True, False])
        .head(top)
    )
    return tuple(
        ErrorType(t, n, tuple(str(i) for i in ids), msg or "") for t, n, ids, msg in g.iter_rows()
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


def _reuse_saved(s: _Summary, costs: pl.DataFrame, reused: int, notes: list[str]) -> float | None:
    """What the reused answers would have cost: the summary's figure, else priced here
    from their cost rows (tokens as the original call billed them)."""
    if not reused:
        return 0.0
    if s.cache_saved_usd is not None:
        return s.cache_saved_usd
    try:
        return reused_answers_usd(costs, load_prices())
    except (KeyError, ValueError) as exc:
        notes.append(f"savings of reused answers unknown: {exc}")
        return None


def _read_summary(folder: JobFolder, notes: list[str]) -> _Summary | None:
    try:
        # json.loads, not pydantic's parser: a baseline without a price is written as NaN.
        doc = folder.read_summary()
        return None if doc is None else _Summary.model_validate(doc)
    except (ValueError, ValidationError) as exc:
        notes.append(f"summary.json could not be read: {str(exc).splitlines()[0]}")
        return None


def _read_commits(folder: JobFolder, paths: list[str], notes: list[str]) -> list[UnitCommit]:
    commits: list[UnitCommit] = []
    for path in paths:
        try:
            commits.append(folder.read_commit(path))
        except (ValidationError, ValueError, FileNotFoundError):
            notes.append(f"{path} is not a valid commit marker; its unit is left out")
    return sorted(commits, key=lambda c: c.unit)


_Frames = tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]
_FILES = ((RESULTS, _RESULT_COLS), (COSTS, _COST_COLS), (ERRORS, _ERROR_COLS))


def _read_units(store: Store, commits: list[UnitCommit], notes: list[str]) -> _Frames:
    def load(c: UnitCommit) -> _Frames | str:
        try:
            r, k, e = (
                _read_file(store, entry.path, entry.rows, schema, cols).with_columns(
                    unit=pl.lit(c.unit, pl.Int32)
                )
                for entry, (schema, cols) in zip(
                    (c.results, c.costs, c.errors), _FILES, strict=True
                )
            )
        except (FileNotFoundError, pa.ArrowInvalid, ValueError) as exc:
            return f"unit {c.unit} left out: {exc}"
        return r, k, e

    # Units are small; reading several at once hides the S3 round trips.
    with ThreadPoolExecutor(max_workers=8) as pool:
        loaded = list(pool.map(load, commits))
    notes.extend(x for x in loaded if isinstance(x, str))
    parts = [x for x in loaded if not isinstance(x, str)]
    frames = [
        pl.concat([p[i] for p in parts], how="diagonal_relaxed")
        if parts
        else _typed(schema.empty_table(), schema, cols).with_columns(unit=pl.lit(0, pl.Int32))
        for i, (schema, cols) in enumerate(_FILES)
    ]
    return frames[0], frames[1], frames[2]


def _read_file(
    store: Store, rel: str, rows: int, schema: pa.Schema, cols: tuple[str, ...]
) -> pl.DataFrame:
    pf = pq.ParquetFile(pa.BufferReader(store.read_bytes(rel)))
    if pf.metadata.num_rows != rows:
        raise ValueError(f"{rel} has {pf.metadata.num_rows} rows, its marker says {rows}")
    have = set(pf.schema_arrow.names)
    return _typed(pf.read(columns=[c for c in cols if c in have]), schema, cols)


def _typed(table: pa.Table, schema: pa.Schema, cols: tuple[str, ...]) -> pl.DataFrame:
    """The columns the report reads, typed as `schema` says; a missing one reads as null."""
    df = pl.DataFrame(pl.from_arrow(table))
    want = pl.DataFrame(pl.from_arrow(schema.empty_table().select(list(cols)))).schema
    return df.with_columns(
        pl.col(c).cast(t) if c in df.columns else pl.lit(None, t).alias(c) for c, t in want.items()
    ).select(cols)


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
    """'+12%': how far the actual figure came from the forecast."""
    if actual is None or not forecast:
        return ""
    return f"{actual / forecast - 1:+.0%}"
