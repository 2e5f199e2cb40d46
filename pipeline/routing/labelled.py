"""A labelled sample run of the user's own job, as recorded answers for the tuner.

    data = from_labelled_frame(results, label="verdict", source="sample.parquet")
    data = read_labelled_run(["out/sample-gpt-4o", "out/sample-mini"], label="verdict",
                             inputs=input_rows)          # input rows: id and text columns

A labelled run is one row per (id, model) answer: the job's results (run it once per
candidate model, or with every model answering) plus a verdict column the user added
(1/0, true/false, yes/no, correct/wrong), and a cost per answer (`cost_usd` beside it, or
the run's costs files, summed over every billed call of the answer).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import polars as pl

from pipeline.routing.recorded import RecordedAnswers, TuneDataError, answer_codes, assemble

_TRUE = {"1", "1.0", "true", "yes", "y", "correct", "right", "ok", "good"}
_FALSE = {"0", "0.0", "false", "no", "n", "incorrect", "wrong", "bad"}


def _verdicts(s: pl.Series) -> pl.Series:
    if s.dtype == pl.Boolean or s.dtype.is_numeric():
        return s.cast(pl.Float64)
    low = s.cast(pl.String).str.strip_chars().str.to_lowercase()
    mapping = {**dict.fromkeys(_TRUE, 1.0), **dict.fromkeys(_FALSE, 0.0)}
    return low.replace_strict(mapping, default=None, return_dtype=pl.Float64).alias(s.name)


def from_labelled_frame(
    results: pl.DataFrame,
    *,
    label: str,
    source: str,
    costs: pl.DataFrame | None = None,
    texts: pl.DataFrame | None = None,
    models: Sequence[str] | None = None,
) -> RecordedAnswers:
    """One row per (id, model) answer: `output`, the verdict column `label` (1/0, true/false,
    yes/no, correct/wrong) and `cost_usd`, or the run's `costs` rows summed per id and model
    (every billed call). `texts`: id, text (the input rows), for text-reading policies."""
    cols = set(results.columns)
    if label not in cols:
        raise TuneDataError(
            f"{source}: no column {label!r} in the results: add each answer's verdict (1 right, "
            f"0 wrong) as a column and name it with --label (columns: {', '.join(results.columns)})"
        )
    for need in ("id", "model"):
        if need not in cols:
            raise TuneDataError(f"{source}: the results lack column {need!r} (one row per answer)")
    frame = results.with_columns(
        pl.col("id").cast(pl.String), pl.col("model").cast(pl.String), _verdicts(results[label])
    )
    unlabelled = int(frame.get_column(label).is_null().sum())
    frame = frame.filter(pl.col(label).is_not_null())
    if "cost_usd" in cols:
        cost = frame.select("id", "model", pl.col("cost_usd").cast(pl.Float64).alias("cost"))
    elif costs is not None and {"id", "model", "cost_usd"} <= set(costs.columns):
        cost = costs.group_by(pl.col("id").cast(pl.String), pl.col("model").cast(pl.String)).agg(
            pl.col("cost_usd").cast(pl.Float64).sum().alias("cost")
        )
    else:
        raise TuneDataError(
            f"{source}: no cost per answer: keep the run's costs/ files beside results/, or add "
            "a cost_usd column"
        )
    answer = "output" if "output" in cols else label
    long = (
        frame.select("id", "model", pl.col(label).alias("correct"))
        .with_columns(answer_codes(frame, answer))
        .join(cost.unique(["id", "model"], keep="first"), on=["id", "model"], how="left")
    )
    ids = long.select("id").unique(maintain_order=True)
    if texts is not None:
        ids = ids.join(
            texts.select(pl.col("id").cast(pl.String), pl.col("text").cast(pl.String)).unique(
                "id", keep="first"
            ),
            on="id",
            how="left",
            maintain_order="left",
        )
    return assemble(long, ids, models, source, source, {"unlabelled": unlabelled})


def read_labelled_run(
    prefixes: Sequence[str],
    *,
    label: str,
    inputs: pl.DataFrame | None = None,
    id_column: str = "id",
    text_column: str = "text",
    models: Sequence[str] | None = None,
) -> RecordedAnswers:
    """The results and costs files under each job output prefix (local or S3), labelled."""
    from pipeline.store import Store

    results: list[pl.DataFrame] = []
    costs: list[pl.DataFrame] = []
    for prefix in prefixes:
        store = Store.open(str(prefix))
        for kind, into in (("results", results), ("costs", costs)):
            for info in store.list_files(kind, suffix=".parquet"):
                into.append(pl.read_parquet(io.BytesIO(store.read_bytes(info.path))))
    source = ", ".join(map(str, prefixes))
    if not results:
        raise TuneDataError(f"{source}: no results/*.parquet: give the output prefix of a job run")
    texts = None
    if inputs is not None:
        texts = inputs.select(pl.col(id_column).alias("id"), pl.col(text_column).alias("text"))
    return from_labelled_frame(
        pl.concat(results, how="diagonal_relaxed"),
        label=label,
        source=source + "/results",
        costs=pl.concat(costs, how="diagonal_relaxed") if costs else None,
        texts=texts,
        models=models,
    )
