"""The one place a job's figures are computed: per unit from its tables, per job as the
sum of its units' figures (`schemas.figures.UnitFigures`).

    figures = unit_figures(results, costs, errors, prices=prices, flagship=spec.flagship().model)
    job = job_figures(folder, commits, prices)      # markers; a marker without figures:
                                                   # its unit's files, one unit at a time
    forecast_error_pct(forecast=7.0, actual=10.1)   # +44.3: the run took longer

The worker computes a unit's figures when it writes the unit and puts them in its commit
marker; the summary, the run's table, the report and the metrics all read them from there.
So the job's figures never need all its rows in one process, and a job folder written by
an older version (markers without figures) still reads, unit by unit.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import polars as pl

from pipeline.calls.cache import CACHED, DUPLICATE, FREE_STATUSES, reused_answers_usd
from pipeline.calls.hedge import CANCELLED, HEDGE_STEP
from pipeline.costs import add_cost_column
from pipeline.jobfolder import FigureSum, JobFolder
from schemas.figures import (
    ERROR_EXAMPLES,
    LATENCY_BUCKETS,
    LATENCY_PER_DECADE,
    NO_TIER,
    TIMELINE_STEPS_S,
    TIMELINE_UNIT_BUCKETS,
    Completions,
    Deployment,
    ErrorSample,
    Latency,
    Tally,
    UnitFigures,
)
from schemas.prices import PriceTable, UnknownPrice
from schemas.records import COSTS, ERRORS, RESULTS, RETRYABLE_ERRORS, UnitCommit

# Cost rows of answers a cascade did not keep: their row was sent above its tier.
ESCALATED = ("escalated", "disagreed")


def forecast_error_pct(forecast: float, actual: float) -> float | None:
    """How far the run came from the forecast, in percent of the forecast: positive when
    the run cost (or took) more than forecast. None when the forecast is 0 and the run not.
    The one convention of every forecast error tierline shows."""
    if forecast == 0:
        return 0.0 if actual == 0 else None
    return (actual - forecast) / forecast * 100.0


def job_figures(
    folder: JobFolder,
    commits: Iterable[UnitCommit],
    prices: PriceTable | None = None,
    *,
    skipped: list[str] | None = None,
    summed: FigureSum | None = None,
) -> UnitFigures:
    """The sum of the units' figures. A marker without figures (an older writer) has its
    unit's files read, a few units at a time, and summed like any other; with `skipped`
    given, a unit whose files cannot be read is left out and named there (else it raises).
    With `summed` (from `JobFolder.committed_units(sum_into=...)`), its units' figures are
    taken from it, and their markers need not carry them."""
    done = summed.units if summed is not None else set()
    ordered = sorted((c for c in commits if c.unit not in done), key=lambda c: c.unit)

    def one(c: UnitCommit) -> UnitFigures | str:
        if c.figures is not None:
            return c.figures
        try:
            return figures_from_files(folder, c, prices)
        except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
            if skipped is None:
                raise
            return f"unit {c.unit} left out: {exc}"

    old = [c for c in ordered if c.figures is None]
    # Units are small; reading several at once hides the S3 round trips.
    with ThreadPoolExecutor(max_workers=min(8, len(old) or 1)) as pool:
        parts = list(pool.map(one, ordered))
    total = summed.total if summed is not None else UnitFigures()
    for part in parts:
        if isinstance(part, str):
            assert skipped is not None
            skipped.append(part)
        else:
            total = total.plus(part)
    return total


def figures_from_files(
    folder: JobFolder, commit: UnitCommit, prices: PriceTable | None
) -> UnitFigures:
    """A unit's figures from its committed files (markers written before figures were)."""
    frames = []
    for entry, schema in (
        (commit.results, RESULTS),
        (commit.costs, COSTS),
        (commit.errors, ERRORS),
    ):
        df = pl.read_parquet(io.BytesIO(folder.store.read_bytes(entry.path)))
        if df.height != entry.rows:
            raise ValueError(f"{entry.path} has {df.height} rows, its marker says {entry.rows}")
        frames.append(conform(df, schema))
    unit_time = datetime.fromisoformat(commit.written_at).timestamp()
    return unit_figures(*frames, prices=prices, unit_time_s=unit_time)


