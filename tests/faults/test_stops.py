"""A run ended part-way (killed, or stopped by a signal), then the same command again.

What a user checks afterwards: the rerun finishes, `tierline verify` passes, and the
provider was not paid twice for an answer. The simulator runs in this test process, so
its counters span both runs: `repeated_answers` counts answers to a request it had
already answered (a row paid twice); `ok` counts every answer it gave.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from pipeline.engine.driver import run_job
from pipeline.engine.journal import UnitJournal
from pipeline.engine.verify import verify_job
from pipeline.jobfolder import JobFolder, unit_files
from pipeline.store import Store
from schemas.job import JobSpec
from tests.faults.test_fault_matrix import (
    REPO,
    TIERS,
    Sim,
    assert_verified,
    commits,
    ray_worker_pids,
    sim_provider,
    wait_for,
)
from tests.faults.test_fault_matrix import _descends_from as descends_from
from tests.integration.helpers import spec_for, write_shards
from tests.unit.test_journal import answered

pytestmark = pytest.mark.faults

# Answers a SIGKILL can cost at most: those not yet in the journal (`journal_every_rows`)
# and those the provider sent as the worker died (calls in flight, two units per worker).
EVERY_ROWS = 4
IN_FLIGHT = 4
LOST_AT_MOST = 2 * EVERY_ROWS + 2 * IN_FLIGHT


class Driver:
    """`tierline run SPEC` in its own session (process group), as a user or a pod runs it."""

    def __init__(
        self, tmp_path: Path, spec: dict[str, Any], env: dict[str, str] | None = None
    ) -> None:
        """`env`: the command's environment (default: this process's, without RAY_ADDRESS,
        so the run starts a private Ray)."""
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.spec_file = tmp_path / "spec.yaml"
        self.spec_file.write_text(yaml.safe_dump(spec))
        self.cmd = [sys.executable, "-m", "pipeline.cli.app", "run", str(self.spec_file)]
        self.env = env or {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.log = tmp_path / "driver.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=REPO,
                env=self.env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        return self.proc

    def tail(self) -> str:
        return self.log.read_text()[-3000:]

    def wait(self, timeout: float = 150) -> int:
        """The exit code of the command `start` began; if it does not end, the test reports
        what its processes are doing, then kills them."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stacks = hang_report(self.proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            pytest.fail(f"the run did not end within {timeout:.0f} s\n{stacks}\n{self.tail()}")

    def run_to_end(self, timeout: float = 150) -> subprocess.CompletedProcess[str]:
        """The command (again), to its end; if it does not end, the test reports where it waits:
        the stacks of the driver's threads (faulthandler, on SIGABRT) and of the processes
        of its private Ray (py-spy, where installed)."""
        env = {**self.env, "PYTHONFAULTHANDLER": "1"}
        proc = subprocess.Popen(
            self.cmd,
            cwd=REPO,
            env=env,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stacks = hang_report(proc.pid)
            proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
            try:
                out, err = proc.communicate(timeout=20)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(
                f"the run did not end within {timeout:.0f} s\n{stacks}\n"
                f"driver stderr:\n{err[-12000:]}"
            )
        return subprocess.CompletedProcess(self.cmd, proc.returncode, out, err)


def job_spec(tmp_path: Path, sim: Sim, **run: Any) -> dict[str, Any]:
    write_shards(tmp_path / "in", shards=3, rows=200, row_group=50)
    spec = spec_for(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        providers=sim_provider(sim),
        tiers=TIERS,
        input={
            "uri": str(tmp_path / "in"),
            "id_column": "ticket_id",
            "text_columns": ["subject", "body"],
            "rows_per_unit": 200,  # long units: many answers wait for a commit
        },
        run={
            "workers": 1,
            "max_in_flight": IN_FLIGHT,
            "journal_every_rows": EVERY_ROWS,
            "journal_every_s": 0.5,
            **run,
        },
    )
    return spec.model_dump(mode="json")


def job_folder(tmp_path: Path) -> Path:
    return next(p for p in (tmp_path / "out").iterdir() if not p.name.startswith("_"))


def answers(sim: Sim) -> int:
    return int(sim.stats()["total"]["ok"])


@pytest.mark.timeout(420)
def test_driver_killed_mid_unit_rerun_pays_no_answer_twice(
    tmp_path: Path,
    sim: Sim,
) -> None:
    sim.post("/admin/config", {"latency": {"mean_ms": 100, "jitter_ms": 10}})
    driver = Driver(tmp_path, job_spec(tmp_path, sim))
    proc = driver.start()
    try:
        # Answers have come back, none of their units has committed: before the journal,
        # a crash now threw every one of them away.
        wait_for(lambda: answers(sim) >= 120, timeout=120)
    except TimeoutError:
        raise AssertionError(driver.tail()) from None
    finally:
        workers = ray_worker_pids(root=proc.pid)  # before the kill orphans them
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), timeout=60)
    answered_before = answers(sim)
    committed_before = len(commits(tmp_path / "out"))

    sim.post("/admin/config", {"latency": {"mean_ms": 5, "jitter_ms": 1}})
    rerun = driver.run_to_end()
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    prefix = job_folder(tmp_path)
    assert_verified(str(prefix))
    summary = json.loads((prefix / "summary.json").read_text())
    stats = sim.stats()
    # Every answer the provider gave is one paid call in the cost rows, except the few
    # that were paid twice; and those are only what the kill caught unjournalled.
    assert stats["total"]["ok"] == summary["calls"] + stats["repeated_answers"]
    assert stats["repeated_answers"] <= LOST_AT_MOST, stats["repeated_answers"]
    # The uncommitted answers came back from the journal at $0, not from the provider.
    assert committed_before == 0 or summary["rows_recovered"] > 0
    assert summary["rows_recovered"] >= answered_before - LOST_AT_MOST - 200 * committed_before
    assert not list(prefix.glob("_journal/**/*.jsonl"))  # cleared once its units committed


