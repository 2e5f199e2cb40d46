"""The canary before a nightly job spends, and the shift check after it: on the
simulator, through the whole engine, with what a user would look at."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from jobs.base import join_text
from pipeline.cli.app import app
from pipeline.engine.driver import run_job
from pipeline.engine.verify import verify_job
from pipeline.errors import CanaryFailed
from pipeline.jobfolder import CANARY_ANSWERS, CANARY_COSTS, CANARY_RESULT, JobFolder
from pipeline.sim.generate import classify
from tests.integration.helpers import TOPICS, spec_for, ticket_frame, write_shards

pytestmark = pytest.mark.integration
LABELS = ("billing", "technical", "account", "other")
DEPLOYMENTS = 3  # one per tier in spec_for


def golden_file(path: Path, n: int = 12) -> Path:
    """n labelled tickets; each label is the right answer (what the simulator's keyword
    classifier gives at accuracy 1), so a healthy deployment scores 1.0."""
    rows = []
    for i in range(n):
        topic = list(TOPICS)[i % len(TOPICS)]
        subject, body = f"Golden {i} about {topic}", TOPICS[topic] + f" (golden {i})."
        text = join_text([subject, body]) or ""
        rows.append(
            {"ticket_id": f"G-{i:03d}", "subject": subject, "body": body,
             "label": classify(text, LABELS)}
        )  # fmt: skip
    pl.DataFrame(rows).write_parquet(path)
    return path


def canary_spec(tmp_path: Path, inp: str = "in", **sim: Any) -> Any:
    return spec_for(
        str(tmp_path / inp),
        str(tmp_path / "out"),
        providers={"sim": {"kind": "sim", "sim": {"latency_ms": 2, "jitter_ms": 1, **sim}}},
        routing={
            "policy": "rules",
            "rules": [
                {"when": "priority = 'high'", "tier": "flagship"},
                {"when": "length(body) > 1500", "tier": "mid"},
            ],
            "default": "cheap",
            "canary": {"data": str(golden_file(tmp_path / "golden.parquet")), "min_accuracy": 0.9},
        },
    )


def test_a_degraded_deployment_stops_the_job_before_any_row_is_called(
    tmp_path: Path, ray_local: None
) -> None:
    write_shards(tmp_path / "in", shards=1, rows=40)
    # The cheap model answers every classify prompt with a wrong label.
    spec = canary_spec(tmp_path, models={"gpt-4o-mini": {"accuracy": 0.0}})
    with pytest.raises(CanaryFailed) as failed:
        run_job(spec)
    message = str(failed.value)
    assert "sim/gpt-4o-mini" in message and "tier cheap" in message
    assert "scored 0.000 (0/12 right)" in message and "min_accuracy 0.9" in message
    assert "gpt-4o (" not in message  # the healthy deployments are not named

    job = next((tmp_path / "out").iterdir())
    folder = JobFolder.at(str(job))
    # Zero real rows called: no unit committed, no result, cost or error file.
    assert folder.commit_markers() == []
    assert all(folder.output_files(k) == [] for k in ("results", "costs", "errors"))
    costs = pl.read_parquet(job / CANARY_COSTS)
    assert set(costs["id"].to_list()) <= {f"G-{i:03d}" for i in range(12)}
    assert costs.height == 12 * DEPLOYMENTS and (costs["cost_usd"] > 0).all()
    summary = json.loads((job / "summary.json").read_text())
    assert summary["rows_ok"] == 0 and summary["status"] == "incomplete"
    verdict = {d["deployment"]: d for d in summary["canary"]["deployments"]}
    assert verdict["sim/gpt-4o-mini"]["passed"] is False
    assert verdict["sim/gpt-4o-mini"]["accuracy"] == 0.0
    assert verdict["sim/gpt-4o"]["passed"] and verdict["sim/gpt-4o"]["accuracy"] == 1.0
    assert summary["canary"]["cost_usd"] == pytest.approx(float(costs["cost_usd"].sum()))


def test_the_cli_exits_1_naming_the_deployment(tmp_path: Path, ray_local: None) -> None:
    write_shards(tmp_path / "in", shards=1, rows=20)
    spec = canary_spec(tmp_path, models={"claude-3-5-haiku": {"accuracy": 0.0}})
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    done = CliRunner().invoke(app, ["run", str(path)])
    assert done.exit_code == 1, done.output
    assert "sim/claude-3-5-haiku" in done.output and "tier mid" in done.output


def test_a_passing_canary_runs_the_job_and_the_next_run_flags_a_shift(
    tmp_path: Path, ray_local: None
) -> None:
    write_shards(tmp_path / "in", shards=2, rows=60)
    first = run_job(canary_spec(tmp_path))
    assert first.status == "complete" and first.rows_ok > 0
    assert first.canary is not None and first.canary.passed
    assert [d.accuracy for d in first.canary.deployments] == [1.0] * DEPLOYMENTS
    assert first.canary.cost_usd > 0
    # The canary's calls are apart from the job's: the ledger still adds up.
    assert verify_job(first.output).ok
    job = Path(first.output)
    assert (job / CANARY_ANSWERS).exists() and (job / CANARY_RESULT).exists()
    assert first.shift is not None and first.shift.metrics == [] and not first.shift.flagged
    assert "no previous run" in first.shift.note

    # The next night every ticket is urgent: all of it goes to flagship.
    night = ticket_frame(500, 60).with_columns(priority=pl.lit("high"))
    (tmp_path / "in2").mkdir()
    night.write_parquet(tmp_path / "in2" / "part-000.parquet")
    second = run_job(canary_spec(tmp_path, inp="in2"))
    assert second.job_id != first.job_id
    shift = second.shift
    assert shift is not None and shift.previous_job == first.job_id
    by = {m.metric: m for m in shift.metrics}
    assert by["tier_share.flagship"].flagged and by["tier_share.flagship"].now == 1.0
    assert by["tier_share.cheap"].flagged and by["tier_share.cheap"].now == 0.0
    assert not by["escalation_rate"].flagged
    assert "tier_share.flagship" in shift.flagged
    doc = json.loads((Path(second.output) / "summary.json").read_text())
    assert doc["shift"]["flagged"] == shift.flagged

    from pipeline.report.data import build_report
    from pipeline.report.html import render_html

    page = render_html(build_report(second.output))
    assert "Drift" in page and "tier_share.flagship" in page and "flagged" in page
