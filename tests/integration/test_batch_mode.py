"""run.mode batch: every call through the provider's batch API, at the batch price, with
the same ledger (one row per id, cost rows that add up) as a synchronous run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline.engine.driver import run_job
from pipeline.engine.verify import verify_job
from pipeline.jobfolder import BATCHES_DIR
from pipeline.store import Store
from tests.integration.helpers import read_all, spec_for, write_shards

pytestmark = pytest.mark.integration

# A "10-minute" batch that takes a fraction of a second here.
FAST_BATCHES = {"time_scale": 1000.0, "validate_s": 1.0, "turnaround_s": 60.0, "finalize_s": 1.0}


def _spec(tmp_path: Path, out: str, mode: str, **run: Any) -> Any:
    sim = {"latency_ms": 2, "jitter_ms": 1, "batches": FAST_BATCHES}
    return spec_for(
        str(tmp_path / "in"),
        str(tmp_path / out),
        providers={"sim": {"kind": "sim", "sim": sim}},
        cache="off",
        run={"workers": 2, "max_in_flight": 32, "mode": mode, "batch_poll_s": 0.05, **run},
    )


def test_batch_mode_costs_the_batch_price_and_loses_nothing(
    tmp_path: Path, ray_local: None
) -> None:
    write_shards(tmp_path / "in", shards=2, rows=60)
    sync = run_job(_spec(tmp_path, "sync", "sync"))
    batch = run_job(_spec(tmp_path, "batch", "batch"))
    assert sync.status == batch.status == "complete"
    assert batch.rows_ok + batch.rows_error == sync.rows_ok + sync.rows_error == 120

    costs = read_all(Store.open(str(tmp_path / "batch" / batch.job_id)), "costs")
    paid = costs.filter(pl.col("call_status").is_in(["ok", "invalid_output", "escalated"]))
    assert paid.height > 0 and set(paid["mode"].to_list()) == {"batch"}
    # Same requests, same tokens; the batch API bills half (cached input aside).
    assert 0.45 <= batch.cost_usd / sync.cost_usd <= 0.52
    assert abs(float(costs["cost_usd"].sum()) - batch.cost_usd) < 1e-9
    report = verify_job(str(tmp_path / "batch" / batch.job_id))
    assert report.ok, report.problems
    # Every batch was journalled in the job folder before it was polled.
    journal = Store.open(str(tmp_path / "batch" / batch.job_id)).list_files(BATCHES_DIR)
    assert journal


def test_auto_mode_without_time_for_a_batch_calls_synchronously(
    tmp_path: Path, ray_local: None
) -> None:
    write_shards(tmp_path / "in", shards=1, rows=30)
    # An hour expected per batch, a deadline in ten minutes: batching cannot make it.
    summary = run_job(_spec(tmp_path, "auto", "auto", deadline="10m"))
    assert summary.status == "complete"
    costs = read_all(Store.open(str(tmp_path / "auto" / summary.job_id)), "costs")
    assert set(costs["mode"].to_list()) == {"sync"}