def descendants(root: int) -> list[int]:
    """Every process under `root` (the driver): its private Ray and that Ray's workers."""
    return [
        int(e.name)
        for e in Path("/proc").iterdir()
        if e.name.isdigit() and descends_from(int(e.name), root)
    ]


def gone(pids: list[int]) -> bool:
    return not any(Path(f"/proc/{pid}").exists() for pid in pids)


@pytest.mark.timeout(420)
def test_sigterm_stops_gracefully_then_rerun_pays_nothing_twice(tmp_path: Path, sim: Sim) -> None:
    sim.post("/admin/config", {"latency": {"mean_ms": 100, "jitter_ms": 10}})
    driver = Driver(tmp_path, job_spec(tmp_path, sim, stop_grace_s=10))
    proc = driver.start()
    try:
        wait_for(lambda: answers(sim) >= 120, timeout=120)
    except TimeoutError:
        proc.kill()
        raise AssertionError(driver.tail()) from None
    ray_processes = descendants(proc.pid)
    signalled = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)  # what Kubernetes sends a pod it drains
    assert proc.wait(timeout=60) == 1, driver.tail()
    assert time.monotonic() - signalled < 10 + 15  # the grace, then a clean end
    stderr = driver.log.read_text()
    lines = [ln for ln in stderr.splitlines() if ln.startswith("stopped by SIGTERM")]
    assert len(lines) == 1, stderr[-3000:]
    assert "answered rows in journals" in lines[0]
    assert f"finish with: tierline run {driver.spec_file}" in lines[0]
    assert "Unclosed client session" not in stderr
    # The private Ray it started is gone with it: no orphaned actor or worker.
    wait_for(lambda: gone(ray_processes), timeout=30)
    answered_before = answers(sim)

    sim.post("/admin/config", {"latency": {"mean_ms": 5, "jitter_ms": 1}})
    rerun = driver.run_to_end()
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    prefix = job_folder(tmp_path)
    assert_verified(str(prefix))
    summary = json.loads((prefix / "summary.json").read_text())
    stats = sim.stats()
    # A graceful stop loses nothing: every answer the provider gave was paid once.
    assert stats["repeated_answers"] == 0
    assert stats["total"]["ok"] == summary["calls"]
    assert summary["rows_recovered"] > 0
    assert answered_before > 0


