"""A provider that takes every request and never answers: the run must end, say why, and
lose nothing; the rerun, once the provider answers again, finishes without paying twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.engine.driver import run_job
from tests.faults.test_fault_matrix import TIERS, Sim, assert_verified, sim_provider
from tests.integration.helpers import spec_for, write_shards

pytestmark = pytest.mark.faults


@pytest.mark.timeout(240)
def test_a_provider_that_never_answers_stops_the_run_with_its_reason(
    tmp_path: Path, ray_local: None, sim: Sim
) -> None:
    write_shards(tmp_path / "in", shards=2, rows=60)
    providers = sim_provider(sim, timeouts={"connect_s": 5, "total_s": 600})
    spec = spec_for(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        providers=providers,
        tiers=TIERS,
        run={"stall_timeout_s": 4, "stop_grace_s": 1, "workers": 1},
    )
    # Every request is taken and held (the call's own timeout is ten minutes away).
    sim.post("/admin/config", {"faults": {"hang_rate": 1.0, "max_hang_s": 600}})
    first = run_job(spec)

    assert first.status == "incomplete"
    assert first.stopped is not None and first.stopped.startswith("no progress for")
    assert "calls in flight" in first.stopped and "stall_timeout_s" in first.stopped
    assert first.rows_ok == 0 and first.units_committed == 0

    sim.post("/admin/config", {"faults": {"hang_rate": 0.0}, "latency": {"mean_ms": 5}})
    second = run_job(spec)
    assert second.status == "complete" and second.rows_ok + second.rows_error == 120
    assert_verified(second.output)
    assert sim.stats()["repeated_answers"] == 0
