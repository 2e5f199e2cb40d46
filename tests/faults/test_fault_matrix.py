"""The fault matrix: kill things mid-job, then check nothing was lost or done twice.

After every fault `tierline verify` must pass on the job's output: every input id in
results or errors exactly once, files matching their commit markers, costs adding up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from pipeline.engine.driver import run_job
from pipeline.engine.summary import JobSummary
from pipeline.engine.verify import verify_job
from pipeline.sim import SimConfig, run_in_thread
from tests.integration.helpers import spec_for, ticket_frame, upload_shards, write_shards
from tests.s3server import FaultyS3Server

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[2]


class Sim:
    def __init__(self) -> None:
        self.url, self._stop = run_in_thread(SimConfig(latency={"mean_ms": 20, "jitter_ms": 5}))
        self.root = self.url.removesuffix("/v1")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.root + "/stats") as r:
            return dict(json.load(r))

    def post(self, path: str, body: dict[str, Any]) -> None:
        req = urllib.request.Request(
            self.root + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(req).close()


@pytest.fixture
def sim() -> Iterator[Sim]:
    s = Sim()
    yield s
    s._stop()


def sim_provider(sim: Sim, **extra: Any) -> dict[str, Any]:
    return {"p": {"kind": "openai", "base_url": sim.url, **extra}}


TIERS = {"cheap": ["p/gpt-4o-mini"], "mid": ["p/claude-3-5-haiku"], "flagship": ["p/gpt-4o"]}


def assert_verified(prefix: str) -> None:
    report = verify_job(prefix)
    assert report.ok, report.problems
    assert not report.missing_ids and not report.duplicate_ids


def run_in_background(fn: Callable[[], JobSummary]) -> tuple[threading.Thread, list[Any]]:
    box: list[Any] = []

    def target() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # surfaced by the test
            box.append(exc)

    t = threading.Thread(target=target)
    t.start()
    return t, box


def run_while_refusing(
    sim: Sim, seconds: float, job: Callable[[], JobSummary], once_requests: int = 0
) -> JobSummary:
    """Run `job` while `sim` answers 429 (Retry-After 1 s) to everything for `seconds`:
    from the start, or from when it has seen `once_requests` requests (the job is busy)."""

    def window() -> None:
        wait_for(lambda: sim.stats()["total"]["requests"] >= once_requests, timeout=120)
        sim.post("/admin/config", {"faults": {"error_rates": {"429": 1.0}, "retry_after_s": 1}})
        time.sleep(seconds)
        sim.post("/admin/config", {"latency": {"mean_ms": 20}})

    refusing = threading.Thread(target=window)
    refusing.start()
    try:
        return job()
    finally:
        refusing.join()


def wait_for(cond: Callable[[], bool], timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the (name)


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        pid = _parent(pid)
        if pid == ancestor:
            return True
    return False


def ray_worker_pids(root: int | None = None) -> list[int]:
    """Processes Ray has titled as our worker actors (Linux /proc), in one Ray only: the
    one started by `root` (default: this process), whose raylet and workers descend from it."""
    pids = []
    me = root or os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmd.startswith(b"ray::WorkerActor") and _descends_from(int(entry.name), me):
            pids.append(int(entry.name))
    return pids


def commits(out: Path) -> list[Path]:
    return sorted(out.glob("*/_commits/*.json"))


def test_worker_killed_mid_unit_is_redone_elsewhere(
    tmp_path: Path, ray_local: None, sim: Sim
) -> None:
    write_shards(tmp_path / "in", shards=3, rows=150, row_group=50)
    spec = spec_for(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        providers=sim_provider(sim),
        tiers=TIERS,
        run={"workers": 2, "max_in_flight": 8},
    )
    thread, box = run_in_background(lambda: run_job(spec))
    wait_for(lambda: len(commits(tmp_path / "out")) >= 1 and bool(ray_worker_pids()))
    victim = ray_worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=180)
    summary = box[0]
    assert isinstance(summary, JobSummary), summary
    assert summary.status == "complete"
    assert summary.workers_lost == 1 and summary.units_retried >= 1
    assert_verified(summary.output)


def test_node_lost_mid_job_the_job_completes(tmp_path: Path, ray_cluster: Any, sim: Sim) -> None:
    node = ray_cluster.add_node(num_cpus=2)
    ray_cluster.wait_for_nodes()
    write_shards(tmp_path / "in", shards=4, rows=150, row_group=50)
    spec = spec_for(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        providers=sim_provider(sim),
        tiers=TIERS,
        run={"workers": 4, "max_in_flight": 8},
    )
    thread, box = run_in_background(lambda: run_job(spec))
    wait_for(lambda: len(commits(tmp_path / "out")) >= 1)
    ray_cluster.remove_node(node)
    thread.join(timeout=240)
    summary = box[0]
    assert isinstance(summary, JobSummary), summary
    assert summary.status == "complete" and summary.rows_total == 600
    assert_verified(summary.output)


def test_driver_killed_then_rerun_skips_committed_rows(tmp_path: Path, sim: Sim) -> None:
    write_shards(tmp_path / "in", shards=4, rows=150, row_group=50)
    spec = spec_for(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        providers=sim_provider(sim),
        tiers=TIERS,
        run={"workers": 1, "max_in_flight": 4},
    )
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    cmd = [sys.executable, "-m", "pipeline.cli.app", "run", str(spec_file)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    log = (tmp_path / "driver.log").open("w")
    # Its own session, so the kill takes the driver and the Ray it started, like a crash.
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        wait_for(lambda: len(commits(tmp_path / "out")) >= 2, timeout=120)
    except TimeoutError:
        raise AssertionError((tmp_path / "driver.log").read_text()[-3000:]) from None
    finally:
        workers = ray_worker_pids(root=proc.pid)  # before the kill orphans them
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    # Ray's worker processes outlive a killed driver by a moment (a unit may still commit
    # then, as in a real crash); count what was committed once they are gone.
    assert workers
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), timeout=60)
    done = [json.loads(p.read_text()) for p in commits(tmp_path / "out")]
    done_units = {c["unit"] for c in done}
    assert 2 <= len(done_units) < 12
    sim.post("/admin/reset-stats", {})

    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    prefix = str(next(p for p in (tmp_path / "out").iterdir() if not p.name.startswith("_")))
    assert_verified(prefix)
    # The rerun asked the provider only for rows of units that had not been committed
    # (and not even for those whose answers the killed run had journalled).
    summary = json.loads(Path(prefix, "summary.json").read_text())
    calls_committed_before = sum(c["calls"] for c in done)
    assert sim.stats()["total"]["requests"] <= summary["calls"] - calls_committed_before


def test_s3_failing_for_a_while_the_job_completes(
    tmp_path: Path, s3_endpoint: str, s3_server: FaultyS3Server, ray_local: None, sim: Sim
) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="flaky-in")
    s3.create_bucket(Bucket="flaky-out")
    from pipeline.store import Store

    upload_shards(Store.open("s3://flaky-in/d"), "", ticket_frame(0, 300), shards=3)
    spec = spec_for(
        "s3://flaky-in/d/", "s3://flaky-out/jobs/", providers=sim_provider(sim), tiers=TIERS
    )
    failed_before = s3_server.failed
    thread, box = run_in_background(lambda: run_job(spec))
    time.sleep(1.0)
    # Every S3 request answers 503 SlowDown until the job has met a few of them (however
    # long a loaded machine takes to get there), then S3 is back.
    s3_server.fail_for(60.0)
    waited = time.monotonic()
    while s3_server.failed < failed_before + 4 and time.monotonic() - waited < 60:
        time.sleep(0.1)
    s3_server.heal()
    thread.join(timeout=180)
    summary = box[0]
    assert isinstance(summary, JobSummary), summary
    assert s3_server.failed > failed_before
    assert summary.status == "complete"
    assert_verified(summary.output)


def test_provider_429_for_a_while_then_recovers(tmp_path: Path, ray_local: None, sim: Sim) -> None:
    write_shards(tmp_path / "in", shards=2, rows=100)
    spec = spec_for(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        providers=sim_provider(sim),
        tiers=TIERS,
        run={"max_attempts": 20, "row_deadline_s": 120},
    )
    summary = run_while_refusing(sim, 8.0, lambda: run_job(spec))
    assert summary.status == "complete"
    stats = sim.stats()["total"]
    assert stats["rate_limited"] > 0
    # Paused cluster-wide, not hammered: far fewer 429s than rows x retries would give.
    assert stats["rate_limited"] < 200 * 3
    assert_verified(summary.output)


def test_whole_tier_down_rows_escalate(tmp_path: Path, ray_local: None, sim: Sim) -> None:
    write_shards(tmp_path / "in", shards=2, rows=100)
    providers = {
        **sim_provider(sim),
        "down": {
            "kind": "openai",
            "base_url": "http://127.0.0.1:9/v1",
            "timeouts": {"connect_s": 1},
        },
    }
    spec = spec_for(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        providers=providers,
        tiers={
            "cheap": ["down/gpt-4o-mini"],
            "mid": ["p/claude-3-5-haiku"],
            "flagship": ["p/gpt-4o"],
        },
        run={"max_attempts": 2, "breaker_failures": 3},
    )
    summary = run_job(spec)
    assert summary.status == "complete" and "cheap" not in summary.by_model
    assert_verified(summary.output)


def test_budget_exhausted_mid_job_then_a_larger_budget_finishes_it(
    tmp_path: Path, ray_local: None, sim: Sim
) -> None:
    data = write_shards(tmp_path / "in", shards=3, rows=100)
    base = {"providers": sim_provider(sim), "tiers": TIERS, "run": {"max_in_flight": 16}}
    small = spec_for(str(tmp_path / "in"), str(tmp_path / "out"), budget_usd=0.01, **base)
    first = run_job(small)
    assert first.status == "incomplete" and first.rows_retryable > 0
    assert first.errors_by_type.get("budget_exhausted") == first.rows_retryable
    # The cap holds: nothing past the budget (every call reserved its worst case first).
    assert first.cost_usd <= 0.01 + 1e-9
    assert_verified(first.output)

    bigger = spec_for(str(tmp_path / "in"), str(tmp_path / "out"), budget_usd=5.0, **base)
    second = run_job(bigger)
    assert second.job_id == first.job_id  # the budget is not part of the job's identity
    assert second.status == "complete" and second.rows_retryable == 0
    assert "budget_exhausted" not in second.errors_by_type
    assert second.rows_ok + second.rows_error == data.height
    assert_verified(second.output)
