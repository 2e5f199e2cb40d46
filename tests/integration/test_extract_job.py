"""An extract job end to end on one local Ray against the simulator: typed columns in
the results files, re-asks and escalations in the ledger, error rows naming the fields,
and the same in batch mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.engine.driver import run_job
from pipeline.engine.verify import verify_job
from pipeline.store import Store
from tests.integration.helpers import read_all, spec_for, write_shards

pytestmark = pytest.mark.integration

TASK = {
    "kind": "extract",
    "instructions": "Read the support ticket.",
    "fields": {
        "queue": {
            "type": "enum",
            "values": ["billing", "technical", "account", "other"],
            "description": "The team for the ticket.",
        },
        "case": {"type": "integer", "required": False, "description": "The case number."},
        "summary": {"type": "string", "max_length": 120, "description": "The gist."},
    },
}
FAST_BATCHES = {"time_scale": 1000.0, "validate_s": 1.0, "turnaround_s": 60.0, "finalize_s": 1.0}


def _spec(tmp_path: Path, out: str, models: dict[str, Any], **extra: Any) -> Any:
    sim = {"latency_ms": 2, "jitter_ms": 1, "models": models, "batches": FAST_BATCHES}
    return spec_for(
        str(tmp_path / "in"),
        str(tmp_path / out),
        task=TASK,
        providers={"sim": {"kind": "sim", "sim": sim}},
        routing={"policy": "cascade", "default": "cheap"},
        cache="off",
        **extra,
    )


def test_extract_job_writes_typed_columns_and_names_failing_fields(
    tmp_path: Path, ray_local: None
) -> None:
    data = write_shards(tmp_path / "in", shards=2, rows=60)
    models = {
        "gpt-4o-mini": {"extract": {"invalid_json_rate": 0.3}},
        # Everything above cheap leaves out a required field: rows that fail twice on
        # cheap end as error rows, whatever tier they reach.
        "claude-3-5-haiku": {"extract": {"missing_required_rate": 1.0}},
        "gpt-4o": {"extract": {"missing_required_rate": 1.0}},
    }
    summary = run_job(_spec(tmp_path, "out", models))
    job_dir = tmp_path / "out" / summary.job_id
    report = verify_job(str(job_dir))  # every input id exactly once, nothing doubled
    assert report.ok and summary.rows_ok + summary.rows_error == data.height
    out = Store.open(str(job_dir))
    results, errors = read_all(out, "results"), read_all(out, "errors")
    costs = read_all(out, "costs")

    # One typed column per field, straight from the files.
    schema = pq.read_schema(next((job_dir / "results").glob("*.parquet")))
    assert schema.field("out_queue").type == pa.dictionary(pa.int32(), pa.string())
    assert schema.field("out_case").type == pa.int64()
    joined = results.join(data.rename({"ticket_id": "id"}), on="id")
    assert (joined["out_queue"].cast(pl.String) == joined["expected"]).mean() > 0.9  # type: ignore[operator]
    by_queue = results.group_by("out_queue").len()
    assert by_queue["len"].sum() == results.height and by_queue.height == 4

    # Re-asks and their failures are cost rows; the rows that never validated name the field.
    statuses = set(costs["call_status"].to_list())
    assert {"reasked", "ok"} <= statuses
    invalid = errors.filter(pl.col("error_type") == "invalid_output")
    assert invalid.height > 0
    assert all(m.startswith("fields failed: queue") for m in invalid["message"].to_list())
    assert set(invalid["tier"].to_list()) == {"flagship"}
    assert costs["cost_usd"].sum() == pytest.approx(summary.cost_usd)


def test_extract_in_batch_mode_validates_the_same_answers(tmp_path: Path, ray_local: None) -> None:
    write_shards(tmp_path / "in", shards=1, rows=40)
    models = {"gpt-4o-mini": {"extract": {"wrong_enum_rate": 0.2}}}
    batch = _spec(
        tmp_path,
        "batch",
        models,
        run={"workers": 1, "max_in_flight": 16, "mode": "batch", "batch_poll_s": 0.05},
    )
    summary = run_job(batch)
    assert summary.status == "complete"
    out = Store.open(str(tmp_path / "batch" / summary.job_id))
    results, costs = read_all(out, "results"), read_all(out, "costs")
    assert results.height + read_all(out, "errors").height == 40
    assert results["out_queue"].null_count() == 0 and results.height > 30
    asked = costs.filter(pl.col("call_status").is_in(["ok", "reasked"]))
    assert set(asked["mode"].to_list()) == {"batch"}
    assert "reasked" in set(costs["call_status"].to_list())


def test_eval_scores_an_extract_spec_one_field_at_a_time(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from pipeline.cli.app import app
    from tests.integration.helpers import TOPICS

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "eval-extract",
                "task": TASK,
                "input": {"uri": "in/", "id_column": "ticket_id", "text_columns": ["body"]},
                "output": {"uri": "out/"},
                "providers": {
                    "sim": {
                        "kind": "sim",
                        "sim": {
                            "latency_ms": 1,
                            "jitter_ms": 0,
                            # Every cheap answer leaves out a required field.
                            "models": {"gpt-4o-mini": {"extract": {"missing_required_rate": 1}}},
                        },
                    }
                },
                "tiers": {"cheap": ["sim/gpt-4o-mini"], "flagship": ["sim/gpt-4o"]},
                "budget_usd": 1.0,
            },
            sort_keys=False,  # the fields in the task's order
        )
    )
    rows = [
        {"ticket_id": f"G-{i}", "body": f"{body} (case {10 + i}).", "queue": queue, "case": 10 + i}
        for i, (queue, body) in enumerate(TOPICS.items())
    ]
    rows.append(  # the queue labelled wrong on purpose: no model can score it
        {"ticket_id": "G-9", "body": TOPICS["billing"] + " (case 19).", "queue": "account",
         "case": 19}
    )  # fmt: skip
    golden = tmp_path / "golden.csv"
    pl.DataFrame(rows).write_csv(golden)
    out_json = tmp_path / "eval.json"

    args = ["eval", str(spec), "--golden", str(golden), "--json", str(out_json)]
    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    report = {r["deployment"]: r for r in json.loads(out_json.read_text())["rows"]}
    flagship, cheap = report["sim/gpt-4o"], report["sim/gpt-4o-mini"]
    # Scored one field at a time: the case numbers are all right, the mislabelled queue not.
    assert flagship["field_accuracy"] == {"queue": 0.8, "case": 1.0}
    assert flagship["accuracy"] == 0.8 and flagship["errors"] == 0 and flagship["calls"] == 5
    # Answers that never validate are error rows, wrong in every field; both asks are billed.
    assert cheap["field_accuracy"] == {"queue": 0.0, "case": 0.0} and cheap["errors"] == 5
    assert cheap["calls"] == 10 and cheap["cost_usd"] > 0
    assert "per field: queue 0.800, case 1.000" in result.output
    assert "scored per field" in result.output


def _readme_blocks(language: str) -> list[str]:
    """The `language` code blocks of the README's structured extraction section."""
    import re

    text = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = text.split("### Structured extraction", 1)[1].split("\n### ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.DOTALL)


def test_the_readmes_queries_run_on_the_example_jobs_output(
    tmp_path: Path, ray_local: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    repo = Path(__file__).parents[2]
    doc = yaml.safe_load((repo / "jobs/examples/extract-tickets.yaml").read_text())
    (tmp_path / "in").mkdir()
    tickets = pl.read_parquet(repo / "jobs/examples/data/tickets").sort("ticket_id").head(80)
    tickets.write_parquet(tmp_path / "in" / "tickets.parquet")
    doc["input"]["uri"] = str(tmp_path / "in")
    doc["output"]["uri"] = str(tmp_path / "tierline-out")  # where the README looks
    doc["providers"]["sim"]["sim"]["latency_ms"] = 2
    doc["cache"] = "off"
    doc["run"] = {"workers": 1}
    from schemas.job import parse_spec

    summary = run_job(parse_spec(doc))
    assert summary.rows_ok > 60
    results = read_all(Store.open(summary.output), "results")
    monkeypatch.chdir(tmp_path)  # the README's paths are relative to where the job ran

    (sql,) = _readme_blocks("sql")
    rows = duckdb.sql(sql).fetchall()
    assert sum(n for _, _, n in rows) == results.height
    expected = results.group_by("out_queue", "out_priority").len()
    assert sorted((q, p, n) for q, p, n in rows) == sorted(
        (str(q), str(p), n) for q, p, n in expected.iter_rows()
    )
    assert {q for q, _, _ in rows} <= {"billing", "technical", "account", "other"}

    (code,) = _readme_blocks("python")
    scope: dict[str, Any] = {}
    exec(compile(code.replace("\nr.group_by", "\nanswer = r.group_by"), "README", "exec"), scope)
    assert scope["answer"]["len"].sum() == results.height
