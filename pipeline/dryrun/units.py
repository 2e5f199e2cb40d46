"""The forecast's per-unit work: one task of units in, one small result per unit out.

    ctx = UnitContext(spec, prices, tiers, out_uri="out/", job_id="job-1")
    results = forecast_task(ctx, units)   # run on every core by pipeline.dryrun.pool

A unit is read and prepared exactly as a run does it (`pipeline.engine.rows`), its rows' tokens
are counted with the first model of their tier (`pipeline.tokens`), priced
(`pipeline.costs`), written as `forecast/unit-<n>.parquet`, and summed per
tier/provider/model. Only the sums travel back, so memory does not grow with the input.

As in a run, a summarise row too long for its tier's context window is planned as a long
document (`pipeline.longdoc.plan.choose_plan`: map-reduce on its tier, or one call to a
longer-context tier, whichever is forecast cheaper) and counted with all of that plan's
calls and tokens; a row of a `vote` tier is counted once per voting deployment, and a row
at an agreement check's tier once more for its partner (`askers`).

The units of a task are prepared one by one (each its own duplicates and early errors)
and then counted, priced and summed together; units that share row groups are read once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

import polars as pl
import pyarrow as pa

from jobs.base import get_job_kind
from pipeline.calls.cache import ResponseCache
from pipeline.costs import add_cost_column
from pipeline.dryrun.estimates import SUMMARY_SPREAD, OutputAssumption
from pipeline.engine.plan import Unit
from pipeline.engine.rows import ID, SENSITIVE, TEXT, TIER, prepare_unit, read_unit, unit_columns
from pipeline.jobfolder import forecast_unit_file
from pipeline.longdoc.plan import TierOption, choose_plan
from pipeline.store import Store, table_to_parquet_bytes
from pipeline.tokens import count_tokens_batch
from schemas.job import JobSpec
from schemas.prices import PriceTable

if TYPE_CHECKING:
    from pipeline.calls.reuse import AnswerReuse

T = TypeVar("T")
GROUP_KEYS = ("tier", "provider", "model")
OUT = ("out_p10", "out_p50", "out_p90")
SUM_COLUMNS = ("rows", "calls", "input_tokens", *OUT, "reserve_tokens")
CALLS, ROWS = "_calls", "_rows"  # per forecast row: calls it makes, rows it stands for
UNIT = "_unit"  # the unit a forecast row belongs to (a task's units are forecast together)
REUSE = "reuse"  # null: a paid call; 'cached' or 'duplicate': answered for free


@dataclass(frozen=True)
class TierPlan:
    """What a tier's rows are sent to (its first deployment) and what that costs."""

    provider: str
    model: str
    family: str  # the price table's provider_family: picks tokenizer or estimate
    prompt_tokens: int  # system message + chat overhead, added to every row's text
    max_tokens: int  # the request's max_tokens bounded by the model's limit
    output: OutputAssumption


@dataclass(frozen=True)
class LongDocPlanner:
    """How summarise rows too long for their tier are planned (as the run plans them)."""

    options: tuple[TierOption, ...]
    max_words: int
    instructions: str
    output_cap: int  # the direct (and reduce) call's max_tokens

    def windows(self) -> dict[str, int]:
        return {o.tier: o.window for o in self.options}


@dataclass(frozen=True)
class UnitContext:
    spec: JobSpec
    prices: PriceTable
    tiers: dict[str, TierPlan]
    out_uri: str | None = None  # where forecast/unit-<n>.parquet goes; None writes none
    job_id: str = ""
    # Sensitive rows go to the first allowed deployment from their tier up (None: none).
    sensitive: dict[str, TierPlan | None] = field(default_factory=dict)
    reuse: bool = False  # identical requests of a unit are sent once (as the run does)
    cache_uri: str | None = None  # a response cache with answers in it, to look rows up
    longdocs: LongDocPlanner | None = None  # summarise: rows that need map-reduce
    # Tiers whose rows are asked of several deployments (a vote's voters; an agreement
    # check's two): every plan is called, the first one stands for the row.
    askers: dict[str, tuple[TierPlan, ...]] = field(default_factory=dict)


@dataclass
class UnitResult:
    unit: int
    rows: int  # rows in the unit
    rows_callable: int  # rows that would be sent
    early: dict[str, int] = field(default_factory=dict)  # error type -> rows (no call)
    duplicates: int = 0
    groups: list[tuple[Any, ...]] = field(default_factory=list)  # GROUP_KEYS + SUM_COLUMNS
    reused: dict[str, int] = field(default_factory=dict)  # 'cached' / 'duplicate' -> rows


