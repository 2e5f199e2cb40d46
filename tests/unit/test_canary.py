"""The canary without Ray: the golden set's checks, scoring, the verdict, the forecast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from typer.testing import CliRunner

import pipeline
from pipeline.cli.app import app
from pipeline.drift.canary import (
    CanaryAnswer,
    CanaryTarget,
    canary_targets,
    failure_message,
    score_canary,
)
from pipeline.drift.golden import load_golden
from pipeline.dryrun.canary import forecast_canary
from pipeline.dryrun.forecast import forecast_job
from pipeline.engine.canary import run_canary
from pipeline.engine.plan import job_identity
from pipeline.engine.summary import JobSummary, compare_forecast
from pipeline.errors import ConfigError
from schemas.job import JobSpec, SpecError, parse_spec
from schemas.records import COSTS

LABELS = ["billing", "technical", "account", "other"]


def spec(tmp_path: Path, canary: dict[str, Any] | None = None, **over: Any) -> JobSpec:
    (tmp_path / "in").mkdir(exist_ok=True)
    doc: dict[str, Any] = {
        "name": "nightly",
        "task": {"kind": "classify", "labels": LABELS},
        "input": {"uri": str(tmp_path / "in"), "id_column": "ticket_id",
                  "text_columns": ["subject", "body"]},
        "output": {"uri": str(tmp_path / "out")},
        "providers": {"sim": {"kind": "sim"}},
        "tiers": {"cheap": ["sim/gpt-4o-mini"], "flagship": ["sim/gpt-4o"]},
        "routing": {"canary": canary} if canary is not None else {},
    }  # fmt: skip
    doc.update(over)
    return parse_spec(doc)


def golden(
    tmp_path: Path, rows: list[dict[str, Any]] | None = None, name: str = "g.parquet"
) -> str:
    rows = rows if rows is not None else [
        {"ticket_id": f"G{i}", "subject": "Refund", "body": f"charged twice {i}",
         "label": "Billing" if i % 2 else "technical"}
        for i in range(4)
    ]  # fmt: skip
    path = tmp_path / name
    frame = pl.DataFrame(rows, schema={"ticket_id": pl.String, "subject": pl.String,
                                       "body": pl.String, "label": pl.String})  # fmt: skip
    frame = frame.select([c for c in frame.columns if rows and c in rows[0]] or frame.columns)
    if name.endswith(".csv"):
        frame.write_csv(path)
    elif name.endswith(".jsonl"):
        frame.write_ndjson(path)
    else:
        frame.write_parquet(path)
    return str(path)


# --- the golden set ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["g.parquet", "g.jsonl", "g.csv"])
def test_the_golden_set_reads_in_each_format_with_labels_as_the_task_spells_them(
    tmp_path: Path, name: str
) -> None:
    s = spec(tmp_path, {"data": golden(tmp_path, name=name), "min_accuracy": 0.9})
    g = load_golden(s)
    assert g.ids == ["G0", "G1", "G2", "G3"]
    assert g.labels == ["technical", "billing", "technical", "billing"]
    assert g.texts[0] == "Refund\n\ncharged twice 0"
    assert pipeline.check(s) == []


def test_a_missing_file_is_one_line_naming_it_and_the_fix(tmp_path: Path) -> None:
    s = spec(tmp_path, {"data": str(tmp_path / "nope.parquet"), "min_accuracy": 0.9})
    (problem,) = pipeline.check(s)
    assert problem.startswith("routing.canary.data: ") and "nope.parquet" in problem
    assert "file not found" in problem and "\n" not in problem


def test_a_missing_label_column_names_the_column_and_the_setting(tmp_path: Path) -> None:
    path = golden(tmp_path, [{"ticket_id": "G1", "subject": "a", "body": "b"}])
    s = spec(tmp_path, {"data": path, "min_accuracy": 0.9})
    (problem,) = pipeline.check(s)
    assert path in problem and "missing column(s) 'label'" in problem
    assert "routing.canary.label_column" in problem
    # The same file with its label column named in the spec is fine.
    renamed = tmp_path / "r.parquet"
    pl.read_parquet(path).with_columns(answer=pl.lit("billing")).write_parquet(renamed)
    ok = spec(tmp_path, {"data": str(renamed), "min_accuracy": 0.9, "label_column": "answer"})
    assert pipeline.check(ok) == []


def test_an_empty_golden_set_is_refused(tmp_path: Path) -> None:
    s = spec(tmp_path, {"data": golden(tmp_path, []), "min_accuracy": 0.9})
    (problem,) = pipeline.check(s)
    assert "holds no rows" in problem


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([{"ticket_id": "G1", "subject": "a", "body": "b", "label": "refunds"}],
         "labels 'refunds' are not among task.labels"),
        ([{"ticket_id": "G1", "subject": "a", "body": "b", "label": "billing"}] * 2,
         "ids repeat (G1)"),
        ([{"ticket_id": "G1", "subject": "a", "body": "b", "label": None}], "have no 'label'"),
        ([{"ticket_id": "G1", "subject": None, "body": " ", "label": "other"}], "have no text"),
    ],
)  # fmt: skip
def test_labels_ids_and_text_that_do_not_fit_are_named(
    tmp_path: Path, rows: list[dict[str, Any]], expected: str
) -> None:
    s = spec(tmp_path, {"data": golden(tmp_path, rows), "min_accuracy": 0.9})
    (problem,) = pipeline.check(s)
    assert expected in problem, problem


def test_validate_prints_the_problem_and_exits_2(tmp_path: Path) -> None:
    import yaml

    s = spec(tmp_path, {"data": str(tmp_path / "gone.csv"), "min_accuracy": 0.5})
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(s.model_dump(mode="json")))
    done = CliRunner().invoke(app, ["validate", str(path)])
    assert done.exit_code == 2
    assert "routing.canary.data" in done.output and "gone.csv" in done.output


def test_the_spec_refuses_a_canary_it_cannot_score(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="a summary has no single right answer"):
        spec(tmp_path, {"data": "g.parquet", "min_accuracy": 0.9},
             task={"kind": "summarise", "max_words": 20})  # fmt: skip
    with pytest.raises(SpecError, match=r"routing.canary.data: .*\.parquet, \.jsonl, \.csv"):
        spec(tmp_path, {"data": "g.xlsx", "min_accuracy": 0.9})
    with pytest.raises(SpecError, match=r"routing\.canary\.min_accuracy"):
        spec(tmp_path, {"data": "g.csv", "min_accuracy": 1.5})


def test_drift_settings_do_not_change_the_job_id(tmp_path: Path) -> None:
    plain = spec(tmp_path)
    checked = spec(tmp_path, {"data": "g.csv", "min_accuracy": 0.9})
    assert job_identity(plain, []) == job_identity(checked, [])


# --- scoring and the verdict ----------------------------------------------------------


def answers(model: str, tier: str, outputs: list[str | None]) -> list[CanaryAnswer]:
    return [
        CanaryAnswer(f"G{i}", "sim", model, tier, out, None if out else "invalid_output")
        for i, out in enumerate(outputs)
    ]


def test_accuracy_is_right_answers_over_rows_and_the_floor_is_inclusive(tmp_path: Path) -> None:
    s = spec(tmp_path, {"data": golden(tmp_path), "min_accuracy": 0.75})
    g = load_golden(s)  # labels: technical, billing, technical, billing
    got = answers("gpt-4o-mini", "cheap", ["technical", "billing", "billing", None])
    got += answers("gpt-4o", "flagship", ["technical", "billing", "technical", "other"])
    costs = pl.DataFrame(
        {"provider": ["sim"] * 3, "model": ["gpt-4o-mini", "gpt-4o", "gpt-4o"],
         "cost_usd": [0.001, 0.002, 0.003]}
    )  # fmt: skip
    result = score_canary(s, g, got, costs)
    cheap, flagship = result.deployments
    assert (cheap.rows, cheap.correct, cheap.accuracy) == (4, 2, 0.5)
    assert cheap.errors == {"invalid_output": 1} and not cheap.passed
    assert (flagship.correct, flagship.accuracy, flagship.passed) == (3, 0.75, True)
    assert flagship.calls == 2 and flagship.cost_usd == pytest.approx(0.005)
    assert not result.passed and result.cost_usd == pytest.approx(0.006)
    message = failure_message(result)
    assert "sim/gpt-4o-mini (provider sim, model gpt-4o-mini, tier cheap)" in message
    assert "scored 0.500 (2/4 right; 1 invalid_output)" in message
    assert "4 rows, min_accuracy 0.75" in message and "gpt-4o (" not in message


def test_rows_a_deployment_may_not_see_are_left_out_of_its_score(tmp_path: Path) -> None:
    s = spec(tmp_path, {"data": golden(tmp_path), "min_accuracy": 1.0})
    g = load_golden(s)
    got = answers("gpt-4o-mini", "cheap", ["technical", "billing", "technical", "billing"])
    got += [CanaryAnswer("G0", "sim", "gpt-4o", "flagship", None, None, skipped=True)]
    got += answers("gpt-4o", "flagship", [None, "billing", "technical", "billing"])[1:]
    result = score_canary(s, g, got, pl.DataFrame())
    assert result.deployments[1].rows == 3 and result.passed


def test_every_deployment_that_may_answer_is_a_target(tmp_path: Path) -> None:
    s = spec(
        tmp_path,
        tiers={"cheap": ["sim/gpt-4o-mini", "sim/gpt-4.1-nano"], "mid": ["sim/claude-3-haiku"],
               "flagship": ["sim/gpt-4o-mini"]},
        routing={"vote": {"deployments": ["sim/claude-3-haiku", "sim/gpt-5-nano"]}},
    )  # fmt: skip
    # Once each, under the first tier it serves; a voter only in the vote, at the vote's tier.
    assert [(t.tier, t.deployment.name) for t in canary_targets(s)] == [
        ("cheap", "sim/gpt-4o-mini"), ("cheap", "sim/gpt-4.1-nano"),
        ("mid", "sim/claude-3-haiku"), ("cheap", "sim/gpt-5-nano"),
    ]  # fmt: skip


def test_a_passed_canary_is_not_asked_again_for_the_same_rows_and_floor(tmp_path: Path) -> None:
    s = spec(tmp_path, {"data": golden(tmp_path), "min_accuracy": 0.5})
    asked: list[int] = []

    def ask(rows: list[Any], targets: list[CanaryTarget]) -> tuple[list[CanaryAnswer], pa.Table]:
        asked.append(len(rows) * len(targets))
        labels = ["technical", "billing", "technical", "billing"]
        got = [
            CanaryAnswer(r[0], "sim", t.deployment.model, t.tier, lab, None)
            for t in targets
            for r, lab in zip(rows, labels, strict=True)
        ]
        return got, COSTS.empty_table()

    first = run_canary(s, str(tmp_path / "out"), "nightly-1", ask)
    assert first.passed and not first.reused and asked == [8]
    again = run_canary(s, str(tmp_path / "out"), "nightly-1", ask)
    assert again.reused and asked == [8]
    stricter = spec(tmp_path, {"data": golden(tmp_path), "min_accuracy": 0.9})
    run_canary(stricter, str(tmp_path / "out"), "nightly-1", ask)
    assert asked == [8, 8]  # another floor: asked again
    written = pl.read_parquet(tmp_path / "out" / "nightly-1" / "_canary" / "answers.parquet")
    assert written.height == 8 and written["correct"].all()


def test_a_broken_golden_set_stops_the_run_before_anything_is_asked(tmp_path: Path) -> None:
    s = spec(tmp_path, {"data": str(tmp_path / "missing.jsonl"), "min_accuracy": 0.5})

    def ask(rows: list[Any], targets: list[CanaryTarget]) -> tuple[list[CanaryAnswer], pa.Table]:
        raise AssertionError("asked")

    with pytest.raises(ConfigError, match=r"missing\.jsonl: file not found"):
        run_canary(s, str(tmp_path / "out"), "nightly-1", ask)


# --- the forecast ---------------------------------------------------------------------


def test_the_forecast_counts_rows_times_deployments_in_its_total(tmp_path: Path) -> None:
    from tests.integration.helpers import write_shards

    write_shards(tmp_path / "in", shards=1, rows=40)
    plain = spec(tmp_path)
    checked = spec(tmp_path, {"data": golden(tmp_path), "min_accuracy": 0.9})
    prices = checked.price_table()
    canary = forecast_canary(checked, prices)
    assert canary is not None and canary.rows == 4 and canary.calls == 8
    assert [d.deployment for d in canary.deployments] == ["sim/gpt-4o-mini", "sim/gpt-4o"]
    assert canary.cost_usd.p50 > 0
    without = forecast_job(plain, parallel=False, write=False)
    with_canary = forecast_job(checked, parallel=False, write=False)
    assert with_canary.cost_usd.p50 == pytest.approx(without.cost_usd.p50 + canary.cost_usd.p50)
    assert any(m.startswith("canary: 4 golden rows") for m in with_canary.method)
    # Set against a run, the forecast's rows are compared with the rows' spend.
    doc = with_canary.model_dump(mode="json")
    summary = JobSummary.model_construct(cost_usd=without.cost_usd.p50, wall_s=1.0)
    assert compare_forecast(doc, summary)["cost_error_pct"] == pytest.approx(0.0, abs=1e-9)