@pytest.mark.timeout(420)
def test_ctrl_c_twice_stops_at_once_then_rerun_finishes(tmp_path: Path, sim: Sim) -> None:
    sim.post("/admin/config", {"latency": {"mean_ms": 100, "jitter_ms": 10}})
    driver = Driver(tmp_path, job_spec(tmp_path, sim))  # the default 20 s grace
    proc = driver.start()
    try:
        wait_for(lambda: answers(sim) >= 120, timeout=120)
    except TimeoutError:
        proc.kill()
        raise AssertionError(driver.tail()) from None
    ray_processes = descendants(proc.pid)
    # A terminal's Ctrl-C goes to the whole foreground process group.
    os.killpg(proc.pid, signal.SIGINT)
    wait_for(lambda: "stopping: stopped by SIGINT" in driver.log.read_text(), timeout=10)
    again = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 1, driver.tail()
    assert time.monotonic() - again < 15  # not the 20 s grace: at once, then a clean end
    stderr = driver.log.read_text()
    assert sum(ln.startswith("stopped by SIGINT") for ln in stderr.splitlines()) == 1
    assert "Traceback" not in stderr and "Unclosed client session" not in stderr
    wait_for(lambda: gone(ray_processes), timeout=30)
    committed_before = len(commits(tmp_path / "out"))

    sim.post("/admin/config", {"latency": {"mean_ms": 5, "jitter_ms": 1}})
    rerun = driver.run_to_end()
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    prefix = job_folder(tmp_path)
    assert_verified(str(prefix))
    summary = json.loads((prefix / "summary.json").read_text())
    stats = sim.stats()
    # Cut off at once: calls in flight then were paid and not kept, and no others.
    assert stats["total"]["ok"] == summary["calls"] + stats["repeated_answers"]
    assert stats["repeated_answers"] <= 2 * IN_FLIGHT
    assert len(commits(tmp_path / "out")) >= committed_before


def test_journal_left_beside_a_committed_unit_is_noted_then_cleared(
    tmp_path: Path, ray_local: None, sim: Sim
) -> None:
    """A run killed between a unit's marker and the clearing of its journal leaves the
    journal behind. `tierline verify` still passes and counts the same (the marker is
    what counts) and notes it; the next run of the job clears it."""
    spec = JobSpec.model_validate(job_spec(tmp_path, sim))
    first = run_job(spec)
    assert first.status == "complete"
    before = verify_job(first.output)
    assert before.ok and before.stale_journals == []
    # What the kill leaves: unit 1's answers, journalled as they came, beside its marker.
    prefix = Path(first.output)
    ids = pl.read_parquet(prefix / unit_files(1).results)["id"].to_list()
    journal = UnitJournal(JobFolder(Store.open(first.output)), 1, lambda o: [0.001] * len(o))
    for rid in ids:
        journal.add(answered(rid))
    asyncio.run(journal.flush())
    assert list(prefix.glob("_journal/unit-00001/*.jsonl"))

    after = verify_job(first.output)
    assert after.ok, after.problems
    assert (after.units_checked, after.rows_checked) == (before.units_checked, before.rows_checked)
    assert after.stale_journals == [1]

    again = run_job(spec)
    assert again.status == "complete" and again.cost_usd == first.cost_usd
    assert not list(prefix.glob("_journal/**/*.jsonl"))
    assert verify_job(first.output).stale_journals == []


def hang_report(root: int) -> str:
    """What each process under `root` is: its command line and, with py-spy, its stacks."""
    lines = []
    spy = shutil.which("py-spy")
    for pid in descendants(root):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        lines.append(f"--- {pid}: {cmd[:200]}")
        if spy and ("python" in cmd or cmd.startswith("ray::")):
            dump = subprocess.run(
                [spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30
            )
            lines.append(dump.stdout[-4000:] + dump.stderr[-500:])
    return "\n".join(lines)