# One row per row that would be sent; `_cap` is the request's max_tokens.
_ROWS = {
    UNIT: pl.Int64,
    ID: pl.String,
    TIER: pl.String,
    SENSITIVE: pl.Boolean,
    REUSE: pl.String,
    "text_tokens": pl.Int64,
    "input_tokens": pl.Int64,
    "provider": pl.String,
    "model": pl.String,
    "_cap": pl.Int64,
    "out_p10": pl.Float64,
    "out_p50": pl.Float64,
    "out_p90": pl.Float64,
    CALLS: pl.Int64,
    ROWS: pl.Int64,
}


@lru_cache(maxsize=8)
def _store(uri: str) -> Store:
    return Store.open(uri)


_REUSE: dict[tuple[str, str], AnswerReuse] = {}


def _answer_reuse(ctx: UnitContext) -> AnswerReuse:
    """The run's own key making and cache lookup, one per process and job (read only)."""
    from pipeline.calls.reuse import AnswerReuse  # the run's engine: only for cache lookups

    key = (ctx.job_id, ctx.cache_uri or "")
    reuse = _REUSE.get(key)
    if reuse is None:
        cache = ResponseCache(_store(ctx.cache_uri), "read") if ctx.cache_uri else None
        reuse = _REUSE[key] = AnswerReuse(ctx.spec, get_job_kind(ctx.spec.task), cache)
    return reuse


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from sync code, also when a loop runs in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with cf.ThreadPoolExecutor(1) as one:
        return one.submit(asyncio.run, coro).result()


def _reuse_marks(ctx: UnitContext, todo: pl.DataFrame) -> pl.Series:
    """Per row: 'duplicate' (the same request as an earlier row of its unit: sent once),
    'cached' (answered before: in the response cache) or null (paid), as a run does it."""
    marks = pl.Series(REUSE, [None] * todo.height, dtype=pl.String)
    if not ctx.reuse or todo.is_empty():
        return marks
    first_dep = {t: f"{p.provider}/{p.model}" for t, p in ctx.tiers.items()}
    shareable = ~pl.col(SENSITIVE).fill_null(False)
    request = pl.struct(
        pl.col(UNIT), pl.col(TIER).replace_strict(first_dep, default=None), pl.col(TEXT)
    )
    marks = todo.select(
        pl.when(shareable & ~request.is_first_distinct())
        .then(pl.lit("duplicate"))
        .otherwise(None)
        .alias(REUSE)
    ).to_series()
    if ctx.cache_uri is None:
        return marks
    reuse = _answer_reuse(ctx)
    ask = todo.with_row_index("__i").filter(shareable & marks.is_null())
    rows = list(ask.select(ID, TEXT, TIER, SENSITIVE).iter_rows())
    keys = reuse.keys(rows)
    hits = _run(reuse.lookup(keys))
    cached = [i for i, k in zip(ask["__i"], keys, strict=True) if k is not None and k in hits]
    return marks.scatter(cached, "cached") if cached else marks


def _priced_part(part: pl.DataFrame, tp: TierPlan, counts: pl.Series, rows: int) -> pl.DataFrame:
    """The forecast rows of `part` sent to `tp`: tokens in, answer length out."""
    text_tokens = counts.alias("text_tokens")
    part = part.select(UNIT, ID, TIER, SENSITIVE, REUSE).with_columns(
        text_tokens,
        (text_tokens + tp.prompt_tokens).alias("input_tokens"),
        pl.lit(tp.provider).alias("provider"),
        pl.lit(tp.model).alias("model"),
        pl.lit(tp.max_tokens, dtype=pl.Int64).alias("_cap"),
    )
    p10, p50, p90 = tp.output.exprs(pl.col("text_tokens"), pl.col("input_tokens"))
    return part.with_columns(
        p10.alias("out_p10"),
        p50.alias("out_p50"),
        p90.alias("out_p90"),
        pl.lit(1, dtype=pl.Int64).alias(CALLS),
        pl.lit(rows, dtype=pl.Int64).alias(ROWS),
    )


