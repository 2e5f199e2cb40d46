"""Batch-mode benchmark: what the batch APIs save, whether `auto` keeps a deadline, what
prompt caching saves, and that faults during batches lose nothing and pay nothing twice.

    python tests/benchmarks/batch.py                          # 50,000 tickets, 404 docs
    python tests/benchmarks/batch.py --quick --json out.json  # 5,000 tickets, 102 docs

Every job is the real pipeline (`run_job`) on one local Ray started once, against the
built-in simulator with batch time scaled 1000x (a "1-minute" batch in 0.06 s), except the
fault scenarios, which need the simulator's /stats and use a standalone one.

1. classify: jobs/examples/classify.yaml over generated tickets (jobs.examples.make_data),
   run.mode sync, then the same job with run.mode batch: cost ratio batch / sync.
2. summarise: jobs/examples/summarise.yaml over its generated documents plus long ones
   (DialogSum dialogues joined to 20k-60k tokens, and one past claude-3-5-haiku's 200k
   window, map-reduced), sync and batch: cost ratio.
3. deadline: the classify job under `auto` with a deadline, `batch_turnaround_s` small so
   auto batches first, while the simulated batches would end long after the deadline;
   auto must take them back and finish every row synchronously before it. The engine
   keeps a fixed 300 s for finishing taken-back rows (BatchPlan.sync_reserve_s) and takes
   batches back at deadline - 300 s, so the deadline is 300 s + DEADLINE_WINDOW_S.
4. prompt_cache: the classify job with ~2,000 tokens of shared instructions (the engine
   marks them as a cacheable prefix and sends a prompt_cache_key), sync, against the same
   job with the simulator's prompt cache off: cost ratio.
5. faults (tickets with no identical rows): a worker SIGKILLed just after it journalled
   its first batch, while it submits the next ones (the unit is redone elsewhere and
   re-attaches to the journalled batches), and batches that expire half answered; the
   simulator's /stats count custom_ids submitted and answered twice. Rows lost and
   duplicated are counted over every run of the benchmark (inputs against results and
   errors, and `verify_job`).

Every run also checks that its summary's cost equals the sum of its cost rows, that it
ended complete and that `verify_job` passes; each problem is printed, and the exit status
is 1 when a problem was found or a target missed (the figures are written either way).
Targets: cost ratio batch / sync <= 0.52 (classify, summarise); rows done by the deadline
100%; rows lost, duplicates and paid twice 0. `paid_twice` counts answers the simulator
gave a second time to the same (model, messages), after every batch it accepted has run
to its end (a provider runs and bills a batch whether or not anyone reads it).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import polars as pl  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import yaml  # noqa: E402

from jobs.examples.make_data import DOCUMENTS_SCHEMA, generate  # noqa: E402
from pipeline.costs import call_cost_usd  # noqa: E402
from pipeline.engine.driver import run_job  # noqa: E402
from pipeline.engine.summary import JobSummary  # noqa: E402
from pipeline.engine.verify import verify_job  # noqa: E402
from pipeline.jobfolder import BATCHES_DIR  # noqa: E402
from pipeline.sim import BatchBehaviour, Latency, SimConfig, run_in_thread  # noqa: E402
from pipeline.store import Store  # noqa: E402
from pipeline.tokens import count_tokens  # noqa: E402
from schemas.job import JobSpec, parse_spec  # noqa: E402
from schemas.prices import load_prices  # noqa: E402
from tests.integration.helpers import write_shards  # noqa: E402

EXAMPLES = REPO / "jobs" / "examples"
DIALOGSUM = REPO.parent / "shared" / "data" / "dialogsum" / "dev.parquet"
# "1-minute" batches in 0.06 s of wall time.
FAST = {"time_scale": 1000.0, "validate_s": 1.0, "turnaround_s": 60.0, "finalize_s": 1.0}
# Batches that would take 12 minutes of wall time: far past the deadline.
LAGGING = {"time_scale": 10.0, "validate_s": 60.0, "turnaround_s": 7200.0, "finalize_s": 10.0}
SYNC_RESERVE_S = 300.0  # pipeline.calls.batching.BatchPlan.sync_reserve_s (not in the spec)
DEADLINE_WINDOW_S = 30.0  # the time auto may keep rows in a batch
PAID = ("ok", "invalid_output", "escalated", "disagreed")
TARGETS: dict[str, tuple[str, float]] = {
    "classify.cost_ratio_batch_to_sync": ("<=", 0.52),
    "summarise.cost_ratio_batch_to_sync": ("<=", 0.52),
    "deadline.rows_done_by_deadline_pct": (">=", 100.0),
    "faults.rows_lost": ("<=", 0),
    "faults.duplicates": ("<=", 0),
    "faults.paid_twice": ("<=", 0),
}


# --- data ------------------------------------------------------------------------------


def make_inputs(root: Path, tickets: int, docs: int, long_docs: list[int]) -> dict[str, Path]:
    """Tickets and documents as the examples generate them, plus long documents."""
    generate(root, rows=tickets, docs=docs, seed=7)
    paragraphs = (
        pl.read_parquet(DIALOGSUM)["dialogue"].to_list()
        if DIALOGSUM.exists()
        else pl.read_parquet(root / "documents")["text"].drop_nulls().to_list()
    )
    rng = random.Random(11)
    rows = []
    for i, tokens in enumerate(long_docs):
        parts, chars = [], 0
        while chars < tokens * 4:  # about 4 characters a token; counted exactly below
            parts.append(rng.choice(paragraphs))
            chars += len(parts[-1]) + 2
        text = f"Long record {i}\n\n" + "\n\n".join(parts)
        rows.append({"doc_id": f"LONG-{i:03d}", "title": f"Long record {i}", "text": text,
                     "priority": "normal"})  # fmt: skip
    table = pa.Table.from_pylist(rows, schema=DOCUMENTS_SCHEMA)
    pq.write_table(table, root / "documents" / "part-long.parquet", row_group_size=1)
    return {"tickets": root / "tickets", "documents": root / "documents"}


def long_instructions(target_tokens: int = 2_000) -> str:
    """Shared instructions of about `target_tokens` tokens: a support team's rulebook."""
    topics = ["invoices", "refunds", "passwords", "logins", "crashes", "timeouts",
              "exports", "plans", "seats", "addresses", "tax forms", "webhooks"]  # fmt: skip
    lines = ["Classify the support ticket by its main topic. Follow the team rulebook:"]
    i = 0
    while count_tokens("\n".join(lines), "gpt-4o") < target_tokens:
        topic = topics[i % len(topics)]
        lines.append(
            f"Rule {i + 1}: a ticket whose main request concerns {topic} (case group "
            f"{i // len(topics) + 1}) is labelled by what the customer needs done about "
            f"{topic}, not by the product area where the {topic} problem appeared; quote "
            "nothing, answer with the label only."
        )
        i += 1
    return "\n".join(lines)


