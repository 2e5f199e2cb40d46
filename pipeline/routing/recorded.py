"""Recorded answers: per prompt and per model, whether the answer was right and what it cost.
The one shape the tuner reads, whatever the data came from.

    data = load_recorded(Path("../shared/data/routerbench"))      # the two-file format
    data.correct[:, data.model_index("gpt-4")].mean()              # its accuracy
    data.rows(data.split_rows("train"))                            # training rows only

Two-file format: `prompts.parquet` (sample_id, prompt, optional split and other metadata
columns such as eval_name) and `responses.parquet` (sample_id, model, response, correct,
cost_usd). A labelled run of the user's own job comes in through
pipeline.routing.labelled in the same shape.

Every problem is a TuneDataError whose one-line message names the file and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.routing.cascade import normalise
from pipeline.routing.decide import FloatArray, IntArray
from pipeline.routing.features import TextParts, text_parts

ObjArray = np.ndarray[Any, np.dtype[np.object_]]


class TuneDataError(ValueError):
    """Data the tuner cannot use; the message names the file and the fix."""


@dataclass(frozen=True)
class RecordedAnswers:
    """n prompts x m models. Rows are prompts; columns of the matrices follow `models`."""

    ids: ObjArray  # (n,) str
    texts: ObjArray | None  # (n,) str; None: no text (only text-free policies are possible)
    models: tuple[str, ...]
    correct: FloatArray  # (n, m) 1.0 right / 0.0 wrong
    cost: FloatArray  # (n, m) USD
    answers: IntArray  # (n, m) normalised-answer code (equal code, same answer); -1 none
    split: ObjArray | None = None  # (n,) 'train' / 'test' / ..., when the data says
    meta: dict[str, ObjArray] = field(default_factory=dict)  # other prompt columns, by name
    source: str = ""
    excluded: dict[str, int] = field(default_factory=dict)  # rows left out, by reason
    parts: TextParts | None = None  # hashed text, computed once (with_text_parts)

    @property
    def n(self) -> int:
        return int(self.ids.shape[0])

    def model_index(self, name: str) -> int:
        try:
            return self.models.index(name)
        except ValueError:
            raise TuneDataError(
                f"{self.source}: no answers of model {name!r}; recorded models: "
                f"{', '.join(self.models)} (name recorded models only, or record its answers)"
            ) from None

    def rows(self, idx: IntArray) -> RecordedAnswers:
        """The same data restricted to rows `idx` (in that order)."""
        return replace(
            self,
            ids=self.ids[idx],
            texts=None if self.texts is None else self.texts[idx],
            correct=self.correct[idx],
            cost=self.cost[idx],
            answers=self.answers[idx],
            split=None if self.split is None else self.split[idx],
            meta={k: v[idx] for k, v in self.meta.items()},
            parts=None if self.parts is None else self.parts.rows(idx),
        )

    def split_rows(self, name: str) -> IntArray:
        if self.split is None:
            raise TuneDataError(f"{self.source}: no split column to take {name!r} rows from")
        return np.flatnonzero(self.split == name).astype(np.int64)

    def with_text_parts(self, n_text: int, ngram_max: int) -> RecordedAnswers:
        """Hash every text once; subsets (`rows`) keep the hashes. No-op without text."""
        if self.texts is None:
            return self
        p = self.parts
        if p is not None and p.counts.shape[1] == n_text:
            return self
        return replace(self, parts=text_parts(list(self.texts), n_text, ngram_max))

    def meta_frame(self, columns: Sequence[str]) -> pl.DataFrame:
        """Metadata columns as a frame (what the learned router's categorical block reads)."""
        missing = [c for c in columns if c not in self.meta]
        if missing:
            raise TuneDataError(
                f"{self.source}: no metadata column(s) {', '.join(missing)}; have: "
                f"{', '.join(self.meta) or 'none'}"
            )
        schema = dict.fromkeys(columns, pl.String)
        return pl.DataFrame({c: list(self.meta[c]) for c in columns}, schema=schema)


def answer_codes(frame: pl.DataFrame, col: str) -> pl.Series:
    """Normalised answers as integer codes: equal code, same answer; -1 for no answer."""
    texts = frame.get_column(col).cast(pl.String).to_list()
    keys = [normalise(t) if t else "" for t in texts]
    table: dict[str, int] = {}
    return pl.Series(
        "code", [table.setdefault(k, len(table)) if k else -1 for k in keys], dtype=pl.Int64
    )


def assemble(
    long: pl.DataFrame,
    rows: pl.DataFrame,
    models: Sequence[str] | None,
    source: str,
    where: str,
    excluded: dict[str, int],
) -> RecordedAnswers:
    """long: id, model, correct, cost, code (one per answer); rows: id, text?, split?, meta."""
    recorded = sorted(set(long.get_column("model").to_list()))
    wanted = list(models) if models else recorded
    for name in wanted:
        if name not in recorded:
            raise TuneDataError(
                f"{where}: no answers of model {name!r}, which was named; recorded models: "
                f"{', '.join(recorded)} (name recorded models only, or record its answers)"
            )
    long = long.filter(pl.col("model").is_in(wanted)).unique(
        ["id", "model"], keep="first", maintain_order=True
    )
    wide = rows.select("id")
    for i, name in enumerate(wanted):
        one = long.filter(pl.col("model") == name).select(
            "id",
            pl.col("correct").alias(f"c{i}"),
            pl.col("cost").alias(f"k{i}"),
            pl.col("code").alias(f"a{i}"),
        )
        wide = wide.join(one, on="id", how="left", maintain_order="left")
    value_cols = [f"{p}{i}" for i in range(len(wanted)) for p in ("c", "k")]
    complete = wide.select(pl.all_horizontal(pl.col(value_cols).is_not_null())).to_series()
    excluded = {**excluded, "missing_answer": int((~complete).sum())}
    wide, rows = wide.filter(complete), rows.filter(complete)
    if wide.height == 0:
        raise TuneDataError(
            f"{where}: no prompt has an answer of every model used ({', '.join(wanted)}): "
            "name fewer models, or record the missing answers"
        )
    m = len(wanted)
    meta_cols = [c for c in rows.columns if c not in ("id", "text", "split")]
    return RecordedAnswers(
        ids=np.array(rows.get_column("id").to_list(), dtype=object),
        texts=(
            np.array(rows.get_column("text").cast(pl.String).fill_null("").to_list(), dtype=object)
            if "text" in rows.columns
            else None
        ),
        models=tuple(wanted),
        correct=np.column_stack([wide[f"c{i}"].to_numpy() for i in range(m)]).astype(np.float64),
        cost=np.column_stack([wide[f"k{i}"].to_numpy() for i in range(m)]).astype(np.float64),
        answers=np.column_stack([wide[f"a{i}"].fill_null(-1).to_numpy() for i in range(m)]).astype(
            np.int64
        ),
        split=(
            np.array(rows.get_column("split").cast(pl.String).to_list(), dtype=object)
            if "split" in rows.columns
            else None
        ),
        meta={
            c: np.array(rows.get_column(c).cast(pl.String).to_list(), dtype=object)
            for c in meta_cols
        },
        source=source,
        excluded=excluded,
    )


# --- the two-file format -------------------------------------------------------------------


def load_recorded(folder: Path, models: Sequence[str] | None = None) -> RecordedAnswers:
    """Every prompt with an answer of each model in `models` (default: every recorded one).
    A sample id that occurs in two splits is dropped: its answers cannot be told apart."""
    prompts_path, responses_path = folder / "prompts.parquet", folder / "responses.parquet"
    for path in (prompts_path, responses_path):
        if not path.is_file():
            raise TuneDataError(
                f"{path} does not exist: a recorded-answers folder holds prompts.parquet "
                "and responses.parquet"
            )
    prompts = pl.read_parquet(prompts_path)
    responses = pl.read_parquet(responses_path)
    for path, df, need in (
        (prompts_path, prompts, ("sample_id", "prompt")),
        (responses_path, responses, ("sample_id", "model", "response", "correct", "cost_usd")),
    ):
        missing = [c for c in need if c not in df.columns]
        if missing:
            raise TuneDataError(
                f"{path} lacks column(s) {', '.join(missing)} (needs {', '.join(need)})"
            )
    prompts = prompts.with_columns(pl.col("sample_id").cast(pl.String))
    responses = responses.with_columns(pl.col("sample_id").cast(pl.String))
    known = set(prompts.get_column("sample_id").to_list())
    answered = set(responses.get_column("sample_id").to_list())
    orphans, silent = sorted(answered - known), sorted(known - answered)
    if orphans or not known & answered:
        example = (orphans or sorted(known))[:1]
        raise TuneDataError(
            f"{responses_path}: {len(orphans) or len(answered)} sample ids are not in "
            f"{prompts_path.name} (e.g. {example[0]!r}): the two files must come from the same "
            "recording (same sample_id values)"
        )
    excluded: dict[str, int] = {"no_answer": len(silent)}
    if "split" in prompts.columns:
        per = prompts.group_by("sample_id").agg(pl.col("split").n_unique().alias("k"))
        ambiguous = per.filter(pl.col("k") > 1).get_column("sample_id")
        excluded["id_in_two_splits"] = ambiguous.len()
        prompts = prompts.filter(~pl.col("sample_id").is_in(ambiguous.implode()))
    before = prompts.height
    prompts = prompts.unique("sample_id", keep="first", maintain_order=True)
    excluded["duplicate_id"] = before - prompts.height
    extra = [
        c
        for c in prompts.columns
        if c not in ("sample_id", "prompt") and prompts.schema[c] in (pl.String, pl.Categorical)
    ]
    rows = prompts.select(pl.col("sample_id").alias("id"), pl.col("prompt").alias("text"), *extra)
    long = responses.select(
        pl.col("sample_id").alias("id"),
        pl.col("model").cast(pl.String),
        pl.col("correct").cast(pl.Float64),
        pl.col("cost_usd").cast(pl.Float64).alias("cost"),
    ).with_columns(answer_codes(responses, "response"))
    return assemble(long, rows, models, str(folder), str(responses_path), excluded)
