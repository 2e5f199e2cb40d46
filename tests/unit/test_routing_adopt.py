"""The nightly retrain adopts a new router only when it predicts better on rows it did not
train on, with the stated confidence; otherwise the router in use stays where it is."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.cli.router import router_train_command
from pipeline.routing.adopt import compare, holdout_split
from pipeline.routing.learned import RouterModel
from pipeline.routing.train import FitOptions, TrainingDataError, fit_router, from_two_file
from tests.unit.test_routing_learned import TIERS, write_two_file

TIER_ARG = "cheap=m-cheap,mid=m-mid,flagship=m-flag"


def _stale(folder: Path, seed: int) -> None:
    """Recorded answers from a world that changed: the cheap model used to answer the hard
    rows and fail the easy ones (the reverse of now)."""
    write_two_file(folder, n=400, seed=seed)
    responses = pl.read_parquet(folder / "responses.parquet")
    flipped = pl.when(pl.col("model") == "m-cheap").then(1.0 - pl.col("correct"))
    responses.with_columns(flipped.otherwise(pl.col("correct")).alias("correct")).write_parquet(
        folder / "responses.parquet"
    )


def test_a_router_trained_on_a_changed_world_is_replaced(tmp_path: Path) -> None:
    _stale(tmp_path / "old", seed=1)
    current = tmp_path / "models" / "router.npz"
    router_train_command(tmp_path / "old", current, tiers=TIER_ARG, folds=3, echo=lambda _: None)
    before = current.read_bytes()

    write_two_file(tmp_path / "now", n=400, seed=2)
    lines: list[str] = []
    router_train_command(
        tmp_path / "now", current, tiers=TIER_ARG, folds=3, against=str(current),
        echo=lines.append,
    )  # fmt: skip
    assert current.read_bytes() != before
    assert lines[-1].startswith("adopted: Brier")
    adoption = RouterModel.load(current).info["adoption"]
    assert adoption["adopt"] and adoption["brier_candidate"] < adoption["brier_current"]
    assert adoption["improvement_lower"] > 0


def test_a_new_router_that_is_not_better_with_confidence_is_not_adopted(tmp_path: Path) -> None:
    write_two_file(tmp_path / "data", n=400, seed=3)
    current = tmp_path / "router.npz"
    router_train_command(tmp_path / "data", current, tiers=TIER_ARG, folds=3, echo=lambda _: None)
    before = current.read_bytes()
    lines: list[str] = []
    new = tmp_path / "new.npz"
    router_train_command(
        tmp_path / "data", new, tiers=TIER_ARG, folds=3, against=str(current), echo=lines.append
    )
    assert current.read_bytes() == before and not new.exists()
    assert lines[-1].startswith("kept the current router")


def test_routers_for_other_models_or_too_few_rows_are_not_compared(tmp_path: Path) -> None:
    write_two_file(tmp_path, n=200)
    ts = from_two_file(tmp_path, TIERS, [])
    train, held = holdout_split(ts.frame.height, 0.25, seed=0)
    assert len(set(train) | set(held)) == ts.frame.height and not set(train) & set(held)
    model = fit_router(ts.subset(train), FitOptions(folds=3, n_text=2**10))
    other = RouterModel(**{**model.__dict__, "tiers": {**model.tiers, "cheap": "m-other"}})
    with pytest.raises(TrainingDataError, match="different models"):
        compare(other, model, ts.subset(held))
    verdict = compare(model, model, ts.subset(held[:10]))
    assert not verdict.adopt and "at least 30" in verdict.reason
    with pytest.raises(ValueError, match="--holdout"):
        holdout_split(10, 1.5, seed=0)


def test_a_run_says_what_it_read_so_the_retrain_needs_only_its_folder(tmp_path: Path) -> None:
    from pipeline.cli.router import _manifest_input
    from pipeline.jobfolder import JobFolder

    run = tmp_path / "nightly-2026-12-04"
    given = {"uri": "s3://in/2026-12-04/", "id_column": "ticket_id", "text_columns": ["body"]}
    JobFolder.at(str(run)).write_manifest({"job_id": run.name, "input": given})
    assert _manifest_input(str(run)) == ("s3://in/2026-12-04/", "ticket_id", ["body"])
    with pytest.raises(ValueError, match="no job manifest there; give the job's output folder"):
        _manifest_input(str(tmp_path / "elsewhere"))