# --- specs -----------------------------------------------------------------------------


def example_spec(
    example: str,
    name: str,
    input_dir: Path,
    output: Path,
    *,
    sim: dict[str, Any] | None = None,
    task: dict[str, Any] | None = None,
    base_url: str | None = None,
    **run: Any,
) -> JobSpec:
    """An example spec on other data; `base_url`: a standalone simulator instead."""
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / f"{example}.yaml").read_text())
    doc["name"] = name
    doc["input"]["uri"] = str(input_dir)
    doc["output"] = {"uri": str(output)}
    if base_url is None:
        options = {"latency_ms": 2, "jitter_ms": 1, "batches": FAST, **(sim or {})}
        doc["providers"]["sim"]["sim"] = options
    else:  # the tiers name provider "sim": keep the name, speak the OpenAI format to it
        doc["providers"]["sim"] = {"kind": "openai", "base_url": base_url}
    doc["task"].update(task or {})
    doc["budget_usd"] = 100_000.0
    doc["cache"] = "off"  # every row is paid in every run: the runs compare like for like
    doc["run"] = {"workers": 2, "max_in_flight": 64, "batch_poll_s": 0.05, **run}
    return parse_spec(doc)


# --- checks over one run ---------------------------------------------------------------


class Checks:
    """Rows lost and duplicated over every run, and each run's ledger against its summary."""

    def __init__(self) -> None:
        self.rows_lost = 0
        self.duplicates = 0
        self.problems: list[str] = []

    def run(self, label: str, summary: JobSummary, input_rows: int) -> pl.DataFrame:
        store = Store.open(summary.output)
        results, errors, costs = (_read(store, f) for f in ("results", "errors", "costs"))
        ids = pl.concat([results["id"], errors["id"]]) if errors.height else results["id"]
        report = verify_job(summary.output)
        lost = max(0, input_rows - ids.n_unique()) + len(report.missing_ids)
        dups = (ids.len() - ids.n_unique()) + len(report.duplicate_ids)
        self.rows_lost += lost
        self.duplicates += dups
        if not report.ok:
            self.problems.append(f"{label}: verify: {report.problems[:3]}")
        if summary.status != "complete":
            self.problems.append(f"{label}: status {summary.status}")
        ledger = float(costs["cost_usd"].sum()) if costs.height else 0.0
        if abs(ledger - summary.cost_usd) > 1e-9 * max(1.0, summary.cost_usd):
            self.problems.append(
                f"{label}: summary cost {summary.cost_usd!r} != sum of cost rows {ledger!r}"
            )
        return costs

    def require(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)


