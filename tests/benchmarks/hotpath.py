"""The hot path per row: the CPU a worker spends on one row, by stage, against a bare
aiohttp client sending the same requests; and how hard the workers press a quota actor.

    python tests/benchmarks/hotpath.py                 # 5,000 rows, 3 repeats
    python tests/benchmarks/hotpath.py --quick --json out.json

1. worker: one unit of N rows run in this process (`UnitRunner`, no Ray) against the
   simulator in a child process at zero latency, so the worker's own CPU is what is
   measured. Stages are timed by the CPU of the thread that runs them (reading, routing
   and preparing, pricing and figures, writing the unit, the journal); what is left of
   the process's CPU is the calls: building each request, aiohttp, parsing the answer,
   retries and the executor's accounting. Beside it, a bare aiohttp client sends the same
   request bodies 64 at a time: `worker_cpu_us_per_row / bare_aiohttp_cpu_us_per_row` is
   the overhead tierline adds to a plain client. Median of the repeats.
2. quota actor: one real `QuotaActor` in a local Ray. Its ceiling: 16 callers leasing as
   fast as they can for 3 s. Its load: 1, 2, 4 and 8 workers' quota clients (the real
   `QuotaClient`, each with 64 rows in flight, 10 ms answers) under a shared limit of
   12,000 rpm, counting every actor call; `calls_per_row` is what the capacity model
   (`capacity.py`) multiplies by a night's rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402

from pipeline.engine import journal as journal_mod  # noqa: E402
from pipeline.engine import worker as worker_mod  # noqa: E402
from pipeline.engine.plan import make_plan  # noqa: E402
from pipeline.engine.worker import UnitRunner  # noqa: E402
from pipeline.sim import Latency, SimConfig  # noqa: E402
from tests.benchmarks import throughput as tp  # noqa: E402
from tests.benchmarks.harness import TimedSim  # noqa: E402

KEY_ENV = "TIERLINE_BENCH_HOTPATH_KEY"
CPU: dict[str, float] = defaultdict(float)  # stage -> thread CPU seconds


def _timed(stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            CPU[stage] += time.thread_time() - t

    return wrapper


@contextmanager
def stage_timers() -> Iterator[None]:
    """Wrap each stage's function for the CPU of the thread that runs it."""
    patches = [
        (worker_mod, "read_unit", "read"),
        (UnitRunner, "prepare", "prepare + route"),
        (worker_mod, "unit_tables", "account (tables, prices)"),
        (UnitRunner, "_figures", "account (figures)"),
        (worker_mod, "write_unit", "write unit + marker"),
        (journal_mod, "to_record", "journal (records)"),
    ]
    saved = []
    for owner, name, stage in patches:
        if hasattr(owner, name):
            saved.append((owner, name, getattr(owner, name)))
            setattr(owner, name, _timed(stage, getattr(owner, name)))
    try:
        yield
    finally:
        for owner, name, fn in saved:
            setattr(owner, name, fn)


def worker_run(sim: TimedSim, rows: int, tmp: Path) -> dict[str, float]:
    """Process CPU per row of one unit, and its stages."""
    data = tp.make_rows(rows)
    inp = tp.write_rows(tmp / "in", data, row_group=rows)
    spec = tp.job_spec(
        "hotpath",
        inp,
        str(tmp / f"out-{time.monotonic_ns()}"),
        rows_per_unit=rows,
        providers={"p": tp.openai_provider(sim, KEY_ENV)},
        tiers={"cheap": [f"p/{tp.MODEL}"]},
        run={"workers": 1, "max_in_flight": tp.CONCURRENCY},
    )
    plan = make_plan(spec)
    runner = UnitRunner(spec, plan.job_id, spec.output.uri, {})

    async def go() -> Any:
        async with runner:
            return await runner.process(plan.units[0])

    CPU.clear()
    with stage_timers():
        t0, w0 = time.process_time(), time.perf_counter()
        report = asyncio.run(go())
        total, wall = time.process_time() - t0, time.perf_counter() - w0
    assert report.rows_ok == rows, report
    out = {stage: 1e6 * s / rows for stage, s in CPU.items()}
    out["calls and the rest (request, HTTP, parse, executor, storage threads)"] = (
        1e6 * (total - sum(CPU.values())) / rows
    )
    out["total"] = 1e6 * total / rows
    out["rows_per_s"] = rows / wall
    return out


def bare_run(sim: TimedSim, rows: int) -> dict[str, float]:
    """Process CPU per row of a bare aiohttp client sending the same bodies."""
    bodies = tp.request_bodies(tp.make_rows(rows))
    url = sim.base_url + "/chat/completions"

    async def go() -> None:
        sem = asyncio.Semaphore(tp.CONCURRENCY)
        headers = {"Authorization": f"Bearer {os.environ[KEY_ENV]}"}
        async with aiohttp.ClientSession() as session:

            async def one(body: dict[str, Any]) -> None:
                async with sem, session.post(url, json=body, headers=headers) as r:
                    await r.json()

            await asyncio.gather(*(one(b) for b in bodies))

    t0, w0 = time.process_time(), time.perf_counter()
    asyncio.run(go())
    total, wall = time.process_time() - t0, time.perf_counter() - w0
    return {"total": 1e6 * total / rows, "rows_per_s": rows / wall}


# --- the quota actor ---------------------------------------------------------------------