def conform(df: pl.DataFrame, schema: object) -> pl.DataFrame:
    """`df` with every column of the Arrow `schema`, typed as it says; a column an older
    writer did not write reads as null."""
    import pyarrow as pa

    assert isinstance(schema, pa.Schema)
    want = pl.DataFrame(pl.from_arrow(schema.empty_table())).schema
    return df.with_columns(
        pl.col(c).cast(t) if c in df.columns else pl.lit(None, t).alias(c) for c, t in want.items()
    ).select(list(want))


def unit_figures(
    results: pl.DataFrame,
    costs: pl.DataFrame,
    errors: pl.DataFrame,
    *,
    prices: PriceTable | None = None,
    unit_time_s: float | None = None,
) -> UnitFigures:
    """One unit's figures from its three tables (typed as `schemas.records`; see
    `conform` for older files). `prices` prices what reused answers and the prompt cache
    saved (0 without). `unit_time_s` places rows without a completion time."""
    free = pl.col("call_status").is_in(list(FREE_STATUSES)).fill_null(False)
    costs = costs.with_columns(
        pl.col("mode").fill_null("sync"),
        pl.col("cached_input_tokens").fill_null(0),
        pl.col("cache_write_tokens").fill_null(0),
    )
    paid = costs.filter(~free)
    reuse = (
        costs.group_by("id")
        .agg(n_paid=(~free).sum(), how=pl.col("call_status").filter(free).first())
        .filter((pl.col("n_paid") == 0) & pl.col("how").is_not_null())
        .select("id", "how")
    )
    rows = pl.concat(
        [
            results.select("id", "tier", "provider", "model", ok=pl.lit(True)),
            errors.select("id", "tier", "provider", "model", ok=pl.lit(False)),
        ]
    ).with_columns(pl.col("tier").fill_null(NO_TIER))
    rows = rows.join(reuse, on="id", how="left")
    answered = rows.filter(pl.col("ok")).with_columns(
        key=pl.concat_str("provider", "model", separator="/", ignore_nulls=False).fill_null(NO_TIER)
    )
    deployment = pl.concat_str("tier", "provider", "model", separator="/").fill_null(NO_TIER)
    how = reuse["how"]
    escalated = set(costs.filter(pl.col("call_status").is_in(ESCALATED))["id"].to_list())
    escalated |= set(
        results.filter(
            pl.col("routed_tier").is_not_null() & (pl.col("routed_tier") != pl.col("tier"))
        )["id"].to_list()
    )
    hedges = costs.filter(pl.col("step") == HEDGE_STEP)
    last = costs.sort("attempt").group_by("id").agg(pl.col("input_tokens", "output_tokens").last())
    return UnitFigures(
        rows_ok=results.height,
        rows_error=errors.height,
        rows_retryable=int(errors["error_type"].is_in(list(RETRYABLE_ERRORS)).sum()),
        rows_escalated=len(escalated),
        rows_disagreed=costs.filter(pl.col("call_status") == "disagreed")["id"].n_unique(),
        calls=paid.height,
        cache_hits=int((how == CACHED).sum()),
        duplicates=int((how == DUPLICATE).sum()),
        cost_usd=_sum(costs, "cost_usd"),
        reused_saved_usd=_priced(lambda p: reused_answers_usd(costs, p), prices),
        input_tokens=int(_sum(paid, "input_tokens")),
        output_tokens=int(_sum(paid, "output_tokens")),
        cached_input_tokens=int(_sum(paid, "cached_input_tokens")),
        prompt_cache_saved_usd=_priced(lambda p: _prompt_cache_saved(paid, p), prices),
        baseline_input_tokens=int(_sum(last, "input_tokens")),
        baseline_output_tokens=int(_sum(last, "output_tokens")),
        by_tier=_tallies(rows, paid, pl.col("tier"), pl.col("tier")),
        by_model=_tallies(answered, paid, pl.col("key"), _model_key()),
        by_deployment=_tallies(None, paid, None, deployment),
        by_mode=_tallies(None, paid, None, pl.col("mode"), rows_of_calls=True),
        by_call_status=_tallies(None, costs, None, pl.col("call_status").fill_null("ok")),
        errors=_error_samples(errors),
        latency=_latency(results, reuse),
        pools=_pools(results, reuse),
        timelines=_timeline(results, errors, unit_time_s),
        hedges_sent=hedges.height,
        hedges_won=hedges.filter(pl.col("call_status") != CANCELLED).height,
        hedge_usd=_sum(hedges, "cost_usd"),
        cancelled_usd=_sum(costs.filter(pl.col("call_status") == CANCELLED), "cost_usd"),
    )


