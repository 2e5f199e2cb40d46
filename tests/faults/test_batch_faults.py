"""Batch mode under faults: a driver killed with batches in flight, a batch that expires
half answered, a provider that refuses the batch. After each, `verify_job` must pass and
the simulator's /stats must show nothing paid twice and nothing asked twice that had
already been answered.

The simulator runs in the test process (batch time scaled so a "10-minute" batch takes a
few seconds), the job talks to it as provider kind `openai`.
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

import polars as pl
import pytest
import yaml

from pipeline.engine.driver import run_job
from pipeline.engine.verify import verify_job
from pipeline.jobfolder import BATCHES_DIR
from pipeline.sim import BatchBehaviour, Latency, SimConfig, run_in_thread
from pipeline.store import Store
from tests.faults.test_fault_matrix import ray_worker_pids
from tests.integration.helpers import read_all, spec_for, write_shards

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[2]
KEY_ENV = "TIERLINE_BATCH_FAULT_KEY"
KEY = "sk-batchfault-0123456789"
TIERS = {"cheap": ["p/gpt-4o-mini"], "mid": ["p/gpt-4o-mini"], "flagship": ["p/gpt-4o"]}
# Provider time runs 300x: validating 0.33 s, answering 2.7 s, finalizing 0.33 s of wall
# time, so a batch is still in flight a second after it was journalled.
SLOW = BatchBehaviour(time_scale=300, validate_s=100, turnaround_s=800, finalize_s=100)
PAID = ["ok", "invalid_output", "escalated", "disagreed"]


class Sim:
    """A standalone simulator: `url` (OpenAI base), `stats()`, `configure(SimConfig)`."""

    def __init__(self, config: SimConfig) -> None:
        self.url, self._stop = run_in_thread(config)
        self.root = self.url.removesuffix("/v1")

    def _call(self, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
        req = urllib.request.Request(self.root + path, data=data, headers=headers)
        with urllib.request.urlopen(req) as r:
            return json.load(r)

    def stats(self) -> dict[str, Any]:
        return dict(self._call("/stats"))

    def configure(self, config: SimConfig) -> None:
        self._call("/admin/config", config.model_dump(mode="json"))

    def batch(self, batch_id: str) -> dict[str, Any]:
        return dict(self._call(f"/v1/batches/{batch_id}"))

    def outcomes(self, batch_id: str) -> dict[str, str]:
        """custom_id -> succeeded | errored | expired | canceled, from the batch's files."""
        found: dict[str, str] = {}
        info = self.batch(batch_id)
        for key in ("output_file_id", "error_file_id"):
            if not info.get(key):
                continue
            req = urllib.request.Request(
                f"{self.url}/files/{info[key]}/content",
                headers={"Authorization": f"Bearer {KEY}"},
            )
            with urllib.request.urlopen(req) as r:
                for line in r.read().decode().splitlines():
                    doc = json.loads(line)
                    status = (doc.get("response") or {}).get("status_code")
                    err = json.dumps(doc.get("error") or (doc.get("response") or {}).get("body"))
                    if status == 200:
                        found[doc["custom_id"]] = "succeeded"
                    elif "expired" in err:
                        found[doc["custom_id"]] = "expired"
                    elif "cancel" in err:
                        found[doc["custom_id"]] = "canceled"
                    else:
                        found[doc["custom_id"]] = "errored"
        return found

    def run_out(self, timeout: float = 20.0) -> None:
        """Bring every batch to its end (listing advances them), as a provider runs and
        bills every batch it accepted whether or not anyone reads its results."""
        ended = {"completed", "failed", "expired", "cancelled"}

        def done() -> bool:
            page = self._call("/v1/batches?limit=100")
            return all(b["status"] in ended for b in page["data"])

        wait_for(done, timeout, "every batch ended")

    def stop(self) -> None:
        self._stop()


@pytest.fixture
def sim() -> Iterator[Sim]:
    s = Sim(SimConfig(latency=Latency(mean_ms=5, jitter_ms=2), batches=SLOW))
    yield s
    s.stop()


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(f"not reached within {timeout} s: {what}")
        time.sleep(0.05)


def journal(prefix: Path) -> dict[str, list[str]]:
    """batch id -> custom_ids, as the job journalled them."""
    found = {}
    for path in sorted(prefix.glob(f"*/{BATCHES_DIR}/*/*.json")):
        doc = json.loads(path.read_text())
        if "batch_id" in doc:  # not an intent (a batch about to be submitted)
            found[doc["batch_id"]] = list(doc["custom_ids"])
    return found