class Counted:
    """An actor handle whose method calls are counted."""

    def __init__(self, actor: Any, counts: dict[str, int]) -> None:
        self.actor, self.counts = actor, counts

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.actor, name)
        counts = self.counts

        class _M:
            def remote(self, *a: Any, **k: Any) -> Any:
                counts[name] = counts.get(name, 0) + 1
                return method.remote(*a, **k)

        return _M()


def quota_ceiling(actor: Any, callers: int = 16, seconds: float = 3.0) -> float:
    async def go() -> int:
        done = 0
        end = time.monotonic() + seconds

        async def one(i: int) -> None:
            nonlocal done
            while time.monotonic() < end:
                await actor.lease.remote(f"ceiling-{i}", 1, 100, 0, 100)
                done += 1

        await asyncio.gather(*(one(i) for i in range(callers)))
        return done

    return asyncio.run(go()) / seconds


def quota_load(actor: Any, limits: Any, workers: int, seconds: float) -> dict[str, float]:
    """`workers` quota clients, each keeping 64 rows in flight with 10 ms answers."""
    from pipeline.limits.quota_actor import QuotaClient

    counts: dict[str, int] = {}
    rows = 0

    async def go() -> None:
        nonlocal rows
        end = time.monotonic() + seconds
        clients = [QuotaClient(Counted(actor, counts), f"w{w}", limits) for w in range(workers)]

        async def row_loop(c: Any) -> None:
            nonlocal rows
            while time.monotonic() < end:
                await c.acquire(100)
                await asyncio.sleep(0.01)
                c.release(100, 100, True)
                rows += 1

        await asyncio.gather(*(row_loop(c) for c in clients for _ in range(64)))
        for c in clients:
            await c.close()

    started = time.monotonic()
    asyncio.run(go())
    took = time.monotonic() - started  # rows that waited past the end count too
    calls = sum(counts.values())
    return {
        "workers": workers,
        "rows_per_s": rows / took,
        "limit_rows_per_s": limits.rpm / 60.0,
        "calls_per_s": calls / took,
        "calls_per_row": calls / max(rows, 1),
    }


def quota_figures(seconds: float) -> dict[str, Any]:
    import ray

    from pipeline.limits.quota_actor import ensure_quota_actor
    from schemas.job import Limits

    os.environ.pop("RAY_ADDRESS", None)
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    try:
        limits = Limits(rpm=12_000)
        actor = ensure_quota_actor(f"hotpath-{time.monotonic_ns()}", limits)
        ceiling = quota_ceiling(actor)
        loads = []
        for w in (1, 2, 4, 8):
            a = ensure_quota_actor(f"hotpath-{w}-{time.monotonic_ns()}", limits)
            loads.append(quota_load(a, limits, w, seconds))
    finally:
        ray.shutdown()
    top = loads[-1]
    return {
        "ceiling_calls_per_s": ceiling,
        "loads": loads,
        "calls_per_s": top["calls_per_s"],
        "calls_per_row": top["calls_per_row"],
        "calls_per_worker_s": top["calls_per_s"] / top["workers"],
        "share_of_ceiling": top["calls_per_s"] / ceiling,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1,000 rows, 2 repeats, 3 s loads")
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    rows = args.rows or (1000 if args.quick else 5000)
    repeats = 2 if args.quick else 3
    os.environ[KEY_ENV] = "sk-tierline-bench-hotpath0000"
    sim = TimedSim.start(SimConfig(latency=Latency(mean_ms=0, jitter_ms=0)))
    workers, bares = [], []
    try:
        with tempfile.TemporaryDirectory(prefix="tl-hotpath-") as tmp:
            for _ in range(repeats):  # side by side, alternating
                workers.append(worker_run(sim, rows, Path(tmp)))
                bares.append(bare_run(sim, rows))
    finally:
        sim.proc.terminate()
    stages = {k: statistics.median(w[k] for w in workers) for k in workers[0]}
    bare = statistics.median(b["total"] for b in bares)
    quota = quota_figures(3.0 if args.quick else 6.0)
    figures = {
        "rows": rows,
        "worker_cpu_us_per_row": stages["total"],
        "bare_aiohttp_cpu_us_per_row": bare,
        "overhead_ratio": stages["total"] / bare,
        "stages_us_per_row": {k: v for k, v in stages.items() if k not in ("total", "rows_per_s")},
        "quota_actor": quota,
        "load_avg_1m": os.getloadavg()[0],
    }
    print(f"\nhot path per row: {rows:,} rows, one unit in this process, simulator at 0 ms")
    print(f"  {'stage':<40} {'CPU us/row':>10}")
    for k, v in sorted(figures["stages_us_per_row"].items(), key=lambda kv: -kv[1]):
        print(f"  {k:<40} {v:>10.1f}")
    print(f"  {'worker, all stages':<40} {stages['total']:>10.1f}")
    print(f"  {'bare aiohttp, same requests':<40} {bare:>10.1f}")
    print(f"  overhead ratio (worker / bare): {figures['overhead_ratio']:.2f}")
    print(f"\nquota actor: ceiling {quota['ceiling_calls_per_s']:,.0f} calls/s (16 callers)")
    for ld in quota["loads"]:
        print(
            f"  {ld['workers']} workers: {ld['rows_per_s']:,.0f} rows/s, "
            f"{ld['calls_per_s']:,.1f} actor calls/s, {ld['calls_per_row']:.4f} per row"
        )
    print(f"  at 8 workers: {quota['share_of_ceiling']:.1%} of its ceiling")
    if args.json:
        args.json.write_text(json.dumps({"figures": figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
