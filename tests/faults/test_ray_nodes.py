"""Jobs on a Ray cluster of several processes, as an operator starts one: a head
(`ray start --head`) and a worker node joined to it (`ray start --address`), each with its
own raylet, token authentication on. The driver is `tierline run SPEC` with RAY_ADDRESS
naming that cluster (not this test session's Ray); the simulator runs in this test process
on loopback, which every node reaches (they all run on this machine).

What a user checks: `tierline verify` passes, each input row is in results or errors
once, and the provider (the simulator's own counts) was not paid twice for an answer,
beyond what a node lost without warning could not have kept.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import polars as pl
import pytest

from pipeline.engine.driver import UNITS_PER_WORKER
from pipeline.limits.budget_actor import daily_actor_name
from pipeline.limits.quota_actor import account_key
from pipeline.store import Store
from tests.faults.test_fault_matrix import TIERS, Sim, assert_verified, commits, sim_provider
from tests.faults.test_fault_matrix import wait_for as wait_until
from tests.faults.test_stops import Driver, job_folder
from tests.integration.helpers import read_all, spec_for, write_shards
from tests.raynodes import RayNodes

pytestmark = pytest.mark.faults

EVERY_ROWS = 4  # run.journal_every_rows of the node-loss job
IN_FLIGHT = 4  # its run.max_in_flight


ASK_STATUS = """
import json, logging, sys
import ray
ray.init(logging_level=logging.ERROR)
actors = {n: ray.get_actor(n, namespace="tierline") for n in sys.argv[1:]}
print(json.dumps({n: ray.get(a.status.remote()) for n, a in actors.items()}))
"""


class Cluster:
    """The module's cluster: a head and, while a test has not killed it, a worker node."""

    def __init__(self) -> None:
        self.nodes = RayNodes.start_head(num_cpus=2, multi_node=True)
        self.worker: subprocess.Popen[bytes] | None = None

    def with_worker(self) -> tuple[str, str]:
        """(head node id, worker node id), joining a worker node if none is alive."""
        if self.worker is None or self.worker.poll() is not None:
            self.worker = self.nodes.add_worker(num_cpus=2)
        alive = [n for n in self.state("nodes") if n["state"] == "ALIVE"]
        (head,) = [n["node_id"] for n in alive if n["is_head_node"]]
        (worker,) = [n["node_id"] for n in alive if not n["is_head_node"]]
        return head, worker

    def kill_worker(self) -> None:
        assert self.worker is not None
        self.nodes.kill(self.worker)
        self.worker = None

    def state(self, kind: str, **equal: str) -> list[dict[str, Any]]:
        """Ray's state API: the cluster's `kind` (nodes, actors, tasks) with these fields."""
        query = [("limit", "10000"), ("detail", "1")]
        for key, value in equal.items():
            query += [("filter_keys", key), ("filter_predicates", "="), ("filter_values", value)]
        doc = self.nodes.get(f"/api/v0/{kind}?{urlencode(query)}")
        return list(doc["data"]["result"]["result"])

    def actor_status(self, *names: str) -> dict[str, dict[str, Any]]:
        """`status()` of the named tierline actors, looked up by name in the cluster by a
        process that joins it, as a worker does."""
        ran = subprocess.run(
            [sys.executable, "-c", ASK_STATUS, *names],
            env=self.nodes.client_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ran.returncode == 0, ran.stderr[-3000:]
        return dict(json.loads(ran.stdout.splitlines()[-1]))

    def ray_job(self, driver: Driver) -> str:
        """The Ray job id of the driver process `driver` started (the Jobs API lists it)."""
        assert driver.proc is not None
        for job in self.nodes.get("/api/jobs/"):
            if str((job.get("driver_info") or {}).get("pid")) == str(driver.proc.pid):
                return str(job["job_id"])
        raise AssertionError(f"no Ray job has driver pid {driver.proc.pid}")

    def nodes_of(self, job: str, task: str) -> Counter[str]:
        """How many times `task` (e.g. WorkerActor.process) ran for `job`, per node. Tasks
        are reported to the cluster about once a second: waits until some are."""
        found: Counter[str] = Counter()

        def reported() -> bool:
            found.clear()
            found.update(t["node_id"] for t in self.state("tasks", job_id=job, name=task))
            return bool(found)

        wait_until(reported, timeout=20)
        return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    try:
        yield c
    finally:
        c.nodes.stop()


def cluster_job(
    tmp_path: Path,
    sim: Sim,
    *,
    name: str,
    shards: int,
    rows_per_unit: int,
    run: dict[str, Any],
    provider: dict[str, Any] | None = None,
) -> tuple[Any, pl.DataFrame]:
    """The test job and its input: `shards` files of one unit each in `tmp_path/in`;
    `provider`: more settings of provider `p`."""
    rows = write_shards(tmp_path / "in", shards=shards, rows=rows_per_unit, row_group=50)
    spec = spec_for(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        name=name,
        providers=sim_provider(sim, **(provider or {})),
        tiers=TIERS,
        input={
            "uri": str(tmp_path / "in"),
            "id_column": "ticket_id",
            "text_columns": ["subject", "body"],
            "rows_per_unit": rows_per_unit,
        },
        run={"stall_timeout_s": 60, "stop_grace_s": 5, **run},
    )
    return spec, rows


def start_job(cluster: Cluster, folder: Path, spec: Any) -> Driver:
    """`tierline run SPEC` begun in `folder`, its driver joining the cluster."""
    driver = Driver(folder, spec.model_dump(mode="json"), env=cluster.nodes.client_env)
    driver.start()
    return driver


def assert_each_row_once(tmp_path: Path, rows: pl.DataFrame) -> dict[str, Any]:
    """verify passes and every input id is in results or errors once; the summary."""
    prefix = job_folder(tmp_path)
    assert_verified(str(prefix))
    out = Store.open(str(prefix))
    ids = pl.concat([read_all(out, "results")["id"], read_all(out, "errors")["id"]])
    assert ids.len() == ids.n_unique() == rows.height
    assert set(ids.to_list()) == set(rows["ticket_id"].to_list())
    return dict(json.loads((prefix / "summary.json").read_text()))


@pytest.mark.timeout(120)
def test_a_job_runs_its_units_on_the_head_and_the_worker_node(
    tmp_path: Path, cluster: Cluster, sim: Sim
) -> None:
    head, worker = cluster.with_worker()
    # Four workers spread over the two nodes, each given two of the eight units at once.
    spec, rows = cluster_job(
        tmp_path,
        sim,
        name="nodes",
        shards=8,
        rows_per_unit=50,
        run={"workers": 4, "max_in_flight": 8},
    )
    driver = start_job(cluster, tmp_path, spec)
    assert driver.wait(timeout=90) == 0, driver.tail()
    units = cluster.nodes_of(cluster.ray_job(driver), "WorkerActor.process")
    assert set(units) == {head, worker}, units
    summary = assert_each_row_once(tmp_path, rows)
    assert summary["status"] == "complete" and summary["workers_lost"] == 0
    stats = sim.stats()
    assert stats["repeated_answers"] == 0 and stats["total"]["ok"] == summary["calls"]


@pytest.mark.timeout(150)
def test_two_jobs_at_once_share_the_clusters_quota_and_daily_budget_actors(
    tmp_path: Path, cluster: Cluster, sim: Sim
) -> None:
    head, _ = cluster.with_worker()
    # The simulator refuses (429) what goes past these limits, as the provider would: a
    # quota actor per job would let the two jobs send twice as much.
    limits = {"rpm": 3000, "max_concurrency": 4}
    sim.post("/admin/config", {"default_limits": limits})
    drivers, inputs, specs = [], [], []
    for name in ("job-a", "job-b"):
        spec, rows = cluster_job(
            tmp_path / name,
            sim,
            name=name,
            shards=4,
            rows_per_unit=50,
            run={"workers": 2, "max_in_flight": 8},
            provider={"limits": limits, "daily_budget_usd": 50.0},
        )
        inputs.append(rows)
        specs.append(spec)
        drivers.append(start_job(cluster, tmp_path / name, spec))
    for d in drivers:
        assert d.wait(timeout=120) == 0, d.tail()
    summaries = [
        assert_each_row_once(tmp_path / name, rows)
        for name, rows in zip(("job-a", "job-b"), inputs, strict=True)
    ]
    stats = sim.stats()
    assert stats["total"]["rate_limited"] == 0, stats["total"]
    # (Both inputs hold the same texts: the simulator counts job-b's answers as repeats.)
    calls = sum(s["calls"] for s in summaries)
    assert stats["total"]["ok"] == calls
    # One quota actor for the account and one daily budget actor for the provider, never
    # restarted, on the drivers' node (the head: losing a worker node does not reset
    # them), and both jobs' calls went through them: the quota granted every call, the
    # daily budget holds both jobs' spend.
    quota, daily = account_key(specs[0], "p", None), daily_actor_name("p")
    for name in (quota, daily):
        (actor,) = cluster.state("actors", name=name)
        assert actor["state"] == "ALIVE" and str(actor["num_restarts"]) == "0", actor
        assert actor["node_id"] == head, f"{name} on a worker node"
    status = cluster.actor_status(quota, daily)
    assert status[quota]["granted_requests"] >= calls, status
    spent = sum(s["cost_usd"] for s in summaries)
    assert status[daily]["spent_usd"] == pytest.approx(spent, rel=1e-6), status


@pytest.mark.timeout(200)
def test_worker_node_killed_with_answered_rows_not_committed(
    tmp_path: Path, cluster: Cluster, sim: Sim
) -> None:
    _, worker = cluster.with_worker()
    # About 27 answers a second per worker: a unit takes 7 s, long enough to lose a node mid-way.
    sim.post("/admin/config", {"latency": {"mean_ms": 150, "jitter_ms": 10}})
    spec, rows = cluster_job(
        tmp_path,
        sim,
        name="nodeloss",
        shards=4,
        rows_per_unit=200,  # one long unit per worker: many answers wait for a commit
        run={
            "workers": 4,
            "max_in_flight": IN_FLIGHT,
            "journal_every_rows": EVERY_ROWS,
            "journal_every_s": 0.5,
        },
    )
    driver = start_job(cluster, tmp_path, spec)

    def on_worker_node() -> list[dict[str, Any]]:
        return [
            a
            for a in cluster.state("actors", class_name="WorkerActor", state="ALIVE")
            if a["node_id"] == worker
        ]

    def journalled_units() -> int:
        return len({p.parent for p in (tmp_path / "out").glob("*/_journal/unit-*/*.jsonl")})

    try:
        # Every unit (two on each node) has answers in its journal, none has committed,
        # and a good part of them is answered (a quarter of the rows).
        wait_until(
            lambda: (
                journalled_units() == 4
                and sim.stats()["total"]["ok"] >= 200
                and bool(on_worker_node())
            ),
            90,
        )
    except TimeoutError:
        raise AssertionError(driver.tail()) from None
    lost_workers = len(on_worker_node())
    assert not commits(tmp_path / "out"), "units committed before the node was lost"
    killed_at = time.monotonic()
    cluster.kill_worker()
    code = driver.wait(timeout=150)  # within run.stall_timeout_s (60) and the grace, or stalled
    ended_s = time.monotonic() - killed_at
    first = json.loads((job_folder(tmp_path) / "summary.json").read_text())
    if code != 0:
        # Stopped, naming why (the stall guard, a lost actor); the same command finishes it.
        assert first["stopped"], driver.tail()
        assert driver.run_to_end(timeout=120).returncode == 0
    else:
        # Completed on the head: the lost workers' units were handed out again there.
        assert first["workers_lost"] >= lost_workers and first["units_retried"] >= 1, first
    summary = assert_each_row_once(tmp_path, rows)
    assert summary["status"] == "complete"
    stats = sim.stats()
    # Every answer the provider gave is one paid call in the cost rows, except those paid
    # twice. Those cannot be 0: a worker journals its answers as they arrive, but in the
    # background (every journal_every_rows answers or journal_every_s), and a SIGKILLed
    # node writes nothing more; what it held since its last write, and the answers the
    # provider sent while the node died, are lost and asked again by the unit's redo.
    # Each lost worker loses at most what its units had not written (journal_every_rows
    # each) and twice its calls in flight (answered during a write, and as it died).
    twice = stats["repeated_answers"]
    bound = lost_workers * (UNITS_PER_WORKER * EVERY_ROWS + 2 * IN_FLIGHT)
    print(
        f"\nnode loss: {lost_workers} workers on the lost node; ended {ended_s:.1f} s after "
        f"the kill with exit {code} (stopped: {first['stopped']}); rows recovered from "
        f"journals {summary['rows_recovered']}; answers paid twice {twice} (bound {bound})"
    )
    assert stats["total"]["ok"] == summary["calls"] + twice
    assert twice <= bound
    assert summary["rows_recovered"] > 0  # the lost units' journalled answers came back
