"""The forecast of an extract job: the schema's tokens in every request, re-asks from
earlier runs (or a stated default) on the same model, escalations counted apart."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from jobs.base import framing_tokens, get_job_kind
from pipeline.dryrun.history import observed_escalation
from pipeline.dryrun.reasks import DEFAULT_REASK_RATE, reask_rate, with_reasks
from pipeline.dryrun.sums import ForecastUsage
from pipeline.tokens import count_tokens
from schemas.job import parse_spec

FIELDS = {"queue": {"type": "enum", "values": ["billing", "technical"]}}


def spec(task: dict[str, Any]) -> Any:
    return parse_spec(
        {
            "name": "x",
            "task": task,
            "input": {"uri": "in/", "id_column": "id", "text_columns": ["text"]},
            "output": {"uri": "out/"},
            "providers": {"sim": {"kind": "sim"}},
            "tiers": {"cheap": ["sim/gpt-4o-mini"]},
        }
    )


def test_requests_count_the_schema_tokens() -> None:
    kind = get_job_kind(spec({"kind": "extract", "fields": FIELDS}).task)
    schema = kind.output_schema()
    assert schema is not None
    without = sum(count_tokens(m.content, "gpt-4o") for m in kind.build_messages("", "gpt-4o"))
    assert framing_tokens(kind, "gpt-4o") > without + count_tokens(schema.schema, "gpt-4o") - 1


def test_reask_rate_is_observed_in_earlier_runs_else_a_stated_default() -> None:
    s = spec({"kind": "extract", "fields": FIELDS})
    calls = pl.DataFrame(
        {
            "id": ["a", "a", "b", "c", "c", "c"],
            "call_status": ["reasked", "ok", "ok", "reasked", "invalid_output", "ok"],
        }
    )
    assert reask_rate(s, calls) == (pytest.approx(2 / 3), "observed in earlier runs of the spec")
    assert reask_rate(s, None)[0] == DEFAULT_REASK_RATE
    # Re-asks are not escalations: c's third call is the only call past the first.
    assert observed_escalation(calls) == pytest.approx(1 / 3)
    no_reasks = spec({"kind": "extract", "fields": FIELDS, "reasks": 0})
    assert reask_rate(no_reasks, calls)[0] == 0.0
    assert reask_rate(spec({"kind": "classify", "labels": ["a", "b"]}), calls)[0] == 0.0


def test_reasks_add_calls_on_the_same_model_with_the_answer_quoted() -> None:
    first = ForecastUsage("cheap", "sim", "m", rows=100, calls=100, input_tokens=50_000,
                          out=[2000.0, 4000.0, 6000.0], reserve_tokens=60_000)  # fmt: skip
    both = with_reasks([first], 0.1)
    assert len(both) == 2 and both[1].model == "m" and both[1].tier == "cheap"
    assert both[1].calls == pytest.approx(10) and both[1].rows == 0
    assert both[1].input_tokens > 5000 and both[1].out[1] == pytest.approx(400)
    assert with_reasks([first], 0.0) == [first]


def test_an_extract_cascade_escalates_only_what_fails_its_reask_too() -> None:
    from pipeline.dryrun.reasks import default_escalation

    s = spec({"kind": "extract", "fields": FIELDS})
    rate, note = default_escalation(s) or (None, "")
    assert rate == pytest.approx(DEFAULT_REASK_RATE**2) and "re-asks" in note
    assert default_escalation(spec({"kind": "classify", "labels": ["a", "b"]})) is None
