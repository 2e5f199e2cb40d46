"""A labelled golden set: the rows `tierline eval` scores, checked before any call.

    golden = read_golden("golden.parquet", spec, label="label")
    golden.table      # id, text columns, label (Arrow, ids as strings)
    golden.labels     # id -> label

A golden set is a Parquet, JSONL or CSV file (local or s3://) with the spec's id column,
its text columns and a label column. Anything wrong with it is one `GoldenSetError`
naming the file and the fix, raised before a provider is called.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from pipeline.drift.golden import read_labelled
from pipeline.errors import ConfigError
from schemas.job import JobSpec


class GoldenSetError(ConfigError):
    """The golden set cannot be scored (missing, unreadable, empty, columns missing)."""


@dataclass(frozen=True)
class EvalSet:
    uri: str
    label: str
    table: pa.Table  # the spec's id and text columns (ids as strings)
    labels: dict[str, str]  # id -> label

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
    repeated = df.filter(pl.col(id_col).is_duplicated() | pl.col(id_col).is_null()).height
    if repeated:
        raise GoldenSetError(
            f"golden set {uri}: {repeated} row(s) with a null or repeated {id_col!r}; give "
            "every row its own id"
        )
    text = [pl.col(c).cast(pl.String) for c in text_cols]
    table = df.select(pl.col(id_col), *text).to_arrow()
    labels = dict(zip(df[id_col].to_list(), df[label].to_list(), strict=True))
    return EvalSet(uri, label, table, labels)