def _read(store: Store, folder: str) -> pl.DataFrame:
    files = store.list_files(folder, suffix=".parquet")
    frames = [pl.read_parquet(io.BytesIO(store.read_bytes(f.path))) for f in files]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def _rows(folder: Path) -> int:
    return sum(pq.read_metadata(p).num_rows for p in folder.glob("*.parquet"))


def _timed(fn: Callable[[], JobSummary]) -> tuple[JobSummary, float, float]:
    """(summary, wall clock at start, seconds)."""
    wall, t = time.time(), time.monotonic()
    summary = fn()
    return summary, wall, time.monotonic() - t


def _modes(costs: pl.DataFrame) -> dict[str, int]:
    paid = costs.filter(pl.col("call_status").is_in(PAID))
    return {str(m): int(n) for m, n in paid.group_by("mode").len().iter_rows()}


# --- scenarios -------------------------------------------------------------------------


def cost_ratio(example: str, input_dir: Path, out: Path, checks: Checks) -> dict[str, Any]:
    """The example job sync, then batch: cost, calls, wall time of each."""
    n = _rows(input_dir)
    figures: dict[str, Any] = {"rows": n}
    for mode in ("sync", "batch"):
        spec = example_spec(example, f"bench-{example}-{mode}", input_dir, out / mode, mode=mode)
        summary, _, wall = _timed(lambda spec=spec: run_job(spec))  # type: ignore[misc]
        costs = checks.run(f"{example} {mode}", summary, n)
        modes = _modes(costs)
        checks.require(set(modes) == {mode}, f"{example} {mode}: calls went out as {modes}")
        figures[mode] = {
            "cost_usd": round(summary.cost_usd, 6),
            "calls": summary.calls,
            "wall_s": round(wall, 1),
            "rows_ok": summary.rows_ok,
            "rows_error": summary.rows_error,
            "batches": len(list((out / mode).glob(f"*/{BATCHES_DIR}/*/*.json"))),
            "usd_by_step": {
                str(step): round(float(usd), 6)
                for step, usd in costs.group_by("step").agg(pl.col("cost_usd").sum()).iter_rows()
            },
        }
        if mode == "batch":
            # Under run.mode batch every call goes through the batch API; a row recorded
            # as sync is billed by the provider at the batch price all the same.
            figures["batch"]["cost_usd_all_at_batch_price"] = round(_at_batch_price(costs), 6)
    sync, batch = figures["sync"], figures["batch"]
    figures["cost_ratio_batch_to_sync"] = round(batch["cost_usd"] / sync["cost_usd"], 4)
    figures["cost_ratio_all_at_batch_price"] = round(
        batch["cost_usd_all_at_batch_price"] / sync["cost_usd"], 4
    )
    return figures


