"""An extract task's golden set: each field's right value, scored one field at a time.

    columns = field_columns(df.columns, task, spec.input)   # {"queue": "queue", ...}
    expected = expected_values(df, id_col, columns, task)   # id -> {field: value}
    right, fields = score_fields(expected, answers)          # rows right in every field,
                                                             # {field: rows right}

A golden set for `tierline eval` on an extract spec has, instead of one label column, a
column per field to score: named as the field (`queue`), or as the results name it
(`out_queue`), so a reviewed results file serves. Fields without a column are not
scored. Each cell is read as the field's type (lax: "3" is 3, "2026-12-03" a date, an
enum's case forgiven; lists and objects as JSON text or as Parquet/JSONL values); an
empty cell of an optional field means the answer must leave it null. A value the field
cannot hold is one `ValueError` naming the row and the column, raised before any call.

Values are compared as agreement compares them (`pipeline.routing.cascade.field_key`):
strings case, surrounding punctuation and spacing aside, everything else exactly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import polars as pl
from pydantic import ValidationError

from jobs.extract_fields import COLUMN_PREFIX, answer_model
from pipeline.routing.cascade import field_key, normalise
from schemas.extract import ExtractTask, FieldSpec
from schemas.job import InputSpec

Expected = dict[str, dict[str, object]]  # id -> field -> value (JSON-shaped)


def field_columns(columns: Sequence[str], task: ExtractTask, inputs: InputSpec) -> dict[str, str]:
    """field -> the golden column holding its right values (`out_<field>` first; a bare
    field name that is also an input column is the input, not a value)."""
    taken = {inputs.id_column, *inputs.text_columns}
    found: dict[str, str] = {}
    for name in task.schema_fields():
        if COLUMN_PREFIX + name in columns:
            found[name] = COLUMN_PREFIX + name
        elif name in columns and name not in taken:
            found[name] = name
    return found


def _cell(spec: FieldSpec, value: object) -> object:
    if isinstance(value, str) and spec.type in ("list", "object"):
        return json.loads(value)
    if isinstance(value, str) and spec.type == "enum":
        by_key = {normalise(v): v for v in spec.values or []}
        return by_key.get(normalise(value), value)
    if isinstance(value, str) and not value.strip():
        return None
    return value


def expected_values(
    df: pl.DataFrame, id_column: str, columns: Mapping[str, str], task: ExtractTask
) -> Expected:
    """Each row's right values, as the field's type gives them in an answer's JSON."""
    fields = task.schema_fields()
    specs = {name: fields[name] for name in columns}
    model = answer_model(specs)
    out: Expected = {}
    for row in df.select(pl.col(id_column), *columns.values()).iter_rows(named=True):
        rid = str(row[id_column])
        doc: dict[str, object] = {}
        for name, col in columns.items():
            try:
                doc[name] = _cell(specs[name], row[col])
            except ValueError:
                raise ValueError(
                    f"row {rid}, column {col}: not JSON; write the {specs[name].type} as JSON"
                ) from None
        try:
            values = model.model_validate(doc).model_dump(mode="json")
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            column = columns[str(first["loc"][0])]
            inner = "".join(f"[{p}]" for p in first["loc"][1:])  # in a list or an object
            raise ValueError(f"row {rid}, column {column}{inner}: {first['msg']}") from None
        out[rid] = {name: values.get(name) for name in columns}
    return out


def score_fields(
    expected: Expected, answers: Mapping[str, Mapping[str, object]]
) -> tuple[int, dict[str, int]]:
    """(rows right in every scored field, {field: rows right}); a row without an answer
    (an error row) is wrong in every field."""
    names = list(next(iter(expected.values()), {}))
    per_field = dict.fromkeys(names, 0)
    whole = 0
    for rid, want in expected.items():
        got = answers.get(rid)
        right = [
            name
            for name in names
            if got is not None and field_key(got.get(name)) == field_key(want[name])
        ]
        for name in right:
            per_field[name] += 1
        whole += len(right) == len(names)
    return whole, per_field