def _sum(df: pl.DataFrame, col: str) -> float:
    return float(df[col].sum() or 0) if df.height else 0.0


def _model_key() -> pl.Expr:
    return pl.concat_str("provider", "model", separator="/").fill_null(NO_TIER)


def _priced(fn: object, prices: PriceTable | None) -> float:
    if prices is None:
        return 0.0
    try:
        return float(fn(prices))  # type: ignore[operator]
    except (UnknownPrice, KeyError, ValueError):
        return 0.0


def _prompt_cache_saved(paid: pl.DataFrame, prices: PriceTable) -> float:
    """The same calls priced as if nothing came from the prompt cache, minus their cost."""
    if paid.is_empty() or int(paid["cached_input_tokens"].sum()) == 0:
        return 0.0
    uncached = add_cost_column(paid.with_columns(pl.lit(0).alias("cached_input_tokens")), prices)
    return max(0.0, float(uncached["cost_usd"].sum()) - float(paid["cost_usd"].sum()))


def _tallies(
    rows: pl.DataFrame | None,
    calls: pl.DataFrame,
    row_key: pl.Expr | None,
    call_key: pl.Expr,
    *,
    rows_of_calls: bool = False,
) -> dict[str, Tally]:
    """Rows (and reused rows) grouped by `row_key`; calls, cost and tokens by `call_key`."""
    out: dict[str, Tally] = {}
    if rows is not None and row_key is not None:
        g = rows.group_by(k=row_key).agg(
            n=pl.len(), errors=(~pl.col("ok")).sum(), reused=pl.col("how").is_not_null().sum()
        )
        for k, n, errors, reused in g.iter_rows():
            out[str(k)] = Tally(rows=n, errors=errors, reused=reused)
    sums = calls.group_by(k=call_key).agg(
        pl.len(),
        pl.col("id").n_unique().alias("ids"),
        pl.col("cost_usd").sum(),
        pl.col("input_tokens").sum(),
        pl.col("output_tokens").sum(),
    )
    for k, n, ids, cost, tin, tout in sums.iter_rows():
        t = out.get(str(k), Tally())
        out[str(k)] = Tally(
            rows=ids if rows_of_calls else t.rows,
            errors=t.errors,
            reused=t.reused,
            calls=n,
            cost_usd=float(cost or 0.0),
            input_tokens=int(tin or 0),
            output_tokens=int(tout or 0),
        )
    return dict(sorted(out.items()))


def _error_samples(errors: pl.DataFrame) -> dict[str, ErrorSample]:
    g = errors.group_by(t=pl.col("error_type").fill_null("unknown")).agg(
        n=pl.len(),
        ids=pl.col("id").head(ERROR_EXAMPLES),
        msg=pl.col("message").drop_nulls().first(),
    )
    return {
        str(t): ErrorSample(count=n, ids=[str(i) for i in ids], message=msg or "")
        for t, n, ids, msg in g.sort("t").iter_rows()
    }