def _at_batch_price(costs: pl.DataFrame) -> float:
    prices = load_prices()
    total = 0.0
    for row in costs.iter_rows(named=True):
        if row["mode"] != "sync" or row["call_status"] not in PAID:
            total += row["cost_usd"]
            continue
        total += call_cost_usd(
            prices.lookup(row["model"]),
            row["input_tokens"],
            row["output_tokens"],
            row["cached_input_tokens"] or 0,
            row["cache_write_tokens"] or 0,
            mode="batch",
        )
    return total


def deadline(input_dir: Path, out: Path, checks: Checks) -> dict[str, Any]:
    """auto with batches that lag past the deadline: taken back, finished in time."""
    n = _rows(input_dir)
    deadline_s = SYNC_RESERVE_S + DEADLINE_WINDOW_S
    spec = example_spec(
        "classify",
        "bench-deadline",
        input_dir,
        out / "auto",
        sim={"batches": LAGGING},
        mode="auto",
        deadline=f"{deadline_s:.0f}s",
        batch_turnaround_s=DEADLINE_WINDOW_S / 3,  # what auto expects (and is wrong about)
    )
    summary, started, wall = _timed(lambda: run_job(spec))
    costs = checks.run("deadline auto", summary, n)
    due = started + deadline_s
    results = _read(Store.open(summary.output), "results")
    errors = _read(Store.open(summary.output), "errors")
    done_at = results["completed_at"].dt.epoch("us").cast(pl.Float64) / 1e6
    in_time = int((done_at <= due).sum()) + (errors.height if started + wall <= due else 0)
    sync_spec = example_spec("classify", "bench-deadline-sync", input_dir, out / "sync")
    sync = run_job(sync_spec)
    checks.run("deadline sync", sync, n)
    modes = _modes(costs)
    checks.require(modes.get("batch", 0) + modes.get("sync", 0) > 0, "deadline: no calls")
    return {
        "rows": n,
        "deadline_s": deadline_s,
        "wall_s": round(wall, 1),
        "rows_done_by_deadline_pct": round(100.0 * in_time / n, 2),
        "cost_ratio_to_sync": round(summary.cost_usd / sync.cost_usd, 4),
        "calls_batch": modes.get("batch", 0),
        "calls_sync": modes.get("sync", 0),
        "batches_submitted": len(list((out / "auto").glob(f"*/{BATCHES_DIR}/*/*.json"))),
    }


def prompt_cache(input_dir: Path, out: Path, checks: Checks) -> dict[str, Any]:
    """~2,000 tokens of shared instructions, with the provider's prompt cache and without."""
    n = _rows(input_dir)
    instructions = long_instructions()
    figures: dict[str, Any] = {
        "rows": n,
        "instruction_tokens": count_tokens(instructions, "gpt-4o"),
    }
    for label, enabled in (("with", True), ("without", False)):
        spec = example_spec(
            "classify",
            "bench-prompt-cache",
            input_dir,
            out / label,
            sim={"prompt_cache": {"enabled": enabled}},
            task={"instructions": instructions},
            mode="sync",
        )
        summary, _, wall = _timed(lambda spec=spec: run_job(spec))  # type: ignore[misc]
        costs = checks.run(f"prompt_cache {label}", summary, n)
        figures[label] = {
            "cost_usd": round(summary.cost_usd, 6),
            "calls": summary.calls,
            "cached_input_tokens": int(costs["cached_input_tokens"].sum()),
            "input_tokens": int(costs["input_tokens"].sum()),
            "wall_s": round(wall, 1),
        }
    figures["cost_ratio"] = round(figures["with"]["cost_usd"] / figures["without"]["cost_usd"], 4)
    checks.require(figures["with"]["cached_input_tokens"] > 0, "prompt_cache: nothing cached")
    return figures


