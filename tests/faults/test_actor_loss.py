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
from typing import Any

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


@pytest.mark.timeout(240)
def test_simulator_actor_killed_mid_job_stops_naming_it_then_rerun_finishes(
    tmp_path: Path, ray_local: None
) -> None:
    data = write_shards(tmp_path / "in", shards=4, rows=150, row_group=50)
    spec = spec_for(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        providers={"sim": {"kind": "sim", "sim": {"latency_ms": 150, "jitter_ms": 20}}},
        run={"workers": 2, "max_in_flight": 8, "stop_grace_s": 5},
    )
    thread, box = run_in_background(lambda: run_job(spec))
    wait_for(lambda: len(commits(tmp_path / "out")) >= 1 and bool(actor_pids("SimActor")))
    killed_at = time.monotonic()
    for pid in actor_pids("SimActor"):
        os.kill(pid, signal.SIGKILL)
    thread.join(timeout=60)
    assert not thread.is_alive(), "the job did not stop after its simulator was lost"
    first = box[0]
    assert isinstance(first, JobSummary), first
    if first.status != "complete":
        assert time.monotonic() - killed_at < 30
        assert first.stopped and "simulator actor of provider 'sim'" in first.stopped
        assert first.workers_lost == 0
    # Rows whose calls failed because the simulator was gone are not committed as error
    # rows (the rerun asks them); only the input's own empty rows are errors.
    assert set(first.errors_by_type) <= {"empty_text"}, first.errors_by_type
    assert_verified(first.output)

    second = run_job(spec)  # a new simulator, started by the rerun
    assert second.status == "complete", second
    assert second.rows_ok + second.rows_error == data.height
    assert_verified(second.output)


@pytest.mark.timeout(240)
def test_quota_actor_killed_mid_job_restarts_and_the_job_completes(
    tmp_path: Path, ray_local: None, sim: Sim
) -> None:
    data = write_shards(tmp_path / "in", shards=4, rows=150, row_group=50)
    sim.post("/admin/config", {"latency": {"mean_ms": 100, "jitter_ms": 10}})
    spec = spec_for(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        providers=sim_provider(sim, limits={"rpm": 60000, "max_concurrency": 32}),
        tiers=TIERS,
        run={"workers": 2, "max_in_flight": 8},
    )
    thread, box = run_in_background(lambda: run_job(spec))
    wait_for(lambda: len(commits(tmp_path / "out")) >= 1 and bool(actor_pids("QuotaActor")))
    for pid in actor_pids("QuotaActor"):  # detached, restarted by Ray: shared by the session
        os.kill(pid, signal.SIGKILL)
    thread.join(timeout=180)
    summary = box[0]
    assert isinstance(summary, JobSummary), summary
    assert summary.status == "complete" and summary.stopped is None
    assert summary.workers_lost == 0
    assert summary.rows_ok + summary.rows_error == data.height
    assert_verified(summary.output)
    assert sim.stats()["repeated_answers"] == 0


@pytest.mark.timeout(300)
def test_node_lost_with_answered_rows_not_committed_they_are_not_paid_again(
    tmp_path: Path, ray_cluster: Any, sim: Sim
) -> None:
    node = ray_cluster.add_node(num_cpus=2)
    ray_cluster.wait_for_nodes()
    data = write_shards(tmp_path / "in", shards=3, rows=200, row_group=50)
    sim.post("/admin/config", {"latency": {"mean_ms": 100, "jitter_ms": 10}})
    every_rows, in_flight = 4, 4
    spec = spec_for(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        providers=sim_provider(sim),
        tiers=TIERS,
        input={
            "uri": str(tmp_path / "in"),
            "id_column": "ticket_id",
            "text_columns": ["subject", "body"],
            "rows_per_unit": 200,  # one unit per worker, long enough to lose a node mid-way
        },
        run={
            "workers": 4,
            "max_in_flight": in_flight,
            "journal_every_rows": every_rows,
            "journal_every_s": 0.5,
        },
    )
    thread, box = run_in_background(lambda: run_job(spec))
    # Answers have come back on both nodes and no unit has committed yet.
    wait_for(lambda: sim.stats()["total"]["ok"] >= 150, timeout=120)
    assert not commits(tmp_path / "out")
    ray_cluster.remove_node(node)
    thread.join(timeout=240)
    summary = box[0]
    assert isinstance(summary, JobSummary), summary
    assert summary.status == "complete" and summary.rows_total == data.height
    assert_verified(summary.output)
    stats = sim.stats()
    # The lost units were redone; their journalled answers were taken back, not bought
    # again: only what a lost worker had not yet journalled was paid twice.
    assert stats["total"]["ok"] == summary.calls + stats["repeated_answers"]
    per_worker = 2 * every_rows + 2 * in_flight
    assert stats["repeated_answers"] <= summary.workers_lost * per_worker
    if summary.workers_lost:
        assert summary.rows_recovered > 0
