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
from pipeline.engine.plan import Unit
from pipeline.errors import InputError
from pipeline.routing.policy import choose_tiers, routing_columns, sensitive_mask
from pipeline.store import Store, with_retries
from schemas.job import JobSpec

ID, TEXT, TIER, SENSITIVE = "id", "text", "tier", "sensitive"
_EARLY_ORDER = {"null_id": 0, "invalid_text": 1, "empty_text": 2}


@dataclass(frozen=True)
class PreparedUnit:
    todo: pl.DataFrame  # id, text, tier, sensitive
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


def _invalid_utf8(table: pa.Table, columns: list[str]) -> tuple[pa.Table, list[str | None]]:
    """Null out string values that are not valid UTF-8 (Parquet does not guarantee it and
    polars would carry the bad bytes on). Returns the table and, per row, the name of the
    first column found bad (None for good rows)."""
    bad: list[str | None] = [None] * table.num_rows
    for name in columns:
        col = table.column(name)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            continue
        try:
            col.validate(full=True)
            continue
        except pa.ArrowInvalid:
            pass
        raw = col.cast(pa.large_binary() if pa.types.is_large_string(col.type) else pa.binary())
        clean: list[str | None] = []
        for i, value in enumerate(raw.to_pylist()):
            try:
                clean.append(None if value is None else value.decode("utf-8"))
            except UnicodeDecodeError:
                clean.append(None)
                bad[i] = bad[i] or name
        table = table.set_column(
            table.schema.get_field_index(name), name, pa.array(clean, type=col.type)
        )
    return table, bad


def prepare_unit(table: pa.Table, spec: JobSpec, unit: int = 0) -> PreparedUnit:
    cols = list(spec.input.text_columns)
    table, bad_utf8 = _invalid_utf8(table, [spec.input.id_column, *cols])
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    bad = (
        pl.Series("__bad_utf8", bad_utf8, dtype=pl.String)
        if any(bad_utf8)
        else pl.lit(None, dtype=pl.String).alias("__bad_utf8")
    )
    df = df.with_row_index("__row").with_columns(
        bad,
        pl.col(spec.input.id_column).cast(pl.String).alias("__id"),
        text_expr(cols).alias("__text"),
    )
    tiers = choose_tiers(df, spec.routing).alias(TIER)
    sensitive = sensitive_mask(df, spec.routing, "__text").alias(SENSITIVE)

    # Why a row is not sent, first reason wins: a null id; a repeat of an earlier id (the
    # first row of an id is the one done; repeats are only counted); text that is not
    # UTF-8; no text. One pass marks them; the few marked rows are split off after.
    null_id = pl.col(ID).is_null()
    blank = pl.col(TEXT).is_null() | (pl.col(TEXT).str.strip_chars() == "")
    why = (
        pl.when(null_id)
        .then(pl.lit("null_id"))
        .when(~pl.col(ID).is_first_distinct())
        .then(pl.lit("duplicate"))
        .when(pl.col("__bad_utf8").is_not_null())
        .then(pl.lit("invalid_text"))
        .when(blank)
        .then(pl.lit("empty_text"))
    )
    rows = df.select(
        pl.col("__id").alias(ID),
        pl.col("__text").alias(TEXT),
        tiers,
        sensitive,
        pl.col("__bad_utf8"),
        pl.col("__row"),
    ).with_columns(why.alias("__why"))
    null_msg = f"id column {spec.input.id_column!r} is null or not valid UTF-8"
    empty_msg = f"text columns {', '.join(cols)} are all null or empty"
    todo = rows.filter(pl.col("__why").is_null()).select(ID, TEXT, TIER, SENSITIVE)
    marked = rows.filter(pl.col("__why").is_not_null())
    duplicates = int((marked["__why"] == "duplicate").sum())
    early = (
        marked.filter(pl.col("__why") != "duplicate")
        .select(
            # A null id is named by position, so the row still gets its one error row.
            pl.when(null_id)
            .then(pl.format(f"<null-id:unit-{unit}:row-{{}}>", pl.col("__row")))
            .otherwise(pl.col(ID))
            .alias(ID),
            pl.col(TIER),
            pl.col("__why").alias("error_type"),
            pl.when(null_id)
            .then(pl.lit(null_msg))
            .when(pl.col("__why") == "invalid_text")
            .then(pl.format("column {} is not valid UTF-8", pl.col("__bad_utf8")))
            .otherwise(pl.lit(empty_msg))
            .alias("message"),
        )
        .sort(
            pl.col("error_type").replace_strict(_EARLY_ORDER, return_dtype=pl.Int8),
            maintain_order=True,
        )
    )
    return PreparedUnit(todo=todo, early=early, duplicates=duplicates)