# --- faults ----------------------------------------------------------------------------


class StandaloneSim:
    """A simulator in this process, for its /stats and its list of batches."""

    def __init__(self, config: SimConfig) -> None:
        self.url, self.stop = run_in_thread(config)
        self.root = self.url.removesuffix("/v1")

    def _call(self, path: str, body: str | None = None) -> Any:
        req = urllib.request.Request(
            self.root + path,
            data=None if body is None else body.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req) as r:
            return json.load(r)

    def stats(self) -> dict[str, Any]:
        return dict(self._call("/stats"))

    def configure(self, config: SimConfig) -> None:
        self._call("/admin/config", config.model_dump_json())

    def reset(self) -> None:
        self._call("/admin/reset-stats", "{}")

    def batches(self) -> list[dict[str, Any]]:
        """Every batch it holds (listing also brings each one up to the present)."""
        found: list[dict[str, Any]] = []
        after = ""
        while True:
            page = self._call(f"/v1/batches?limit=100{after}")
            found += page["data"]
            if not page["has_more"]:
                return found
            after = f"&after={page['last_id']}"

    def run_out(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Wait until every batch has ended, as a provider runs (and bills) each batch it
        accepted whether or not anyone reads its results."""
        ended = {"completed", "failed", "expired", "cancelled"}
        _wait(lambda: all(b["status"] in ended for b in self.batches()), timeout)
        return self.batches()


def _worker_pids() -> list[int]:
    """Ray worker actors of this process's own Ray (Linux /proc)."""

    def parent(pid: int) -> int:
        try:
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return 0

    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "cmdline").read_bytes().startswith(b"ray::WorkerActor"):
                continue
        except OSError:
            continue
        pid = int(entry.name)
        while pid > 1 and pid != me:
            pid = parent(pid)
        if pid == me:
            found.append(int(entry.name))
    return found


