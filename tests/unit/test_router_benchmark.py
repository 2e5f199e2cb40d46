"""The router benchmark's pipeline run: the job spec it builds and how it scores outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.routing.calibrate import Outcomes
from schemas.job import parse_spec
from tests.benchmarks import router as bench

TIERS = {"cheap": "small", "mid": "medium", "flagship": "large"}


def test_spec_runs_the_learned_policy_with_or_without_the_agreement_cascade(
    tmp_path: Path,
) -> None:
    for agree in (False, True):
        case = bench.PipelineCase("x", tmp_path / "router.npz", 0.25, agree)
        doc = bench.pipeline_spec(
            case, tmp_path / "data", tmp_path / "in", tmp_path / "out", TIERS, []
        )
        spec = parse_spec(doc)
        assert spec.routing.policy == "learned" and spec.routing.threshold == 0.25
        assert spec.task.kind == "generate" and spec.cache == "off"
        if agree:
            assert spec.routing.cascade is not None and spec.routing.cascade.agree is not None
            assert [d.name for d in spec.routing.cascade.agree] == ["sim/small", "sim/medium"]
        else:
            assert spec.routing.cascade is None


def test_scores_the_kept_answer_and_every_billed_call() -> None:
    frame = pl.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "correct_cheap": [1.0, 0.0, 1.0, 0.0],
            "correct_mid": [1.0, 1.0, 0.0, 0.0],
            "correct_flagship": [1.0, 1.0, 1.0, 1.0],
            "cost_cheap": [1.0] * 4,
            "cost_mid": [2.0] * 4,
            "cost_flagship": [10.0] * 4,
        }
    )
    outcomes = Outcomes(correct=np.zeros((4, 3)), cost=np.zeros((4, 3)))
    test = bench.TestSet(frame, outcomes, {})
    # a: cheap kept after agreeing (cheap + mid billed); b: disagreed, flagship kept;
    # c: mid alone; d: an error row (counts wrong), one failed-but-billed call.
    results = pl.DataFrame({"id": ["a", "b", "c"], "model": ["small", "large", "medium"]})
    costs = pl.DataFrame(
        {
            "id": ["a", "a", "b", "b", "b", "c", "d"],
            "model": ["small", "medium", "small", "medium", "large", "medium", "small"],
        }
    )
    acc, cost = bench.score_job(test, TIERS, results, costs)
    assert acc == (1 + 1 + 0 + 0) / 4
    assert cost == (1 + 2) + (1 + 2 + 10) + 2 + 1


def test_target_is_both_floors() -> None:
    assert bench.meets_target({"pct_flagship_accuracy": 95.0, "pct_flagship_cost": 35.0})
    assert not bench.meets_target({"pct_flagship_accuracy": 94.9, "pct_flagship_cost": 20.0})
    assert not bench.meets_target({"pct_flagship_accuracy": 99.0, "pct_flagship_cost": 35.1})


# --- the tuner's figures ---------------------------------------------------------------------


def test_tuned_row_scores_the_pick_on_other_rows() -> None:
    from pipeline.routing.tune import tune
    from tests.unit.test_routing_tune import synthetic

    train, test = synthetic(600, seed=1, texts=False), synthetic(400, seed=2, texts=False)
    result = tune(train, target=0.95, split=None)
    row = bench.tuned_row(result, test, "test")
    flag = test.models.index(result.flagship)
    assert row["pct_flagship_cost"] < 100.0 and row["rows"] == 400
    assert row["pct_flagship_accuracy"] == pytest.approx(
        100 * row["accuracy"] / test.correct[:, flag].mean()
    )
    assert bench.met_tuned_target({"pct_flagship_accuracy": 95.0})
    assert not bench.met_tuned_target({"pct_flagship_accuracy": 94.9})


def test_resplit_coverage_and_cross_task_on_synthetic_rows() -> None:
    from tests.unit.test_routing_tune import synthetic

    data = synthetic(700, seed=3, texts=False)
    g = bench.resplit_coverage(data, resplits=6, train_share=0.7, confidence=0.8)
    assert g["stated_confidence"] == 0.8 and g["resplits"] == 6
    assert g["coverage"] is not None and 0.0 <= g["coverage"] <= 1.0
    assert g["cannot_promise"] + sum(g["picked_kinds"].values()) == 6
    crossed = bench.cross_task(data, "eval_name")
    assert set(crossed) == {
        f"{a}_to_{b}" for a in ("easy", "hard", "mid") for b in ("easy", "hard", "mid") if a != b
    }
    for row in crossed.values():
        assert "pct_flagship_cost" in row
