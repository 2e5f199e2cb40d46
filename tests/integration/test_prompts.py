"""Prompt variants in a real job (results and cost rows carry the version each call sent)
and `tierline eval` end to end, both against the built-in simulator."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from jobs.base import get_job_kind
from pipeline.cli.app import app
from pipeline.engine.driver import run_job
from pipeline.store import Store
from tests.integration.helpers import TOPICS, read_all, spec_for, write_shards

pytestmark = pytest.mark.integration

VARIANTS = {
    "default": "Classify the support ticket by its main topic; labels: {labels}.",
    "claude": "You sort support tickets. Choose from {labels}.",
    "gpt-4o-mini": "Pick the ticket's topic from {labels}.",
}


def test_results_and_costs_record_the_prompt_version_of_each_model(
    tmp_path: Path, ray_local: None
) -> None:
    write_shards(tmp_path / "in", shards=1, rows=60, row_group=30)
    task = {"kind": "classify", "labels": list(TOPICS), "prompts": VARIANTS}
    spec = spec_for(str(tmp_path / "in"), str(tmp_path / "out"), task=task)
    kind = get_job_kind(spec.task)

    summary = run_job(spec)

    out = Store.open(str(tmp_path / "out")).child(summary.job_id)
    results, costs = read_all(out, "results"), read_all(out, "costs")
    # Rules send rows to every tier: three models, three variants, three versions.
    expected = {m: kind.prompt(m).version for m in ("gpt-4o-mini", "claude-3-5-haiku", "gpt-4o")}
    assert len(set(expected.values())) == 3
    assert set(results["model"].unique()) == set(expected)
    for frame in (results, costs):
        assert frame["prompt_version"].null_count() == 0
        pairs = frame.select("model", "prompt_version").unique().rows()
        assert sorted(pairs) == sorted(expected.items())
    assert kind.prompt("claude-3-5-haiku").key == "claude"
    assert kind.prompt("gpt-4o").key == "default"


def golden_file(path: Path) -> Path:
    rows = [
        {"ticket_id": f"G-{i}", "subject": f"About {label}", "body": body, "label": label}
        for i, (label, body) in enumerate(TOPICS.items())
    ]
    rows.append(  # labelled wrong on purpose: no model can score it
        {"ticket_id": "G-9", "subject": "Refund", "body": TOPICS["billing"], "label": "account"}
    )
    pl.DataFrame(rows).write_csv(path)
    return path


def test_eval_scores_each_deployment_with_two_prompt_sets_side_by_side(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: eval-demo\n"
        "task:\n  kind: classify\n  labels: [billing, technical, account, other]\n"
        "  instructions: Classify the support ticket by its main topic.\n"
        "input: {uri: in/, id_column: ticket_id, text_columns: [subject, body]}\n"
        "output: {uri: out/}\n"
        "providers:\n  sim:\n    kind: sim\n"
        "    sim: {latency_ms: 1, jitter_ms: 0, models: {gpt-4o-mini: {accuracy: 0.0}}}\n"
        "tiers: {cheap: [sim/gpt-4o-mini], mid: [sim/claude-3-5-haiku], flagship: [sim/gpt-4o]}\n"
        "budget_usd: 1.0\n"
    )
    other = tmp_path / "v2.yaml"
    other.write_text(
        "\n".join(f"{k}: {json.dumps(v)}" for k, v in VARIANTS.items() if k != "gpt-4o-mini")
    )
    golden = golden_file(tmp_path / "golden.csv")
    out_json = tmp_path / "eval.json"

    args = ["eval", str(spec), "--golden", str(golden), "--prompts-from", str(other)]
    result = CliRunner().invoke(app, [*args, "--json", str(out_json)])

    assert result.exit_code == 0, result.output
    report = json.loads(out_json.read_text())
    rows = {(r["deployment"], r["prompt_source"]): r for r in report["rows"]}
    deployments = ["sim/gpt-4o-mini", "sim/claude-3-5-haiku", "sim/gpt-4o"]
    assert sorted(rows) == sorted((d, s) for d in deployments for s in ("spec", "v2.yaml"))
    for r in rows.values():
        assert r["rows"] == 5 and r["calls"] == 5 and r["errors"] == 0
        assert 0.0 <= r["accuracy"] <= 1.0 and r["cost_usd"] > 0
        assert r["accuracy"] == pytest.approx(r["correct"] / r["rows"])
    # Two versions side by side on each deployment; the other set's claude variant is
    # what claude-3-5-haiku got from it.
    for dep in deployments:
        assert rows[(dep, "spec")]["prompt_version"] != rows[(dep, "v2.yaml")]["prompt_version"]
    assert rows[("sim/claude-3-5-haiku", "v2.yaml")]["prompt_key"] == "claude"
    # The simulator's keyword answers scored against the labels: right on the four honest
    # rows, never on the mislabelled one; the model set to answer wrong scores (almost) 0.
    for dep in ("sim/claude-3-5-haiku", "sim/gpt-4o"):
        assert rows[(dep, "spec")]["accuracy"] == pytest.approx(0.8)
        assert rows[(dep, "v2.yaml")]["accuracy"] == pytest.approx(0.8)
    assert rows[("sim/gpt-4o-mini", "spec")]["accuracy"] <= 0.2
    # Priced like any call: the flagship costs more than the cheap model for the same rows.
    assert rows[("sim/gpt-4o", "spec")]["cost_usd"] > rows[("sim/gpt-4o-mini", "spec")]["cost_usd"]
    assert "version" in result.output and "sim/claude-3-5-haiku" in result.output


def test_a_long_documents_map_and_reduce_steps_use_its_models_variant(
    tmp_path: Path, ray_local: None
) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    paragraph = (
        "The review covered the billing outage on Tuesday. An expired certificate on the "
        "payment gateway failed renewals for forty minutes; rotation will be automated.\n\n"
    )
    pl.DataFrame(
        {"doc_id": ["short", "long"], "text": [paragraph * 3, paragraph * 900]}
    ).write_parquet(inp / "docs.parquet")
    prompts = {"gpt-3.5": "Keep every decision and date; at most {max_words} words."}
    spec = spec_for(
        str(inp),
        str(tmp_path / "out"),
        task={"kind": "summarise", "max_words": 40, "prompts": prompts},
        input={"uri": str(inp), "id_column": "doc_id", "text_columns": ["text"]},
        providers={"sim": {"kind": "sim", "sim": {"latency_ms": 1}}},
        tiers={"cheap": ["sim/gpt-3.5-turbo"], "flagship": ["sim/gpt-4-1106-preview"]},
        routing={"policy": "rules", "default": "cheap"},
        run={"workers": 1},
    )
    version = get_job_kind(spec.task).prompt("gpt-3.5-turbo").version
    summary = run_job(spec)
    out = Store.open(summary.output)
    results, costs = read_all(out, "results"), read_all(out, "costs")
    assert set(costs.filter(pl.col("id") == "long")["step"].to_list()) == {"map", "reduce"}
    assert set(costs["prompt_version"].to_list()) == {version}
    assert set(results["prompt_version"].to_list()) == {version}