def job_prefix(out: Path) -> str:
    return str(next(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("_")))


def check_paid(sim: Sim, prefix: str, rows: int) -> pl.DataFrame:
    """verify passes, and the simulator answered exactly the calls the ledger bills."""
    report = verify_job(prefix)
    assert report.ok, report.problems
    assert not report.missing_ids and not report.duplicate_ids
    store = Store.open(prefix)
    results, errors, costs = (read_all(store, f) for f in ("results", "errors", "costs"))
    ids = pl.concat([results["id"], errors["id"]]) if errors.height else results["id"]
    assert ids.len() == ids.n_unique() == rows
    summary = json.loads(Path(prefix, "summary.json").read_text())
    assert abs(float(costs["cost_usd"].sum()) - summary["cost_usd"]) < 1e-9
    total = sim.stats()["total"]
    paid = costs.filter(pl.col("call_status").is_in(PAID))
    # Every answer the provider gave (and billed) is a cost row, and no more.
    assert total["ok"] == paid.height
    assert total["tokens_in"] == int(paid["input_tokens"].sum())
    assert total["tokens_out"] == int(paid["output_tokens"].sum())
    return costs


@pytest.mark.timeout(90)
def test_driver_killed_with_batches_in_flight_rerun_reattaches(tmp_path: Path, sim: Sim) -> None:
    # Four units of 50 rows, one worker taking two at a time: the first run submits the
    # batches of two units, the rerun re-attaches to them and submits the other two.
    write_shards(tmp_path / "in", shards=2, rows=100, row_group=50)
    provider = {"kind": "openai", "base_url": sim.url, "api_key_env": KEY_ENV}
    spec = spec_for(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        providers={"p": provider},
        tiers=TIERS,
        cache="off",
        run={"workers": 1, "max_in_flight": 16, "mode": "batch", "batch_poll_s": 0.2},
    )
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(spec_file)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env[KEY_ENV] = KEY
    log = (tmp_path / "driver.log").open("w")
    # Its own session, so the kill takes the driver and the Ray it started, like a crash.
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=log
    )
    out = tmp_path / "out"

    def settled() -> bool:
        # Every batch the provider created is in the journal (none between create and record).
        created = sim.stats()["batches"]["created"]
        return created > 0 and created == len(journal(out))

    try:
        wait_for(settled, 45, "batches journalled")
        time.sleep(0.6)  # the two units' rows were gathered into one flush; let it end
        wait_for(settled, 10, "batches journalled")
        in_flight = [sim.batch(b)["status"] for b in journal(out)]
    except TimeoutError:
        raise AssertionError((tmp_path / "driver.log").read_text()[-3000:]) from None
    finally:
        workers = ray_worker_pids(root=proc.pid)  # before the kill orphans them
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    assert set(in_flight) <= {"validating", "in_progress", "finalizing"}, in_flight
    wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in workers), 30, "workers gone")
    before = journal(out)
    submitted = {cid for cids in before.values() for cid in cids}
    created_before = sim.stats()["batches"]["created"]
    assert created_before == len(before) and not list(out.glob("*/_commits/*.json"))

    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    prefix = job_prefix(out)
    sim.run_out()
    check_paid(sim, prefix, rows=200)
    after = journal(out)
    new = {b: cids for b, cids in after.items() if b not in before}
    stats = sim.stats()["batches"]
    # New batches only for rows that had not been submitted, and each row once.
    assert stats["created"] == created_before + len(new)
    assert not submitted & {cid for cids in new.values() for cid in cids}
    assert stats["repeated_custom_ids"] == 0
    assert stats["custom_ids_answered_twice"] == 0
    assert stats["requests"] == stats["distinct_custom_ids"] == stats["succeeded"]
    assert sim.stats()["repeated_answers"] == 0
    assert any(k.endswith(KEY[-4:]) for k in sim.stats()["keys"])  # the key was sent


