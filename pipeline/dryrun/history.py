"""What earlier runs of the same job name say about answer lengths and extra calls.

    dirs = history_dirs(Store.open("out/"), "nightly-tickets", job_id)
    calls, used = read_history(Store.open("out/"), dirs)    # one row per billed call
    observed_assumption(calls, "observed_ratio", cap=136)   # -> OutputAssumption

Earlier runs live beside the new one: `<output>/<name>-<identity>/costs/*.parquet`
(and the job's own folder, when it was partly run). Only the token columns are read,
from at most `MAX_HISTORY_FILES` files, which is plenty for a stable ratio.
"""

from __future__ import annotations

import io
import statistics

import polars as pl

from pipeline.dryrun.estimates import OutputAssumption, observed_interval
from pipeline.jobfolder import history_dirs
from pipeline.store import Store

__all__ = ["history_dirs", "read_history"]

MAX_HISTORY_FILES = 200
MIN_MODEL_CALLS = 30
_COLUMNS = {
    "id": pl.String,
    "model": pl.String,
    "unit": pl.Int64,
    "input_tokens": pl.Int64,
    "output_tokens": pl.Int64,
    "call_status": pl.String,
}


def read_history(out: Store, dirs: list[str]) -> tuple[pl.DataFrame, list[str]]:
    """Billed calls of earlier runs (id, model, unit: one per cost file, input and output
    tokens) and the job folders they came from. Calls with no input tokens are left out."""
    files = [f.path for d in dirs for f in out.list_files(f"{d}/costs", suffix=".parquet")]
    files = files[:MAX_HISTORY_FILES]
    frames = [
        pl.read_parquet(io.BytesIO(out.read_bytes(path)), columns=list(_COLUMNS)).with_columns(
            # Cost files of different runs reuse unit numbers: number the files instead.
            pl.lit(i, dtype=pl.Int64).alias("unit")
        )
        for i, path in enumerate(files)
    ]
    used = sorted({path.split("/", 1)[0] for path in files})
    if not frames:
        return pl.DataFrame(schema=_COLUMNS), used
    calls = pl.concat(frames, how="vertical_relaxed").cast(_COLUMNS)  # type: ignore[arg-type]
    return calls.filter(pl.col("input_tokens") > 0), used


def calls_for(calls: pl.DataFrame, model: str) -> pl.DataFrame:
    """The earlier calls to `model` when there are enough of them, else all earlier calls
    (answer lengths differ by model: a model fed only long texts answers them shortly)."""
    own = calls.filter(pl.col("model") == model)
    return own if own.height >= MIN_MODEL_CALLS else calls


def steadier(calls: pl.DataFrame) -> str:
    """`observed_ratio` when answers grow with their input (output per input token varies
    less across calls than output tokens do), else `observed_mean`."""
    ratio = (calls["output_tokens"] / calls["input_tokens"]).to_list()
    out = calls["output_tokens"].cast(pl.Float64).to_list()
    cv_ratio, cv_out = _cv(ratio), _cv(out)
    return "observed_ratio" if cv_ratio < cv_out else "observed_mean"


def _cv(values: list[float]) -> float:
    """Coefficient of variation: standard deviation over mean (0 for fewer than 2)."""
    if len(values) < 2:
        return 0.0
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean else 0.0


def observed_assumption(calls: pl.DataFrame, how: str, cap: int) -> OutputAssumption:
    """Answer lengths from earlier calls: `observed_ratio` (output per input token, for
    answers that grow with the text), `observed_mean` (output tokens per call), or
    `auto`: whichever of the two varies less from call to call (`steadier`)."""
    if calls.is_empty():
        raise ValueError("no earlier calls to learn answer lengths from")
    if how == "auto":
        how = steadier(calls)
    per_file = calls.group_by("unit").agg(
        pl.col("input_tokens").sum().alias("tin"),
        pl.col("output_tokens").sum().alias("tout"),
        pl.len().alias("calls"),
    )
    tin = float(calls["input_tokens"].sum())
    tout = float(calls["output_tokens"].sum())
    if how == "observed_ratio":
        ratios = (per_file["tout"] / per_file["tin"]).to_list()
        return OutputAssumption(how, cap, ratio=observed_interval(ratios, tout / tin))
    means = (per_file["tout"] / per_file["calls"]).to_list()
    return OutputAssumption(how, cap, fixed=observed_interval(means, tout / calls.height))


def observed_escalation(calls: pl.DataFrame) -> float:
    """Billed calls per row beyond the first (escalations, agreement checks), as a rate;
    re-asks are counted apart (`pipeline.dryrun.reasks`)."""
    rows = calls["id"].n_unique()
    if "call_status" in calls.columns:
        calls = calls.filter(pl.col("call_status").fill_null("") != "reasked")
    asked = calls.height
    return max(0.0, asked / rows - 1.0) if rows else 0.0
