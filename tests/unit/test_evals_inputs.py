"""`tierline eval`'s inputs: golden sets and --prompts-from files, refused before any call
with one line naming the file and the fix (no Ray, no network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from jobs.base import get_job_kind
from pipeline.cli.app import app
from pipeline.evals.golden import GoldenSetError, read_golden
from pipeline.evals.prompts import PromptsFromError, load_prompts
from schemas.job import JobSpec, parse_spec

LABELS = ["billing", "technical", "account", "other"]


def spec() -> JobSpec:
    return parse_spec(
        {
            "name": "ev",
            "task": {"kind": "classify", "labels": LABELS, "instructions": "Classify it."},
            "input": {"uri": "in/", "id_column": "ticket_id", "text_columns": ["subject", "body"]},
            "output": {"uri": "out/"},
            "providers": {"sim": {"kind": "sim"}},
            "tiers": {"cheap": ["sim/gpt-4o-mini"], "mid": ["sim/claude-3-5-haiku"]},
        }
    )


ROWS = [
    {"ticket_id": 1, "subject": "Billing", "body": "charged twice", "label": "billing"},
    {"ticket_id": 2, "subject": "Login", "body": "technical error", "label": "Technical"},
]


def write(path: Path, rows: list[dict[str, Any]]) -> str:
    df = pl.DataFrame(rows) if rows else pl.DataFrame()
    if path.suffix == ".parquet":
        df.write_parquet(path)
    elif path.suffix == ".csv":
        df.write_csv(path)
    else:
        df.write_ndjson(path)
    return str(path)


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".csv"])
def test_golden_sets_in_every_format_read_alike(tmp_path: Path, suffix: str) -> None:
    golden = read_golden(write(tmp_path / f"g{suffix}", ROWS), spec())
    assert golden.rows == 2
    assert golden.labels == {"1": "billing", "2": "Technical"}  # ids as strings
    assert golden.table.column_names == ["ticket_id", "subject", "body"]


def test_the_label_column_can_be_named(tmp_path: Path) -> None:
    rows = [{**r, "gold": r.pop("label")} for r in [dict(x) for x in ROWS]]
    assert read_golden(write(tmp_path / "g.csv", rows), spec(), label="gold").rows == 2


@pytest.mark.parametrize(
    ("name", "rows", "expected"),
    [
        ("g.parquet", [{k: v for k, v in r.items() if k != "label"} for r in ROWS], "--label"),
        ("g.csv", [{k: v for k, v in r.items() if k != "body"} for r in ROWS], "missing column"),
        ("g.jsonl", [], "no rows; add labelled rows"),
        ("g.csv", [{**ROWS[0], "label": ""}, ROWS[1]], "without a 'label' value"),
        ("g.csv", [ROWS[0], {**ROWS[1], "ticket_id": 1}], "repeated 'ticket_id'"),
    ],
)
def test_bad_golden_sets_name_the_file_and_the_fix(
    tmp_path: Path, name: str, rows: list[dict[str, Any]], expected: str
) -> None:
    path = write(tmp_path / name, rows)
    with pytest.raises(GoldenSetError) as exc:
        read_golden(path, spec())
    assert exc.value.message.startswith(f"golden set {path}:")
    assert expected in exc.value.message and "\n" not in exc.value.message


def test_missing_and_unknown_golden_files(tmp_path: Path) -> None:
    with pytest.raises(GoldenSetError, match="cannot read it"):
        read_golden(str(tmp_path / "none.csv"), spec())
    with pytest.raises(GoldenSetError, match=r"name it \.parquet, \.jsonl or \.csv"):
        read_golden(str(tmp_path / "g.xlsx"), spec())


def test_prompts_from_another_spec_a_mapping_or_a_text_file(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(
        "name: x\ntask:\n  kind: classify\n  labels: [a, b]\n"
        "  prompts: {default: 'Sort into {labels}.', claude: 'Claude, sort into {labels}.'}\n"
    )
    mapping = tmp_path / "v2.json"
    mapping.write_text('{"gpt-4o": "Choose from {labels}."}')
    text = tmp_path / "v3.txt"
    text.write_text("Just one label, please.\n")
    from_spec, from_map, from_text = (load_prompts(p, spec()) for p in (other, mapping, text))
    assert from_spec.source == "other.yaml" and list(from_spec.task.prompts) == [
        "default",
        "claude",
    ]
    # The variants fill this spec's placeholders (its labels, not the other spec's).
    claude = get_job_kind(from_spec.task).prompt("claude-3-5-haiku")
    assert claude.text == "Claude, sort into billing, technical, account, other."
    # A mapping without `default` keeps nothing of this spec's instructions: the other
    # set is compared as written (models it does not name get the built-in wording).
    assert get_job_kind(from_map.task).prompt("gpt-4o-mini").key == "gpt-4o"
    assert get_job_kind(from_text.task).prompt("any").text == "Just one label, please."


def test_bad_prompts_files_name_the_file_and_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("claude: 'Pick {label}.'\n")
    with pytest.raises(PromptsFromError) as exc:
        load_prompts(bad, spec())
    assert str(bad) in exc.value.message and "unknown placeholder {label}" in exc.value.message
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(PromptsFromError, match="mapping of prompt variants"):
        load_prompts(listing, spec())
    with pytest.raises(PromptsFromError, match="cannot read it"):
        load_prompts(tmp_path / "none.yaml", spec())


def test_cli_refuses_a_bad_golden_set_with_exit_2_before_any_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a simulator was started for a bad golden set")

    monkeypatch.setattr("pipeline.sim.server.SimServer.start", refuse)
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        "name: ev\ntask: {kind: classify, labels: [billing, other]}\n"
        "input: {uri: in/, id_column: ticket_id, text_columns: [subject, body]}\n"
        "output: {uri: out/}\nproviders: {sim: {kind: sim}}\ntiers: {cheap: [sim/gpt-4o-mini]}\n"
    )
    golden = write(tmp_path / "g.csv", [{k: v for k, v in r.items() if k != "label"} for r in ROWS])
    result = CliRunner().invoke(app, ["eval", str(spec_path), "--golden", golden])
    assert result.exit_code == 2, result.output
    assert f"golden set {golden}: missing column(s) label" in result.output
    empty = write(tmp_path / "e.jsonl", [])
    result = CliRunner().invoke(app, ["eval", str(spec_path), "--golden", empty])
    assert result.exit_code == 2 and "no rows" in result.output


# --- extract: a column per field, scored one field at a time ------------------------------

EXTRACT_FIELDS = {
    "queue": {"type": "enum", "values": ["billing", "technical"]},
    "seats": {"type": "integer", "required": False},
    "due": {"type": "date", "required": False},
    "subject": {"type": "string", "max_length": 80},  # also a text column of the input
}


def extract_spec() -> JobSpec:
    doc = spec().model_dump(mode="json", exclude_none=True)
    doc["task"] = {"kind": "extract", "fields": EXTRACT_FIELDS}
    return parse_spec(doc)


def test_an_extract_golden_set_reads_each_fields_values_as_its_type(tmp_path: Path) -> None:
    rows = [
        # Enum case is forgiven, "3" is 3, dates come as text; `subject` is the input's
        # text column, so the field's value is the out_ column.
        {"ticket_id": 1, "subject": "Billing", "body": "x", "queue": "Billing", "seats": "3",
         "due": "2026-12-03", "out_subject": "Charged twice"},
        {"ticket_id": 2, "subject": "Login", "body": "y", "queue": "technical", "seats": "",
         "due": None, "out_subject": "Cannot log in"},
    ]  # fmt: skip
    for name in ("g.csv", "g.parquet"):
        golden = read_golden(write(tmp_path / name, rows), extract_spec())
        assert golden.fields == ["queue", "seats", "due", "subject"] and golden.labels == {}
        assert golden.expected["1"] == {
            "queue": "billing",
            "seats": 3,
            "due": "2026-12-03",
            "subject": "Charged twice",
        }
        assert golden.expected["2"]["seats"] is None and golden.expected["2"]["due"] is None
        assert golden.table.column_names == ["ticket_id", "subject", "body"]


def test_fields_are_scored_one_at_a_time_and_an_error_row_is_wrong_in_all() -> None:
    from pipeline.evals.fields import score_fields

    expected = {
        "1": {"queue": "billing", "subject": "Charged twice"},
        "2": {"queue": "technical", "subject": "Cannot log in"},
        "3": {"queue": "billing", "subject": "Refund"},
    }
    answers = {
        "1": {"queue": "billing", "subject": "  charged TWICE."},  # strings: case, spacing
        "2": {"queue": "billing", "subject": "Cannot log in"},
    }  # row 3 ended as an error row: no answer
    assert score_fields(expected, answers) == (1, {"queue": 1, "subject": 2})


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([{**ROWS[0]}], "no field to score; an extract task's golden set has a column per field"),
        ([{**ROWS[0], "queue": "sales"}], "row 1, column queue: Input should be 'billing' or"),
        ([{**ROWS[0], "seats": "many"}], "row 1, column seats: Input should be a valid integer"),
        ([{"ticket_id": 1, "queue": "billing"}], "missing column(s) subject, body"),
    ],
)
def test_bad_extract_golden_sets_name_the_row_column_and_fix(
    tmp_path: Path, rows: list[dict[str, Any]], expected: str
) -> None:
    path = write(tmp_path / "g.csv", rows)
    with pytest.raises(GoldenSetError) as exc:
        read_golden(path, extract_spec())
    assert exc.value.message.startswith(f"golden set {path}:")
    assert expected in exc.value.message and "\n" not in exc.value.message