@pytest.mark.timeout(60)
def test_expired_batch_only_unanswered_requests_are_asked_again(
    tmp_path: Path, ray_local: None, sim: Sim
) -> None:
    # Expires 1.3 s into answering, with half of its requests answered.
    half = SLOW.model_copy(update={"expire_after_s": 500, "complete_fraction_before_expiry": 0.5})
    sim.configure(SimConfig(latency=Latency(mean_ms=5), batches=half))
    write_shards(tmp_path / "in", shards=1, rows=100, row_group=100)
    spec = spec_for(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        providers={"p": {"kind": "openai", "base_url": sim.url}},
        tiers=TIERS,
        cache="off",
        input={
            "uri": str(tmp_path / "in"),
            "id_column": "ticket_id",
            "text_columns": ["subject", "body"],
            "rows_per_unit": 100,
        },
        run={"workers": 1, "mode": "batch", "batch_poll_s": 0.1},
    )
    first: dict[str, Any] = {}

    def heal_after_first_expiry() -> bool:
        # The next batches complete: the retried requests are answered in full.
        if sim.stats()["batches"]["expired"] == 0:
            return False
        sim.configure(SimConfig(latency=Latency(mean_ms=5), batches=SLOW))
        first.update(sim.stats()["batches"])
        return True

    healer = threading.Thread(
        target=lambda: wait_for(heal_after_first_expiry, 40, "first expiry"), daemon=True
    )
    healer.start()
    summary = run_job(spec)
    healer.join()
    assert first, "no batch expired"
    costs = check_paid(sim, summary.output, rows=100)
    assert summary.status == "complete", summary.errors_by_type

    batches = journal(tmp_path / "out")
    expired_first: set[str] = set()
    answered_first: set[str] = set()
    for bid in batches:
        if sim.batch(bid)["status"] == "expired":
            kinds = sim.outcomes(bid)
            expired_first |= {c for c, k in kinds.items() if k == "expired"}
            answered_first |= {c for c, k in kinds.items() if k == "succeeded"}
    assert expired_first and answered_first
    asked_again = [c for cids in batches.values() for c in cids if c in answered_first]
    # Per custom_id: the answered ones were submitted once, the expired ones twice.
    assert len(asked_again) == len(answered_first)
    stats = sim.stats()
    assert stats["batches"]["repeated_custom_ids"] == len(expired_first)
    assert stats["batches"]["custom_ids_answered_twice"] == 0
    assert stats["repeated_answers"] == 0
    assert set(costs.filter(pl.col("call_status") == "ok")["mode"].to_list()) == {"batch"}
    # Re-asked at the model routing chose, not escalated to a pricier tier.
    results = read_all(Store.open(summary.output), "results")
    assert (results["tier"] == results["routed_tier"]).all()


def _refused_spec(tmp_path: Path, sim: Sim, name: str, **run: Any) -> Any:
    return spec_for(
        str(tmp_path / "in"),
        str(tmp_path / name),
        providers={"p": {"kind": "openai", "base_url": sim.url}},
        tiers=TIERS,
        cache="off",
        run={"workers": 1, "batch_poll_s": 0.1, **run},
    )


@pytest.mark.timeout(60)
def test_refused_batch_auto_falls_back_to_sync_batch_mode_errors(
    tmp_path: Path, ray_local: None, sim: Sim
) -> None:
    # Any batch input file over 600 bytes (two requests) is refused at creation.
    tiny = SLOW.model_copy(update={"openai_max_bytes": 600})
    sim.configure(SimConfig(latency=Latency(mean_ms=5), batches=tiny))
    write_shards(tmp_path / "in", shards=1, rows=100, row_group=50)

    auto = run_job(_refused_spec(tmp_path, sim, "auto", mode="auto", deadline="24h"))
    assert auto.status == "complete", auto.errors_by_type
    costs = check_paid(sim, auto.output, rows=100)
    stats = sim.stats()
    assert stats["batches"]["refused"] > 0 and stats["batches"]["created"] == 0
    assert set(costs["mode"].to_list()) == {"sync"}
    errors = read_all(Store.open(auto.output), "errors")
    assert set(errors["error_type"].to_list()) <= {"empty_text"}

    sim.configure(SimConfig(latency=Latency(mean_ms=5), batches=tiny))
    sim._call("/admin/reset-stats", {})
    batch = run_job(_refused_spec(tmp_path, sim, "batch", mode="batch"))
    check_paid(sim, batch.output, rows=100)
    stats = sim.stats()
    assert stats["total"]["ok"] == 0 and stats["batches"]["refused"] > 0
    errors = read_all(Store.open(batch.output), "errors")
    refused = errors.filter(pl.col("error_type") != "empty_text")
    assert refused.height == 100 - errors.filter(pl.col("error_type") == "empty_text").height
    messages = refused["message"].to_list()
    assert all("600 maximum" in m for m in messages), messages[:3]
    assert not refused["retryable"].any()
