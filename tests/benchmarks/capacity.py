"""The capacity model: what a night of 1 million, 100 million or 1 billion rows needs.

    python tests/benchmarks/capacity.py                       # the table in infra/CAPACITY.md
    python tests/benchmarks/capacity.py --latency-s 6 --tokens-in 2500 --window-h 8
    python tests/benchmarks/capacity.py --measured scale.json hotpath.json --json out.json

Arithmetic, not a run: each size's rate (rows over the night's window) is put through the
per-row costs measured on this machine by the other benchmarks, and the first limit it
meets is named. The measured inputs are the constants below, each with the benchmark that
gives it; `--measured` takes them from those benchmarks' `--json` files instead, so the
table follows the code as it changes. Everything else (latency, tokens, window, prices of
S3) is an assumption to set for your own workload with a flag.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

# --- measured here (2-core machine); the benchmark that prints each --------------------
WORKER_CPU_US_PER_ROW = 384.0  # tests/benchmarks/hotpath.py: worker_cpu_us_per_row (378-384)
QUOTA_ACTOR_CEILING = 1951.0  # hotpath.py: quota_actor.ceiling_calls_per_s (1,951-2,074)
# A worker whose rows wait on an account asks its actor at most every 50 ms, and settles
# twice a second: hotpath.py measured 195-198 calls/s from 8 such workers.
QUOTA_CALLS_PER_WORKER_S = 24.1  # hotpath.py: quota_actor.calls_per_s / 8 workers (190-193)
DRIVER_BASE_MB = 226.0  # scale.py: driver_peak_rss_mb.rows_1m (flat in rows)
DRIVER_KB_PER_UNIT = 4.0  # scale_plan.py: resume_kb_per_unit (markers held while summing)
MARKER_KB = 4.9  # scale.py: markers KB / units at 1M rows (a classify unit's figures)

# --- the code's own constants (pipeline/) --------------------------------------------
BUDGET_CHUNK_CALLS = 50  # pipeline/limits/budget.py: a budget lease covers ~50 calls
JOURNAL_EVERY_ROWS = 32  # pipeline/engine/journal.py: a journal part per 32 answers...
JOURNAL_MAX_PER_S = 5.0  # ...at most 5 parts a second per unit in flight
UNITS_PER_WORKER = 2  # a worker overlaps two units (pipeline/engine/worker.py)
FILES_PER_UNIT = 4  # results, costs, errors, commit marker
CACHE_SHARDS = 256  # pipeline/calls/cache.py: a response cache segment per shard...
CACHE_SEGMENT_MIN = 64  # ...once it holds 64 answers...
CACHE_FLUSH_EVERY_S = 300.0  # ...or all it holds once the oldest waited 300 s (mixed)
CACHE_COMPACT_AFTER = 16  # a shard's 16 segments are merged into one (another PUT)

# --- S3 (Standard, us-east-1 list prices) and its documented request rates -----------
S3_PUT_USD_PER_1K = 0.005
S3_GET_USD_PER_1K = 0.0004
S3_PUTS_PER_S_PER_PREFIX = 3500

POD_CORES = 2  # infra/kuberay/raycluster.yaml: a worker pod's cores
CPU_HEADROOM = 0.7  # plan workers to run at 70% of a core


@dataclass(frozen=True)
class Workload:
    rows: int
    window_h: float = 6.0  # the nightly CronJob's run deadline
    latency_s: float = 1.0  # a provider's mean answer time for this task
    calls_per_row: float = 1.1  # escalations, cascades and retries on top of one call
    tokens_in: int = 300  # a helpdesk ticket with its instructions
    tokens_out: int = 10  # a label
    max_in_flight: int = 64  # run.max_in_flight, per worker
    rows_per_unit: int = 1000  # input.rows_per_unit


@dataclass(frozen=True)
class Measured:
    worker_cpu_us_per_row: float = WORKER_CPU_US_PER_ROW
    quota_actor_ceiling: float = QUOTA_ACTOR_CEILING
    quota_calls_per_worker_s: float = QUOTA_CALLS_PER_WORKER_S
    driver_base_mb: float = DRIVER_BASE_MB
    driver_kb_per_unit: float = DRIVER_KB_PER_UNIT
    marker_kb: float = MARKER_KB


def need(w: Workload, m: Measured) -> dict[str, Any]:
    """What a workload needs, and the first limit it meets."""
    rate = w.rows / (w.window_h * 3600)  # rows/s over the night
    calls = rate * w.calls_per_row
    in_flight = calls * w.latency_s  # Little's law
    cores = rate * m.worker_cpu_us_per_row / 1e6 / CPU_HEADROOM
    workers = max(math.ceil(cores), math.ceil(in_flight / w.max_in_flight), 1)
    pods = math.ceil(max(cores / POD_CORES, workers / 8))  # 8 worker actors a pod (4 CPUs)
    units = math.ceil(w.rows / w.rows_per_unit)
    unit_s = w.rows_per_unit / max(rate / workers / UNITS_PER_WORKER, 1e-9)
    parts = min(w.rows_per_unit / JOURNAL_EVERY_ROWS, JOURNAL_MAX_PER_S * unit_s) + 1
    # The response cache (on by default): a worker writes a shard's segment when it
    # holds CACHE_SEGMENT_MIN answers, and every CACHE_FLUSH_EVERY_S the rest in one mixed
    # segment (the 16th of which is split into up to CACHE_SHARDS segments); a shard's
    # CACHE_COMPACT_AFTER segments are merged into one.
    per_worker = rate / workers
    cache_puts_per_s = (
        workers
        * (
            per_worker / CACHE_SEGMENT_MIN
            + (1 + CACHE_SHARDS / CACHE_COMPACT_AFTER) / CACHE_FLUSH_EVERY_S
        )
        * (1 + 1 / CACHE_COMPACT_AFTER)
    )
    cache_puts = cache_puts_per_s * w.window_h * 3600
    puts = units * (FILES_PER_UNIT + parts) + cache_puts
    journal_puts_per_s = (
        workers
        * UNITS_PER_WORKER
        * min(JOURNAL_MAX_PER_S, rate / workers / UNITS_PER_WORKER / JOURNAL_EVERY_ROWS)
    )
    # The worst case: every worker's rows wait on the one account (its polls and syncs).
    # A worker the quota does not hold back leases up to 64 requests a call: fewer calls.
    quota_calls = workers * m.quota_calls_per_worker_s
    budget_calls = 2 * calls / BUDGET_CHUNK_CALLS
    driver_mb = m.driver_base_mb + units * m.driver_kb_per_unit / 1024
    limits = {
        "quota actor": quota_calls / m.quota_actor_ceiling,
        "budget actor": budget_calls / m.quota_actor_ceiling,
        "S3 PUTs per prefix": max(journal_puts_per_s, cache_puts_per_s / CACHE_SHARDS)
        / S3_PUTS_PER_S_PER_PREFIX,
        "driver memory (8 GB pod)": driver_mb / 8192,
    }
    first = max(limits, key=lambda k: limits[k])
    return {
        "rows": w.rows,
        "rows_per_s": rate,
        "provider_rpm": calls * 60,
        "provider_tpm": calls * 60 * (w.tokens_in + w.tokens_out),
        "in_flight": in_flight,
        "worker_cores": cores,
        "workers": workers,
        "worker_pods": pods,
        "quota_actor_calls_per_s": quota_calls,
        "budget_actor_calls_per_s": budget_calls,
        "units": units,
        "s3_objects_kept": units * FILES_PER_UNIT,
        "s3_puts": puts,
        "cache_puts": cache_puts,
        "s3_put_usd": puts / 1000 * S3_PUT_USD_PER_1K,
        "s3_resume_get_usd": units / 1000 * S3_GET_USD_PER_1K,
        "markers_mb": units * m.marker_kb / 1024,
        "driver_mb": driver_mb,
        "utilisation": limits,
        "first_limit": first,
    }


def _fmt(v: float) -> str:
    if v >= 100 or float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:.2g}" if v < 10 else f"{v:.1f}"


ROWS = (
    ("rows/s over the window", "rows_per_s"),
    ("provider requests/min (all tiers)", "provider_rpm"),
    ("provider tokens/min", "provider_tpm"),
    ("calls in flight", "in_flight"),
    ("worker cores (at 70%)", "worker_cores"),
    ("worker actors", "workers"),
    ("worker pods (2 cores, 8 actors)", "worker_pods"),
    ("quota actor calls/s", "quota_actor_calls_per_s"),
    ("budget actor calls/s", "budget_actor_calls_per_s"),
    ("work units", "units"),
    ("S3 objects kept", "s3_objects_kept"),
    ("S3 PUTs (journal and response cache included)", "s3_puts"),
    ("of which response cache PUTs", "cache_puts"),
    ("S3 PUT cost, USD", "s3_put_usd"),
    ("driver memory, MB", "driver_mb"),
)


def table(results: list[dict[str, Any]]) -> str:
    head = "| | " + " | ".join(f"{r['rows']:,} rows" for r in results) + " |"
    lines = [head, "|---" * (len(results) + 1) + "|"]
    for label, key in ROWS:
        lines.append(f"| {label} | " + " | ".join(_fmt(r[key]) for r in results) + " |")
    lines.append(
        "| first limit (its use) | "
        + " | ".join(
            f"{r['first_limit']} ({r['utilisation'][r['first_limit']]:.0%})" for r in results
        )
        + " |"
    )
    return "\n".join(lines)


def _dig(doc: Any, dotted: str) -> float | None:
    for part in dotted.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return float(doc) if isinstance(doc, int | float) else None


# Where each measured input sits in the benchmarks' --json files (first found wins).
SOURCES = {
    "worker_cpu_us_per_row": ("figures.worker_cpu_us_per_row", "worker_cpu_us_per_row"),
    "quota_actor_ceiling": ("figures.quota_actor.ceiling_calls_per_s",),
    "quota_calls_per_worker_s": ("figures.quota_actor.calls_per_worker_s",),
    "driver_base_mb": ("figures.driver_peak_rss_mb.rows_1m",),
    "driver_kb_per_unit": ("s3.resume_kb_per_unit", "local.resume_kb_per_unit"),
}


def measured_from(paths: list[Path]) -> Measured:
    m = Measured()
    docs = [json.loads(p.read_text()) for p in paths]
    for name, keys in SOURCES.items():
        for doc in docs:
            v = next((x for k in keys if (x := _dig(doc, k)) is not None), None)
            if v is not None:
                m = replace(m, **{name: v})
                break
    return m


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 100_000_000, 10**9])
    ap.add_argument("--measured", type=Path, nargs="*", default=[], help="benchmark --json files")
    ap.add_argument("--json", type=Path, help="write the model's figures here")
    defaults = Workload(rows=0)
    for f in fields(Workload):
        if f.name != "rows":
            flag = "--" + f.name.replace("_", "-")
            ap.add_argument(flag, type=type(getattr(defaults, f.name)), default=None)
    args = ap.parse_args(argv)
    over = {f.name: getattr(args, f.name) for f in fields(Workload) if f.name != "rows"}
    over = {k: v for k, v in over.items() if v is not None}
    m = measured_from(args.measured)
    results = [need(Workload(rows=n, **over), m) for n in args.sizes]
    print(f"measured inputs: {asdict(m)}")
    print(f"workload: {asdict(replace(defaults, **over))}\n")
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"measured": asdict(m), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
