"""A unit's rows, read and made ready: id, text, tier, and the rows that fail before
any call. Shared by the worker (a run) and the forecast (a dry run).

    table = read_unit(input_store, unit, unit_columns(spec))
    prep = prepare_unit(table, spec)
    prep.todo      # id, text, tier: rows that will be sent
    prep.early     # id, tier, error_type, message: rows that fail here (no call)
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from jobs.base import text_expr
from pipeline.errors import InputError
from pipeline.plan import Unit
from pipeline.routing.policy import choose_tiers, routing_columns
from pipeline.store import Store, with_retries
from schemas.job import JobSpec

ID, TEXT, TIER = "id", "text", "tier"


@dataclass(frozen=True)
class PreparedUnit:
    todo: pl.DataFrame  # id, text, tier
    early: pl.DataFrame  # id, tier, error_type, message
    duplicates: int


def unit_columns(spec: JobSpec) -> list[str]:
    cols = [spec.input.id_column, *spec.input.text_columns, *routing_columns(spec.routing)]
    return list(dict.fromkeys(cols))


def read_unit(store: Store, unit: Unit, columns: list[str]) -> pa.Table:
    """The unit's rows (only the columns the job reads); InputError names the file."""

    def _read() -> pa.Table:
        with store.fs.open_input_file(store.full(unit.source)) as f:
            table = pq.ParquetFile(f).read_row_groups(list(unit.row_groups), columns=columns)
        return table.slice(unit.row_offset, unit.row_count)

    try:
        return with_retries(_read, what=f"read {store.display(unit.source)}")
    except (OSError, pa.ArrowException) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(
            f"{store.display(unit.source)}: cannot read rows: {detail}", source=unit.source
        ) from None


def prepare_unit(table: pa.Table, spec: JobSpec) -> PreparedUnit:
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    cols = list(spec.input.text_columns)
    df = df.with_columns(
        pl.col(spec.input.id_column).cast(pl.String).alias("__id"),
        text_expr(cols).alias("__text"),
    )
    df = df.with_columns(choose_tiers(df, spec.routing).alias("__tier"))
    df = df.select(
        pl.col("__id").alias(ID), pl.col("__text").alias(TEXT), pl.col("__tier").alias(TIER)
    )

    null_id = (
        df.filter(pl.col(ID).is_null())
        .with_row_index("__n")
        .select(
            pl.format("<null-id:{}>", pl.col("__n")).alias(ID),
            pl.col(TIER),
            pl.lit("null_id").alias("error_type"),
            pl.lit(f"id column {spec.input.id_column!r} is null").alias("message"),
        )
    )
    df = df.filter(pl.col(ID).is_not_null())
    # Duplicate ids: the first row of an id is the one done; repeats are counted.
    first = df.select(pl.col(ID).is_first_distinct()).to_series()
    duplicates = int((~first).sum())
    df = df.filter(first)
    blank = pl.col(TEXT).is_null() | (pl.col(TEXT).str.strip_chars() == "")
    empty = df.filter(blank).select(
        pl.col(ID),
        pl.col(TIER),
        pl.lit("empty_text").alias("error_type"),
        pl.lit(f"text columns {', '.join(cols)} are all null or empty").alias("message"),
    )
    early = pl.concat([null_id, empty], how="vertical_relaxed")
    return PreparedUnit(todo=df.filter(~blank), early=early, duplicates=duplicates)
