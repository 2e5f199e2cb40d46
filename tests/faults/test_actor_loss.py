"""The loss of an actor that is not a worker: the job stops with a reason, or survives.

A lost worker is replaced and its unit redone (`test_fault_matrix`); a lost budget actor
is not a lost worker: the job stops within seconds naming it, and the same command run
again finishes the job without paying twice for an answer.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from pipeline.engine.driver import run_job
from pipeline.engine.summary import JobSummary
from tests.faults.test_fault_matrix import (
    TIERS,
    Sim,
    assert_verified,
    commits,
    run_in_background,
    sim_provider,
    wait_for,
)
from tests.faults.test_fault_matrix import _descends_from as descends_from
from tests.integration.helpers import spec_for, write_shards

pytestmark = pytest.mark.faults


def actor_pids(title: str) -> list[int]:
    """Processes Ray has titled `ray::<title>` in the Ray this test process started."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmd.startswith(f"ray::{title}".encode()) and descends_from(int(entry.name), os.getpid()):
            pids.append(int(entry.name))
    return pids


@pytest.mark.timeout(240)
def test_budget_actor_killed_mid_job_stops_then_rerun_finishes(
    tmp_path: Path,
    ray_local: None,
    sim: Sim,
) -> None:
    data = write_shards(tmp_path / "in", shards=4, rows=150, row_group=50)
    sim.post("/admin/config", {"latency": {"mean_ms": 150, "jitter_ms": 20}})
    spec = spec_for(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        providers=sim_provider(sim),
        tiers=TIERS,
        run={"workers": 2, "max_in_flight": 8},
    )
    thread, box = run_in_background(lambda: run_job(spec))
    wait_for(lambda: len(commits(tmp_path / "out")) >= 1 and bool(actor_pids("JobBudget")))
    killed_at = time.monotonic()
    for pid in actor_pids("JobBudget"):
        os.kill(pid, signal.SIGKILL)
    thread.join(timeout=60)
    assert not thread.is_alive(), "the job did not stop after its budget actor was lost"
    first = box[0]
    assert isinstance(first, JobSummary), first
    if first.status != "complete":
        # Stopped, not looping: within seconds, naming the actor, no worker counted lost.
        assert time.monotonic() - killed_at < 30
        assert first.stopped and "budget actor" in first.stopped, first.stopped
        assert first.workers_lost == 0
    assert_verified(first.output)

    sim.post("/admin/config", {"latency": {"mean_ms": 5, "jitter_ms": 1}})
    second = run_job(spec)
    assert second.status == "complete", second
    assert second.rows_ok + second.rows_error == data.height
    assert_verified(second.output)
    # What the first run was answered for came back from its journal, not the provider:
    # no request was answered twice across the two runs.
    assert sim.stats()["repeated_answers"] == 0