def _wait(cond: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def _fault_spec(input_dir: Path, out: Path, url: str) -> JobSpec:
    return example_spec(
        "classify", "bench-faults", input_dir, out, base_url=url, mode="batch", workers=2
    )


def faults(input_dir: Path, out: Path, checks: Checks) -> dict[str, Any]:
    """A worker killed with batches in flight; batches expiring half answered."""
    n = _rows(input_dir)
    slow = BatchBehaviour(time_scale=300, validate_s=100, turnaround_s=800, finalize_s=100)
    sim = StandaloneSim(SimConfig(latency=Latency(mean_ms=2), batches=slow))
    figures: dict[str, Any] = {"rows": n}
    try:
        # 1. SIGKILL a worker as soon as it has journalled its first batch: the moment it
        # submits the next ones (one batch per model), the hardest moment to crash in.
        spec = _fault_spec(input_dir, out / "killed", sim.url)
        box: list[Any] = []
        thread = threading.Thread(target=lambda: box.append(run_job(spec)))
        thread.start()
        journalled = _wait(lambda: bool(_journal(out / "killed")), 60)
        victims = _worker_pids()
        if journalled and victims:
            os.kill(victims[0], signal.SIGKILL)
        thread.join()
        summary = box[0]
        checks.run("faults worker_killed", summary, n)
        checks.require(journalled and bool(victims), "faults: no worker to kill in time")
        figures["worker_killed"] = killed = _paid(sim, out / "killed", set())
        killed["workers_lost"] = summary.workers_lost

        # 2. Batches that expire with half their requests answered; then they complete.
        half = slow.model_copy(
            update={"expire_after_s": 500, "complete_fraction_before_expiry": 0.5}
        )
        sim.configure(SimConfig(latency=Latency(mean_ms=2), batches=half))
        sim.reset()
        spec = _fault_spec(input_dir, out / "expired", sim.url)
        earlier = {b["id"] for b in sim.batches()}

        def heal() -> bool:
            if sim.stats()["batches"]["expired"] == 0:
                return False
            sim.configure(SimConfig(latency=Latency(mean_ms=2), batches=slow))
            return True

        healer = threading.Thread(target=lambda: _wait(heal, 120), daemon=True)
        healer.start()
        summary = run_job(spec)
        healer.join(timeout=1)
        checks.run("faults expired", summary, n)
        figures["expired"] = expired = _paid(sim, out / "expired", earlier)
        results = _read(Store.open(summary.output), "results")
        expired["rows_escalated"] = int((results["tier"] != results["routed_tier"]).sum())
        expired["rows_error"] = summary.rows_error
        expired["errors_by_type"] = summary.errors_by_type
        # What should happen: every expired request asked again, at the model routing chose.
        checks.require(
            expired["resubmitted"] == expired["requests_expired"]
            and expired["rows_escalated"] == 0,
            f"faults expired: {expired['requests_expired']} requests expired, "
            f"{expired['resubmitted']} asked again in a batch, "
            f"{expired['rows_escalated']} rows escalated to another tier, "
            f"{expired['rows_error']} error rows {expired['errors_by_type']}",
        )
    finally:
        sim.stop()
    figures["paid_twice"] = sum(figures[k]["paid_twice"] for k in ("worker_killed", "expired"))
    return figures


def _journal(out: Path) -> dict[str, list[str]]:
    """batch id -> custom_ids, as the job journalled them."""
    found = {}
    for path in out.glob(f"*/{BATCHES_DIR}/*/*.json"):
        doc = json.loads(path.read_text())
        if "batch_id" in doc:  # not an intent (a batch about to be submitted)
            found[str(doc["batch_id"])] = list(doc["custom_ids"])
    return found


def _paid(sim: StandaloneSim, out: Path, earlier: set[str]) -> dict[str, Any]:
    """What the provider ran and billed for this job (not the `earlier` batches), once
    every batch it accepted has run out."""
    batches = [b for b in sim.run_out() if b["id"] not in earlier]
    stats = sim.stats()
    journal = _journal(out)
    orphans = [b for b in batches if b["id"] not in journal]
    return {
        "batches_created": stats["batches"]["created"],
        "requests_expired": stats["batches"]["expired"],
        "resubmitted": stats["batches"]["repeated_custom_ids"],
        # Batches the provider accepted that the job never journalled: run and billed,
        # their answers never read (the crash fell between create and journal).
        "orphan_batches": len(orphans),
        "orphan_requests": sum(b["request_counts"]["total"] for b in orphans),
        "custom_ids_answered_twice": stats["batches"]["custom_ids_answered_twice"],
        # A (model, messages) answered a second time, sync or batch: paid twice.
        "paid_twice": stats["repeated_answers"],
    }


# --- main ------------------------------------------------------------------------------


def flatten(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "classify.cost_ratio_batch_to_sync": result["classify"]["cost_ratio_batch_to_sync"],
        "summarise.cost_ratio_batch_to_sync": result["summarise"]["cost_ratio_batch_to_sync"],
        "deadline.rows_done_by_deadline_pct": result["deadline"]["rows_done_by_deadline_pct"],
        "deadline.cost_ratio_to_sync": result["deadline"]["cost_ratio_to_sync"],
        "prompt_cache.cost_ratio": result["prompt_cache"]["cost_ratio"],
        "faults.rows_lost": result["faults"]["rows_lost"],
        "faults.duplicates": result["faults"]["duplicates"],
        "faults.paid_twice": result["faults"]["paid_twice"],
    }


def meets(name: str, value: float) -> str:
    if name not in TARGETS:
        return ""
    op, target = TARGETS[name]
    ok = value <= target if op == "<=" else value >= target
    return f"{op} {target:g}  {'ok' if ok else 'MISSED'}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="5,000 tickets instead of 50,000")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    tickets = 5_000 if args.quick else 50_000
    docs = 100 if args.quick else 400
    long_docs = [30_000, 230_000] if args.quick else [20_000, 40_000, 60_000, 230_000]
    small = 2_000 if args.quick else 5_000  # deadline, prompt cache and fault scenarios
    import ray  # after pipeline (imported above), so its loopback default applies

    os.environ.pop("RAY_ADDRESS", None)
    started = time.monotonic()
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    checks = Checks()
    result: dict[str, Any] = {"quick": args.quick}
    try:
        with tempfile.TemporaryDirectory(prefix="tl-batch-bench-") as tmp:
            root = Path(tmp)
            data = make_inputs(root / "data", tickets, docs, long_docs)
            few = make_inputs(root / "few", small, 1, [])["tickets"]
            unique = root / "unique"  # no identical rows: a repeat answer is a fault
            write_shards(unique, shards=4, rows=small // 4, row_group=small // 8)
            result["classify"] = cost_ratio("classify", data["tickets"], root / "cl", checks)
            result["summarise"] = cost_ratio("summarise", data["documents"], root / "su", checks)
            result["deadline"] = deadline(few, root / "dl", checks)
            result["prompt_cache"] = prompt_cache(few, root / "pc", checks)
            result["faults"] = faults(unique, root / "fx", checks)
    finally:
        ray.shutdown()
    result["faults"]["rows_lost"] = checks.rows_lost
    result["faults"]["duplicates"] = checks.duplicates
    result["figures"] = figures = flatten(result)
    result["problems"] = checks.problems
    result["wall_s"] = round(time.monotonic() - started, 1)

    print(f"\nbatch benchmark ({'quick' if args.quick else 'full'}), {result['wall_s']} s")
    for label in ("classify", "summarise"):
        r = result[label]
        print(
            f"  {label}: {r['rows']:,} rows; sync ${r['sync']['cost_usd']:.4f} "
            f"({r['sync']['calls']:,} calls, {r['sync']['wall_s']} s), batch "
            f"${r['batch']['cost_usd']:.4f} ({r['batch']['calls']:,} calls, "
            f"{r['batch']['batches']} batches, {r['batch']['wall_s']} s); every call at "
            f"the batch price: ${r['batch']['cost_usd_all_at_batch_price']:.4f}, "
            f"ratio {r['cost_ratio_all_at_batch_price']}"
        )
    d = result["deadline"]
    print(
        f"  deadline: {d['rows']:,} rows, deadline {d['deadline_s']:.0f} s, done in "
        f"{d['wall_s']} s; {d['batches_submitted']} batches taken back, "
        f"{d['calls_batch']} calls answered in batch, {d['calls_sync']} sync"
    )
    p = result["prompt_cache"]
    print(
        f"  prompt cache: {p['instruction_tokens']:,}-token instructions; "
        f"${p['with']['cost_usd']:.4f} with ({p['with']['cached_input_tokens']:,} cached "
        f"tokens), ${p['without']['cost_usd']:.4f} without"
    )
    for label in ("worker_killed", "expired"):
        f = result["faults"][label]
        print(
            f"  faults {label}: {f['batches_created']} batches, {f['resubmitted']} requests "
            f"submitted again, {f['orphan_requests']} in batches never journalled, "
            f"{f['paid_twice']} answered twice"
        )
    print(f"\n  {'figure':<38} {'value':>10}  target")
    for name, value in figures.items():
        print(f"  {name:<38} {value:>10}  {meets(name, value)}")
    for problem in checks.problems:
        print(f"  PROBLEM: {problem}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    missed = [n for n, v in figures.items() if meets(n, v).endswith("MISSED")]
    return 1 if missed or checks.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
