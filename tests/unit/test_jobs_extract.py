"""The extract task: spec errors before any call, answer parsing and validation, typed
columns (Parquet, read back by polars)."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.base import get_job_kind
from jobs.extract import ExtractJob
from schemas.extract import ExtractTask
from schemas.job import SpecError, load_spec, parse_spec

FIELDS = {
    "queue": {"type": "enum", "values": ["billing", "technical"], "description": "Team."},
    "summary": {"type": "string", "max_length": 40},
    "due": {"type": "date", "required": False},
    "seats": {"type": "integer", "minimum": 1, "maximum": 500, "required": False},
    "amount": {"type": "number", "minimum": 0, "required": False},
    "refund": {"type": "boolean", "required": False},
    "tags": {
        "type": "list",
        "items": {"type": "enum", "values": ["vat", "card"]},
        "required": False,
    },
    "contact": {
        "type": "object",
        "required": False,
        "fields": {"name": {"type": "string"}, "since": {"type": "date", "required": False}},
    },
}


def job(fields: dict[str, object] | None = None) -> ExtractJob:
    kind = get_job_kind(ExtractTask(kind="extract", fields=fields or FIELDS))  # type: ignore[arg-type]
    assert isinstance(kind, ExtractJob)
    return kind


def spec_with(task: dict[str, object], **extra: object) -> dict[str, object]:
    return {
        "name": "x",
        "task": task,
        "input": {"uri": "in/", "id_column": "id", "text_columns": ["text"]},
        "output": {"uri": "out/"},
        "providers": {"sim": {"kind": "sim"}},
        "tiers": {"cheap": ["sim/gpt-4o-mini"], "mid": ["sim/claude-3-5-haiku"]},
        **extra,
    }


def problems(task: dict[str, object], **extra: object) -> str:
    with pytest.raises(SpecError) as exc:
        parse_spec(spec_with(task, **extra))
    return "; ".join(exc.value.problems)


# --- spec errors, before any call -------------------------------------------------------


def test_unknown_field_type_names_the_field() -> None:
    msg = problems({"kind": "extract", "fields": {"queue": {"type": "category"}}})
    assert "task.extract.fields.queue.type" in msg and "'enum'" in msg


def test_enum_without_values_names_the_field() -> None:
    msg = problems({"kind": "extract", "fields": {"queue": {"type": "enum", "values": []}}})
    assert "task.extract.fields.queue" in msg and "needs `values`" in msg


def test_field_name_that_is_not_a_column_name_is_refused() -> None:
    msg = problems({"kind": "extract", "fields": {"Due Date": {"type": "date"}}})
    assert "'Due Date' is not a valid column name" in msg and "due_date" in msg


def test_settings_of_another_type_are_refused() -> None:
    msg = problems({"kind": "extract", "fields": {"n": {"type": "integer", "max_length": 3}}})
    assert "task.extract.fields.n" in msg and "max_length does not apply to a integer" in msg


def test_nested_objects_nest_one_level_only() -> None:
    inner = {"type": "object", "fields": {"a": {"type": "string"}}}
    msg = problems({"kind": "extract", "fields": {"o": {"type": "object", "fields": {"p": inner}}}})
    assert "fields.p: objects nest one level only" in msg


def test_cascade_fields_must_name_task_fields() -> None:
    routing = {"cascade": {"agree": ["sim/gpt-4o-mini", "sim/claude-3-5-haiku"], "fields": ["q"]}}
    msg = problems({"kind": "extract", "fields": FIELDS}, routing=routing)
    assert "routing.cascade.fields: 'q' is not a field of the task" in msg


def test_json_schema_file_becomes_fields(tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "properties": {
            "queue": {"type": "string", "enum": ["billing", "technical"], "description": "Team"},
            "due": {"type": ["string", "null"], "format": "date"},
            "lines": {"type": "array", "items": {"type": "number"}, "maxItems": 5},
        },
        "required": ["queue"],
    }
    path = tmp_path / "ticket.json"
    path.write_text(json.dumps(schema))
    spec = parse_spec(spec_with({"kind": "extract", "schema_uri": str(path)}))
    assert isinstance(spec.task, ExtractTask)
    fields = spec.task.schema_fields()
    assert fields["queue"].type == "enum" and fields["queue"].required
    assert fields["due"].type == "date" and not fields["due"].required
    assert fields["lines"].items is not None and fields["lines"].max_items == 5
    # The spec as the workers get it (JSON) validates again to the same task.
    again = type(spec).model_validate_json(spec.model_dump_json())
    assert again.task == spec.task


def test_unusable_json_schema_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"type": "object", "properties": {"when": {"type": "timestamp"}}}))
    msg = problems({"kind": "extract", "schema_uri": str(path)})
    assert "properties.when.type: 'timestamp' is not supported" in msg


def test_example_spec_validates() -> None:
    spec = load_spec(Path(__file__).parents[2] / "jobs/examples/extract-tickets.yaml")
    assert isinstance(spec.task, ExtractTask)
    assert list(spec.task.schema_fields()) == [
        "queue",
        "priority",
        "language",
        "product",
        "summary",
    ]


# --- parsing and validation -------------------------------------------------------------

GOOD = {"queue": "billing", "summary": "Charged twice", "due": "2026-12-03", "seats": 12}


def test_code_fence_and_trailing_text_are_tolerated() -> None:
    raw = "Here you go:\n```json\n" + json.dumps(GOOD) + "\n```\nLet me know if..."
    parsed = job().parse(raw)
    assert parsed.ok and parsed.values is not None
    assert parsed.values["queue"] == "billing" and parsed.values["due"] == "2026-12-03"
    assert parsed.values["refund"] is None  # optional, left out: null
    assert json.loads(parsed.output or "")["seats"] == 12


def test_missing_required_field_is_named() -> None:
    parsed = job().parse(json.dumps({"summary": "x"}))
    assert not parsed.ok and parsed.reason is not None
    assert parsed.reason.startswith("fields failed: queue (")
    assert "queue: required field is missing" in parsed.reason
    assert parsed.reask is not None and "queue: required field is missing" in parsed.reask


def test_wrong_type_and_wrong_enum_are_named() -> None:
    parsed = job().parse(json.dumps({**GOOD, "queue": "sales", "seats": "12"}))
    assert not parsed.ok and parsed.reason is not None
    assert parsed.reason.startswith("fields failed: queue, seats (")
    assert "'billing' or 'technical'" in parsed.reason and '(got "12")' in parsed.reason


def test_out_of_bounds_date_and_number_fail() -> None:
    parsed = job().parse(json.dumps({**GOOD, "due": "2026-13-01", "seats": 900}))
    assert not parsed.ok and parsed.reason is not None
    assert "fields failed: due, seats" in parsed.reason


def test_json_that_does_not_parse_is_rejected_with_the_reason() -> None:
    parsed = job().parse('{"queue": "billing", "summary": "x"')
    assert not parsed.ok and parsed.reason is not None
    assert parsed.reason.startswith("answer is not valid JSON")
    assert job().parse("I cannot help with that.").reason == (
        "answer 'I cannot help with that.' holds no JSON object"
    )


def test_answer_far_longer_than_the_schema_allows_is_rejected() -> None:
    kind = job({"queue": FIELDS["queue"]})
    parsed = kind.parse(json.dumps({"queue": "billing", "note": "x" * 5000}))
    assert not parsed.ok and parsed.reason is not None
    assert "far longer than the schema allows" in parsed.reason


def test_string_over_its_max_length_fails() -> None:
    parsed = job().parse(json.dumps({**GOOD, "summary": "word " * 20}))
    assert not parsed.ok and parsed.reason is not None and "summary" in parsed.reason


def test_prompt_lists_fields_and_schema_travels_with_the_request() -> None:
    kind = job()
    system = kind.build_messages("text")[0].content
    assert "- queue (one of billing | technical; required): Team." in system
    assert "- due (date; optional)" in system
    schema = json.loads(kind.output_schema().schema)
    assert schema["required"] == ["queue", "summary"]
    assert schema["properties"]["due"]["type"] == ["string", "null"]
    assert kind.max_output_tokens() > kind.estimate_output_tokens() > 10


# --- typed columns ----------------------------------------------------------------------


def test_typed_columns_round_trip_through_parquet() -> None:
    kind = job()
    full = {
        **GOOD,
        "amount": 12.5,
        "refund": True,
        "tags": ["vat"],
        "contact": {"name": "Ana", "since": "2024-02-29"},
    }
    outputs = [kind.parse(json.dumps(full)).output, kind.parse(json.dumps(GOOD)).output]
    table = kind.typed_columns(outputs)
    assert table.schema.field("out_queue").type == pa.dictionary(pa.int32(), pa.string())
    assert table.schema.field("out_due").type == pa.date32()
    buf = io.BytesIO()
    pq.write_table(table, buf)
    df = pl.read_parquet(buf.getvalue())
    assert df["out_queue"].dtype == pl.Categorical
    assert df["out_due"].to_list() == [dt.date(2026, 12, 3)] * 2
    assert df["out_amount"].to_list() == [12.5, None]
    assert df["out_tags"].to_list() == [["vat"], None]
    assert df["out_contact"].to_list()[0] == {"name": "Ana", "since": dt.date(2024, 2, 29)}
    counts = df.group_by("out_queue").len()
    assert counts.filter(pl.col("out_queue") == "billing")["len"].item() == 2
    assert kind.typed_columns([]).num_rows == 0


def test_validate_command_names_the_field_of_an_unusable_schema(tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from pipeline.cli.app import app

    doc = spec_with({"kind": "extract", "fields": {"queue": {"type": "enum", "values": []}}})
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc))
    done = CliRunner().invoke(app, ["validate", str(path)])
    assert done.exit_code == 2
    assert "task.extract.fields.queue" in done.output and "needs `values`" in done.output


def test_unit_tables_carry_the_typed_columns_even_for_a_unit_of_errors() -> None:
    from pipeline.calls.outcome import RowOutcome
    from pipeline.engine.outputs import results_schema, unit_tables
    from schemas.prices import load_prices

    kind = job()
    ok = RowOutcome(id="a", tier="cheap", ok=True, output=kind.parse(json.dumps(GOOD)).output)
    bad = RowOutcome(id="b", tier="cheap", ok=False, error_type="invalid_output", message="x")
    for outcomes in ([ok, bad], [bad]):
        results, _, errors = unit_tables(0, outcomes, load_prices(), kind)
        assert results.schema == results_schema(kind)  # one schema for every unit's file
        assert results.num_rows + errors.num_rows == len(outcomes)
    results, _, _ = unit_tables(0, [ok], load_prices(), kind)
    assert results.column("out_seats").to_pylist() == [12]
