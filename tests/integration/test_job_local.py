"""A whole job on local folders, on one local Ray, against the built-in simulator."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest

from pipeline.engine.driver import run_job
from pipeline.store import Store
from tests.integration.helpers import read_all, spec_for, write_shards

pytestmark = pytest.mark.integration


def _commit_mtimes(job_dir: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in (job_dir / "_commits").glob("*.json")}


def test_job_on_local_folder_writes_one_row_per_input_id(tmp_path: Path, ray_local: None) -> None:
    data = write_shards(tmp_path / "in")
    spec = spec_for(str(tmp_path / "in"), str(tmp_path / "out"))

    summary = run_job(spec)

    out = Store.open(str(tmp_path / "out")).child(summary.job_id)
    results, errors, costs = (
        read_all(out, "results"),
        read_all(out, "errors"),
        read_all(out, "costs"),
    )
    ids = pl.concat([results["id"], errors["id"]])
    # The invariant: every input id exactly once across results and errors.
    assert ids.n_unique() == ids.len() == data.height
    assert set(ids.to_list()) == set(data["ticket_id"].to_list())

    # Null and empty text are error rows with a reason, not silent drops or calls.
    no_text = data.filter(
        pl.concat_str(
            [pl.col("subject").fill_null(""), pl.col("body").fill_null("")]
        ).str.strip_chars()
        == ""
    )
    assert no_text.height > 0
    empty = errors.filter(pl.col("error_type") == "empty_text")
    assert sorted(empty["id"].to_list()) == sorted(no_text["ticket_id"].to_list())
    assert not costs.filter(pl.col("id").is_in(no_text["ticket_id"].to_list())).height

    # Rules: high priority goes to the flagship, long bodies to mid, the rest cheap.
    joined = results.join(data.rename({"ticket_id": "id"}), on="id")
    high = joined.filter(pl.col("priority") == "high")
    assert set(high["model"].to_list()) == {"gpt-4o"}
    long_normal = joined.filter(
        (pl.col("priority") != "high") & (pl.col("body").str.len_chars() > 1500)
    )
    assert long_normal.height and set(long_normal["tier"].to_list()) == {"mid"}
    # The simulator's keyword labels match the topic the tickets were written about.
    assert (joined["output"] == joined["expected"]).mean() > 0.9  # type: ignore[operator]

    # Every cent: cost rows sum to the summary, and the summary file agrees with the run.
    assert costs["cost_usd"].sum() == pytest.approx(summary.cost_usd)
    assert costs.height == summary.calls and summary.cost_usd > 0
    on_disk = json.loads((tmp_path / "out" / summary.job_id / "summary.json").read_text())
    assert on_disk["rows_total"] == data.height
    assert on_disk["rows_ok"] + on_disk["rows_error"] == data.height
    assert on_disk["status"] == "complete"
    assert 0 < on_disk["cost_usd"] < on_disk["flagship_baseline_usd"]
    assert set(on_disk["by_tier"]) >= {"cheap", "mid", "flagship"}


def test_rerun_skips_committed_units_and_redoes_only_the_missing(
    tmp_path: Path, ray_local: None
) -> None:
    write_shards(tmp_path / "in", shards=2, rows=100)
    spec = spec_for(str(tmp_path / "in"), str(tmp_path / "out"))
    first = run_job(spec)
    job_dir = tmp_path / "out" / first.job_id
    before = _commit_mtimes(job_dir)
    assert len(before) == first.units_total

    # Same command again: same job id, nothing rewritten, same totals.
    again = run_job(spec)
    assert again.job_id == first.job_id
    assert _commit_mtimes(job_dir) == before
    assert (again.rows_ok, again.rows_error, again.calls) == (
        first.rows_ok,
        first.rows_error,
        first.calls,
    )
    assert again.cost_usd == pytest.approx(first.cost_usd)

    # Lose one marker (a crash before it was written): only that unit is done again.
    victim = sorted(before)[1]
    os.remove(job_dir / "_commits" / victim)
    third = run_job(spec)
    after = _commit_mtimes(job_dir)
    assert {k for k in after if after[k] != before.get(k)} == {victim}
    results = read_all(Store.open(str(job_dir)), "results")
    errors = read_all(Store.open(str(job_dir)), "errors")
    ids = pl.concat([results["id"], errors["id"]])
    assert ids.n_unique() == ids.len() == third.rows_total
