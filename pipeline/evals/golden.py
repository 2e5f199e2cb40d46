"""A labelled golden set: the rows `tierline eval` scores, checked before any call.

    golden = read_golden("golden.parquet", spec, label="label")
    golden.table      # id, text columns, label (Arrow, ids as strings)
    golden.labels     # id -> label
    golden.expected   # extract: id -> {field: value} (`pipeline.evals.fields`)

A golden set is a Parquet, JSONL or CSV file (local or s3://) with the spec's id column,
its text columns and a label column; for an extract task, a column per field to score
instead of the label. Anything wrong with it is one `GoldenSetError` naming the file and
the fix, raised before a provider is called.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa

from pipeline.drift.golden import read_labelled
from pipeline.errors import ConfigError
from pipeline.evals.fields import Expected, expected_values, field_columns
from schemas.job import ExtractTask, JobSpec


class GoldenSetError(ConfigError):
    """The golden set cannot be scored (missing, unreadable, empty, columns missing)."""


@dataclass(frozen=True)
class EvalSet:
    uri: str
    label: str
    table: pa.Table  # the spec's id and text columns (ids as strings)
    labels: dict[str, str]  # id -> label (empty for extract)
    expected: Expected = field(default_factory=dict)  # extract: id -> {field: value}

    @property
    def fields(self) -> list[str]:
        """The extract fields scored ([] for other tasks)."""
        return list(next(iter(self.expected.values()), {}))

    @property
    def rows(self) -> int:
        return self.table.num_rows


def _read(uri: str) -> pl.DataFrame:
    try:
        return read_labelled(uri)
    except FileNotFoundError:
        raise GoldenSetError(
            f"golden set {uri}: cannot read it (not found); check the path"
        ) from None
    except ValueError as exc:
        if "unknown format" in str(exc):
            raise GoldenSetError(f"golden set {uri}: {exc}") from None
        reason = str(exc).splitlines()[0]
        raise GoldenSetError(
            f"golden set {uri}: not a readable file ({reason}); write one row per labelled example"
        ) from None
    except Exception as exc:  # no access, a broken file: one line, the reason
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GoldenSetError(
            f"golden set {uri}: cannot read it ({reason}); check the path"
        ) from None


def read_golden(uri: str, spec: JobSpec, label: str = "label") -> EvalSet:
    """Read and check a golden set against the spec's input columns."""
    df = _read(uri)
    if isinstance(spec.task, ExtractTask):
        return _read_fields(uri, df, spec, spec.task)
    id_col, text_cols = spec.input.id_column, list(spec.input.text_columns)
    needed = list(dict.fromkeys([id_col, *text_cols, label]))
    if df.height == 0:
        raise GoldenSetError(
            f"golden set {uri}: no rows; add labelled rows with columns {', '.join(needed)}"
        )
    missing = [c for c in needed if c not in df.columns]
    if missing:
        hint = (
            f" (or name the label column with --label; have: {', '.join(df.columns)})"
            if label in missing
            else f" (have: {', '.join(df.columns)})"
        )
        raise GoldenSetError(
            f"golden set {uri}: missing column(s) {', '.join(missing)}; it needs the spec's "
            f"id column {id_col!r}, text columns {', '.join(text_cols)} and a label column "
            f"{label!r}{hint}"
        )
    df = df.with_columns(
        pl.col(id_col).cast(pl.String), pl.col(label).cast(pl.String).str.strip_chars()
    )
    unlabelled = df.filter(pl.col(label).is_null() | (pl.col(label) == "")).height
    if unlabelled:
        raise GoldenSetError(
            f"golden set {uri}: {unlabelled} row(s) without a {label!r} value; label every "
            "row or drop the unlabelled ones"
        )
    _check_ids(uri, df, id_col)
    labels = dict(zip(df[id_col].to_list(), df[label].to_list(), strict=True))
    return EvalSet(uri, label, _inputs(df, spec), labels)


def _check_ids(uri: str, df: pl.DataFrame, id_col: str) -> None:
    repeated = df.filter(pl.col(id_col).is_duplicated() | pl.col(id_col).is_null()).height
    if repeated:
        raise GoldenSetError(
            f"golden set {uri}: {repeated} row(s) with a null or repeated {id_col!r}; give "
            "every row its own id"
        )


def _inputs(df: pl.DataFrame, spec: JobSpec) -> pa.Table:
    text = [pl.col(c).cast(pl.String) for c in spec.input.text_columns]
    return df.select(pl.col(spec.input.id_column), *text).to_arrow()


def _read_fields(uri: str, df: pl.DataFrame, spec: JobSpec, task: ExtractTask) -> EvalSet:
    """An extract golden set: the spec's id and text columns and a column per field."""
    id_col, text_cols = spec.input.id_column, list(spec.input.text_columns)
    names = list(task.schema_fields())
    if df.height == 0:
        raise GoldenSetError(
            f"golden set {uri}: no rows; add rows with columns {', '.join([id_col, *text_cols])} "
            f"and the right value of each field to score ({', '.join(names)})"
        )
    missing = [c for c in dict.fromkeys([id_col, *text_cols]) if c not in df.columns]
    if missing:
        raise GoldenSetError(
            f"golden set {uri}: missing column(s) {', '.join(missing)}; it needs the spec's "
            f"id column {id_col!r} and text columns {', '.join(text_cols)} "
            f"(have: {', '.join(df.columns)})"
        )
    columns = field_columns(df.columns, task, spec.input)
    if not columns:
        raise GoldenSetError(
            f"golden set {uri}: no field to score; an extract task's golden set has a column "
            f"per field with its right value, named as the field or out_<field> "
            f"({', '.join(names)}; have: {', '.join(df.columns)})"
        )
    df = df.with_columns(pl.col(id_col).cast(pl.String))
    _check_ids(uri, df, id_col)
    try:
        expected = expected_values(df, id_col, columns, task)
    except ValueError as exc:
        raise GoldenSetError(f"golden set {uri}: {exc}; fix the value") from None
    return EvalSet(uri, "", _inputs(df, spec), {}, expected)