def _pools(results: pl.DataFrame, reuse: pl.DataFrame) -> dict[str, Deployment]:
    """Per tier/provider/model that answered: its rows, the 429s the tier's rows met on
    each deployment (`rate_limited_by`), and the latency of rows that made calls."""
    out: dict[str, Deployment] = {}
    answered = results.filter(pl.col("provider").is_not_null())
    key = pl.concat_str("tier", "provider", "model", separator="/").fill_null(NO_TIER)
    for k, n in answered.group_by(k=key).len().iter_rows():
        out[str(k)] = Deployment(rows=n)
    met = results.filter(pl.col("rate_limited_by").is_not_null())
    for tier, raw in met.select(pl.col("tier").fill_null(NO_TIER), "rate_limited_by").iter_rows():
        for dep, n in json.loads(raw).items():
            d = out.get(f"{tier}/{dep}", Deployment())
            out[f"{tier}/{dep}"] = d.plus(Deployment(rate_limited=int(n)))
    for k, lat in _latency(answered, reuse, key).items():
        out[k] = out.get(k, Deployment()).plus(Deployment(latency=lat))
    return dict(sorted(out.items()))


def _latency(
    results: pl.DataFrame, reuse: pl.DataFrame, by: pl.Expr | None = None
) -> dict[str, Latency]:
    """Per provider (or `by`), rows that made calls of their own (a reused row waited for
    none)."""
    lat = (
        results.join(reuse, on="id", how="anti")
        .select(
            (pl.col("provider") if by is None else by).fill_null(NO_TIER).alias("k"),
            "latency_ms",
        )
        .drop_nulls()
        .filter(pl.col("latency_ms") > 0)
        .with_columns(
            b=(pl.col("latency_ms").log10() * LATENCY_PER_DECADE)
            .floor()
            .clip(0, LATENCY_BUCKETS - 1)
            .cast(pl.Int64)
        )
    )
    out: dict[str, Latency] = {}
    for (k,), group in lat.group_by("k"):
        counts = {int(b): int(n) for b, n in group.group_by("b").len().iter_rows()}
        out[str(k)] = Latency(
            counts=counts, n=group.height, sum_ms=float(group["latency_ms"].sum())
        )
    return dict(sorted(out.items()))


def _timeline(
    results: pl.DataFrame, errors: pl.DataFrame, unit_time_s: float | None
) -> list[Completions]:
    """Rows done, rows retried (attempts > 1) and 429 answers per bucket of completion
    time. 429s are the per-row counts on results plus one per row that finally failed as
    rate_limited (at its completion time, or its unit's for older files)."""
    per_call = bool(results["rate_limited"].is_not_null().any())
    fallback = pl.lit(None if unit_time_s is None else int(unit_time_s * 1e6), pl.Int64)
    done = results.select(
        t=pl.col("completed_at").dt.epoch("us").fill_null(fallback),
        rows=pl.lit(1, pl.Int64),
        retried=(pl.col("attempts").fill_null(1) > 1).cast(pl.Int64),
        rl=pl.col("rate_limited").fill_null(0).cast(pl.Int64),
    )
    failed = errors.filter(pl.col("error_type") == "rate_limited").select(
        t=pl.col("completed_at").dt.epoch("us").fill_null(fallback),
        rows=pl.lit(0, pl.Int64),
        retried=pl.lit(0, pl.Int64),
        rl=pl.lit(1, pl.Int64),
    )
    events = pl.concat([done, failed]).drop_nulls("t")
    if events.is_empty():
        return []
    t0, t1 = int(events["t"].min()), int(events["t"].max())  # type: ignore[arg-type]
    step_s = next(
        (s for s in TIMELINE_STEPS_S if (t1 - t0) / 1e6 / s < TIMELINE_UNIT_BUCKETS),
        TIMELINE_STEPS_S[-1],
    )
    step = int(step_s * 1e6)
    start = t0 // step * step
    per = events.group_by(b=(pl.col("t") - start) // step).agg(
        pl.col("rows").sum(), pl.col("retried").sum(), pl.col("rl").sum()
    )
    buckets = {int(b): [int(r), int(rt), int(x)] for b, r, rt, x in per.sort("b").iter_rows()}
    return [Completions(start_s=start / 1e6, step_s=step_s, buckets=buckets, per_call_429=per_call)]
