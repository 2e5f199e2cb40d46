from __future__ import annotations

import itertools

import polars as pl
import pytest

from jobs.base import join_text, text_expr


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["Refund", "I was charged twice."], "Refund\n\nI was charged twice."),
        ([None, "body only"], "body only"),
        (["subject only", None], "subject only"),
        (["", "body"], "body"),
        (["  Subject \n", "\tBody  text\n"], "Subject\n\nBody  text"),
        (["a", None, "c"], "a\n\nc"),
        (["line one\nline two", "x"], "line one\nline two\n\nx"),
        ([None, None], None),
        (["", "   "], None),
        ([" \n\t", None], None),
        ([], None),
    ],
)
def test_join_text(values: list[str | None], expected: str | None) -> None:
    assert join_text(values) == expected


PARTS = [None, "", "  ", "x", " y\n", "two\n\nparagraphs"]


@pytest.mark.parametrize("width", [1, 2, 3])
def test_text_expr_agrees_with_join_text(width: int) -> None:
    rows = list(itertools.product(PARTS, repeat=width))
    columns = [f"c{i}" for i in range(width)]
    df = pl.DataFrame(
        {name: [row[i] for row in rows] for i, name in enumerate(columns)},
        schema={name: pl.String for name in columns},
    )
    got = df.select(text_expr(columns)).to_series()
    assert got.name == "text"
    assert got.to_list() == [join_text(list(row)) for row in rows]


def test_text_expr_is_null_not_empty_when_all_parts_are_blank() -> None:
    df = pl.DataFrame(
        {"a": [None, "", " "], "b": ["", None, "\n"]}, schema={"a": pl.String, "b": pl.String}
    )
    assert df.select(text_expr(["a", "b"])).to_series().null_count() == 3


def test_text_expr_casts_non_string_columns() -> None:
    df = pl.DataFrame({"n": [1, None], "s": ["a", None]})
    assert df.select(text_expr(["n", "s"])).to_series().to_list() == ["1\n\na", None]


def test_text_expr_needs_a_column() -> None:
    with pytest.raises(ValueError):
        text_expr([])