def _plan_long(
    ctx: UnitContext, rows: pl.DataFrame, early: dict[int, dict[str, int]]
) -> pl.DataFrame:
    """Rows too long for their tier, replaced by what their long-document plan costs:
    its tier's deployment, every map and reduce call and their tokens. A row no tier can
    take, even in chunks, is a `too_long` error (no call), as in the run."""
    planner = ctx.longdocs
    if planner is None or rows.is_empty():
        return rows
    window = pl.col(TIER).replace_strict(planner.windows(), default=None, return_dtype=pl.Int64)
    long = (pl.col("input_tokens") + planner.output_cap > window).fill_null(False)
    mask = rows.select(long & (pl.col(ROWS) > 0)).to_series()
    if not mask.any():
        return rows
    # A long document is not voted on or checked: its other askers' lines go.
    keep = ~rows.select(pl.col(ID).is_in(rows.filter(mask)[ID])).to_series()
    planned = []
    for row in rows.filter(mask).iter_rows(named=True):
        try:
            plan = choose_plan(
                row["text_tokens"],
                row[TIER],
                planner.options,
                max_words=planner.max_words,
                instructions=planner.instructions,
            )
        except ValueError:
            counts = early.setdefault(row[UNIT], {})
            counts["too_long"] = counts.get("too_long", 0) + 1
            continue
        tp = (ctx.sensitive if row[SENSITIVE] else ctx.tiers).get(plan.tier) or ctx.tiers[plan.tier]
        out = float(plan.forecast_output_tokens)
        planned.append(
            row
            | {
                TIER: plan.tier,
                "input_tokens": plan.forecast_input_tokens,
                "provider": tp.provider,
                "model": tp.model,
                "out_p10": out * SUMMARY_SPREAD[0],
                "out_p50": out,
                "out_p90": out * SUMMARY_SPREAD[1],
                CALLS: plan.forecast_calls,
            }
        )
    fitted = pl.DataFrame(planned, schema=rows.schema) if planned else rows.clear()
    return pl.concat([rows.filter(keep), fitted], how="vertical")


def unit_rows(ctx: UnitContext, unit: Unit, table: pa.Table) -> tuple[pl.DataFrame, UnitResult]:
    """The unit's forecast rows (one per row the run would answer, `reuse` saying which
    are free; a row asked of several deployments once per deployment) and their sums per
    tier, provider and model (paid calls only)."""
    return units_rows(ctx, [(unit, table)])[0]


def units_rows(
    ctx: UnitContext, units: Sequence[tuple[Unit, pa.Table]]
) -> list[tuple[pl.DataFrame, UnitResult]]:
    """`unit_rows` for several units at once: each unit is prepared on its own (its
    duplicates, its early errors), then all their rows are counted, priced and summed
    in one pass, so the per-call overhead of the frame library is paid once per task."""
    early: dict[int, dict[str, int]] = {}
    todos, duplicates = [], {}
    for unit, table in units:
        prep = prepare_unit(table, ctx.spec)
        todos.append(prep.todo.with_columns(pl.lit(unit.index, dtype=pl.Int64).alias(UNIT)))
        duplicates[unit.index] = prep.duplicates
        if prep.early.height:
            kinds = prep.early.group_by("error_type").len().iter_rows()
            early[unit.index] = {str(k): int(v) for k, v in kinds}
    todo = pl.concat(todos, how="vertical") if len(todos) > 1 else todos[0]
    todo = todo.with_columns(_reuse_marks(ctx, todo))
    parts = []
    for (tier, sensitive), part in todo.partition_by(TIER, SENSITIVE, as_dict=True).items():
        tp = (ctx.sensitive if sensitive else ctx.tiers).get(str(tier))
        if tp is None:  # a sensitive row no allowed provider can take: an error, no call
            for u, n in part.group_by(UNIT).len().iter_rows():
                errs = early.setdefault(u, {})
                errs["no_allowed_provider"] = errs.get("no_allowed_provider", 0) + n
            continue
        voters = ctx.askers.get(str(tier), (tp,)) if not sensitive else (tp,)
        for k, voter in enumerate(voters):
            counts, _ = count_tokens_batch(part[TEXT], voter.model, voter.family)
            parts.append(_priced_part(part, voter, counts, 1 if k == 0 else 0))
    rows = pl.concat(parts, how="vertical") if parts else pl.DataFrame(schema=_ROWS)
    if ctx.longdocs is not None and parts:
        rows = _plan_long(ctx, rows, early)
    paid = pl.col(REUSE).is_null()
    calls = pl.col(CALLS).filter(paid)
    sums = rows.group_by(UNIT, *GROUP_KEYS).agg(
        pl.col(ROWS).sum().alias("rows"),
        calls.sum().alias("calls"),
        *(pl.col(c).filter(paid).sum() for c in ("input_tokens", *OUT)),
        (pl.col("input_tokens") + pl.col("_cap") * pl.col(CALLS))
        .filter(paid)
        .sum()
        .alias("reserve_tokens"),
    )
    groups: dict[int, list[tuple[Any, ...]]] = {}
    for row in sums.select(UNIT, *GROUP_KEYS, *SUM_COLUMNS).iter_rows():
        groups.setdefault(row[0], []).append(row[1:])
    counted = rows.filter(pl.col(ROWS) > 0) if ctx.askers else rows
    callable_rows = dict(counted.group_by(UNIT).len().iter_rows())
    reused: dict[int, dict[str, int]] = {}
    if counted[REUSE].null_count() < counted.height:
        for u, how, n in counted.filter(~paid).group_by(UNIT, REUSE).len().iter_rows():
            reused.setdefault(u, {})[str(how)] = int(n)
    by_unit = rows.partition_by(UNIT, as_dict=True) if len(units) > 1 else {}
    out = []
    for unit, _ in units:
        i = unit.index
        frame = by_unit.get((i,), rows.clear()) if len(units) > 1 else rows
        result = UnitResult(
            unit=i,
            rows=unit.row_count,
            rows_callable=int(callable_rows.get(i, 0)),
            early=early.get(i, {}),
            duplicates=duplicates[i],
            groups=groups.get(i, []),
            reused=reused.get(i, {}),
        )
        out.append((frame, result))
    return out


def forecast_file(rows: pl.DataFrame, prices: PriceTable) -> pl.DataFrame:
    """The id-level forecast Parquet: id, tier, provider, model, input_tokens,
    est_output_tokens (p50, fractional: an expectation), est_cost_usd (0 for a row the
    run answers for free), calls (more than 1 for a long document, a voted or checked row)
    and reuse (null, 'cached' or 'duplicate'). Such a row's tokens and cost are those of
    all its calls; provider and model name the first."""
    usage = rows.select(
        ID,
        TIER,
        "provider",
        "model",
        "input_tokens",
        pl.col("out_p50").alias("output_tokens"),
        CALLS,
        REUSE,
    )
    if rows.is_empty():
        usage = usage.with_columns(pl.lit(None, dtype=pl.Float64).alias("cost_usd"))
    else:
        usage = add_cost_column(usage, prices)
    free = pl.col(REUSE).is_not_null()
    out = usage.select(
        ID,
        TIER,
        "provider",
        "model",
        "input_tokens",
        pl.col("output_tokens").alias("est_output_tokens"),
        pl.when(free).then(0.0).otherwise(pl.col("cost_usd")).alias("est_cost_usd"),
        pl.col(CALLS).cast(pl.Int32).alias("calls"),
        REUSE,
    )
    if rows.height and (rows[ROWS] == 0).any():  # rows asked several times: one line per id
        out = out.group_by(ID, maintain_order=True).agg(
            pl.col(TIER, "provider", "model", REUSE).first(),
            pl.col("input_tokens", "est_output_tokens", "est_cost_usd", "calls").sum(),
        )
        out = out.select(
            ID,
            TIER,
            "provider",
            "model",
            "input_tokens",
            "est_output_tokens",
            "est_cost_usd",
            "calls",
            REUSE,
        )
    return out


def _read_groups(units: Sequence[Unit]) -> list[tuple[Unit, list[Unit]]]:
    """Consecutive units over the same row groups, each batch as one covering read."""
    batches: list[tuple[Unit, list[Unit]]] = []
    for u in units:
        if batches:
            cover, members = batches[-1]
            same = cover.source == u.source and cover.row_groups == u.row_groups
            if same and u.row_offset == cover.row_offset + cover.row_count:
                grown = Unit(
                    cover.index,
                    cover.source,
                    cover.row_groups,
                    cover.row_offset,
                    cover.row_count + u.row_count,
                )
                batches[-1] = (grown, [*members, u])
                continue
        batches.append((u, [u]))
    return batches


def forecast_task(ctx: UnitContext, units: Sequence[Unit]) -> list[UnitResult]:
    """Forecast a batch of units; writes each unit's Parquet when `ctx.out_uri` is set.

    Writes go to a background thread (Parquet encoding and the file system release the
    GIL), so one unit's write overlaps the next unit's counting; all of them are done
    before this returns."""
    store = _store(ctx.spec.input.uri)
    out = _store(ctx.out_uri).child(ctx.job_id) if ctx.out_uri else None
    columns = unit_columns(ctx.spec)
    results = []
    writes: list[cf.Future[None]] = []
    tables = []
    for cover, members in _read_groups(units):
        table = read_unit(store, cover, columns)
        for u in members:
            tables.append((u, table.slice(u.row_offset - cover.row_offset, u.row_count)))
    for (u, _), (rows, result) in zip(tables, units_rows(ctx, tables), strict=True):
        if out is not None:
            frame = forecast_file(rows, ctx.prices).to_arrow()
            writes.append(_writer().submit(_write, out, forecast_unit_file(u.index), frame))
        results.append(result)
    for w in writes:
        w.result()
    return results


def _write(out: Store, rel: str, table: Any) -> None:
    out.write_bytes(rel, table_to_parquet_bytes(table))


@lru_cache(maxsize=1)
def _writer() -> cf.ThreadPoolExecutor:
    return cf.ThreadPoolExecutor(1, thread_name_prefix="tierline-forecast-write")
