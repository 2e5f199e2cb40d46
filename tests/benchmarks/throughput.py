"""Throughput of tierline against its peers: one simulator, one machine, one run.

    python tests/benchmarks/throughput.py                 # full: about 6 minutes
    python tests/benchmarks/throughput.py --quick         # about 2 minutes
    python tests/benchmarks/throughput.py --json out.json

Five workloads, all against one simulator in its own process (loopback only), with Ray
started once for the whole run:

1. quota_bound: provider A limited to 600 rpm, provider B by a tpm sized to 5 rows/s of
   this input; rows split 2:1 to match. Reported: achieved rows/s over the ideal (the sum
   of the limit-implied rates) and the share of requests answered 429.
   Target: ratio >= 0.95, 429s <= 1%.
2. latency_bound: 50 ms per answer, no limits, 64 requests in flight for every client:
   tierline (1 worker x 64 and 2 x 32) against a bare aiohttp client (asyncio.gather +
   Semaphore(64), same bodies), Ray Data's HTTP request processor and LiteLLM's Router.
   Target: >= 0.9 of the bare client steady, >= 0.75 with start-up included; far ahead
   of Ray Data and LiteLLM.
3. faults: 10% 5xx and 2% hangs (cut by a 2 s timeout), 4 attempts: every row ends in
   results or errors exactly once. Reported: rows lost, duplicates, retries.
4. pool (`--only pool`): the flagship tier as a pool of three providers with quotas of
   their own (300 + 300 + 100 rpm); rows/s over the sum of the limits, with the default
   strategy and with `ordered` (see tests/benchmarks/pools.py). Target: >= 0.95, 429s
   <= 1%. The ordered run is capped in time (it would take 2.3x as long).
5. hedge (`--only hedge`): a two-provider pool where 2% of answers take 5 s: p99 of a
   row's completion time with `run.hedge` over without (target <= 0.5), and the extra
   cost hedging adds (target <= 5%).

How rates are measured. "run" rows/s = rows answered / the client's wall time, start-up
included (for tierline: `run_job` from plan to summary, worker actors included; Ray's own
start is reported once, apart). "steady" rows/s comes from the simulator's log of answer
times: the answers between the 5th and 95th percentile answer time over that span, so
every client is timed the same way, by the server, without its start-up or its tail.
Ratios use the steady figures. tierline 1x64 and the bare client run twice, alternating,
and the best of each counts: this machine is shared, and one burst of someone else's load
should not decide a ratio (the load average around each workload is reported).

Each tierline job runs `run_job` in a child driver joined to the one Ray cluster (as
`tierline run` does with RAY_ADDRESS), with a time limit: a job that stalls is ended,
reported as stalled with the rate it kept until then, and the run goes on. Ray runs its
workers at niceness 15, the bare and LiteLLM clients run in this process at 0: under
load from other processes that favours the peers, never tierline.

The quota workload first drains the simulator's buckets to one second of headroom:
like a real provider, the simulator lets a fresh key spend a whole minute's allowance at
once, and a client that overshoots the limit would hide behind that burst for the first
minute instead of meeting 429s.

Peers need the `bench` extra (`pip install -e '.[bench]'`): ray[data], litellm. A peer
that fails to import or run is reported as unavailable with its error.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import platform
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import polars as pl  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from jobs.base import get_job_kind, join_text  # noqa: E402
from pipeline.sim import Faults, KeyLimits, Latency, SimConfig  # noqa: E402
from pipeline.sim.generate import input_tokens  # noqa: E402
from schemas.job import ClassifyTask, JobSpec, parse_spec  # noqa: E402
from tests.benchmarks.harness import JobRun, RequestLog, TimedSim, run_job_child  # noqa: E402
from tests.benchmarks.pools import (  # noqa: E402
    HEDGE_KEYS,
    POOL_KEYS,
    hedge_bound,
    pool_bound,
    print_hedge,
    print_pool,
)

MODEL = "gpt-4o-mini"
CONCURRENCY = 64
LATENCY_MS = 50.0
RPM_A = 600  # provider A: 10 rows/s
B_ROWS_PER_S = 5.0  # provider B: tpm sized so its tokens allow this many rows/s
TASK = ClassifyTask(
    kind="classify",
    labels=["billing", "technical", "account", "other"],
    instructions="Classify the support ticket by its main topic.",
)
BODIES = {
    "billing": "I was charged twice on my invoice and need a refund for the billing error",
    "technical": "The app crashes with an error and the technical API times out on login",
    "account": "Please change the account email and reset the password for my account",
    "other": "Just a question about your office hours and general feedback",
}
# One variable per workload: quota actors are found by account (kind, URL, key variable),
# so each workload starts from a fresh lease book.
KEYS = {
    "TIERLINE_BENCH_KEY_A": "sk-tierline-bench-aaaaaa",
    "TIERLINE_BENCH_KEY_B": "sk-tierline-bench-bbbbbb",
    "TIERLINE_BENCH_KEY_L": "sk-tierline-bench-llllll",
    "TIERLINE_BENCH_KEY_F": "sk-tierline-bench-ffffff",
    **POOL_KEYS,
    **HEDGE_KEYS,
}
TAG = {env: key[-6:] for env, key in KEYS.items()}  # what the simulator log records


@dataclass(frozen=True)
class Sizes:
    quota_s: float
    latency_rows: int
    rows_per_unit: int
    peer_cap_s: float
    fault_rows: int
    ray_data_actors: tuple[int, ...]


FULL = Sizes(60.0, 5000, 1000, 60.0, 2000, (1, 8))
QUICK = Sizes(15.0, 1000, 500, 15.0, 500, (1,))


# --- input -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rows:
    ids: list[str]
    subjects: list[str]
    bodies: list[str]
    lanes: list[str]

    def texts(self) -> list[str]:
        return [join_text([s, b]) or "" for s, b in zip(self.subjects, self.bodies, strict=True)]


def make_rows(n: int, b_every: int = 0) -> Rows:
    """n ticket rows; with `b_every`, every b_every-th row is in lane 'b'."""
    labels = list(BODIES)
    ids, subjects, bodies, lanes = [], [], [], []
    for i in range(n):
        label = labels[i % len(labels)]
        ids.append(f"R-{i:06d}")
        subjects.append(f"Ticket {i} about {label}")
        bodies.append(f"{BODIES[label]} (case {i}).")
        lanes.append("b" if b_every and i % b_every == b_every - 1 else "a")
    return Rows(ids, subjects, bodies, lanes)


def write_rows(folder: Path, rows: Rows, row_group: int) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {"id": rows.ids, "subject": rows.subjects, "body": rows.bodies, "lane": rows.lanes}
    )
    pq.write_table(table, folder / "part-000.parquet", row_group_size=row_group)
    return str(folder)


def request_bodies(rows: Rows) -> list[dict[str, Any]]:
    """The exact chat-completions bodies tierline sends for these rows."""
    kind = get_job_kind(TASK)
    return [
        {
            "model": MODEL,
            "messages": [{"role": m.role, "content": m.content} for m in kind.build_messages(t)],
            "max_tokens": kind.max_output_tokens(),
            "temperature": 0.0,
        }
        for t in rows.texts()
    ]


def sim_tokens(body: dict[str, Any]) -> int:
    """Tokens the simulator charges against tpm for one body: input + max_tokens."""
    msgs = tuple((m["role"], m["content"]) for m in body["messages"])
    return input_tokens(msgs, body["model"]) + int(body["max_tokens"])


def job_spec(
    name: str,
    input_uri: str,
    output_uri: str,
    rows_per_unit: int,
    providers: dict[str, Any],
    tiers: dict[str, list[str]],
    run: dict[str, Any],
    rules: list[dict[str, str]] | None = None,
    default: str = "cheap",
) -> JobSpec:
    return parse_spec(
        {
            "name": name,
            "task": TASK.model_dump(),
            "input": {
                "uri": input_uri,
                "id_column": "id",
                "text_columns": ["subject", "body"],
                "rows_per_unit": rows_per_unit,
            },
            "output": {"uri": output_uri},
            "providers": providers,
            "tiers": tiers,
            "routing": {"policy": "rules", "rules": rules or [], "default": default},
            "run": run,
        }
    )


def openai_provider(sim: TimedSim, key_env: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "openai", "base_url": sim.base_url, "api_key_env": key_env, **extra}


# --- one client's run ------------------------------------------------------------------


@dataclass
class ClientRun:
    name: str
    rows: int  # rows offered (a time-capped peer may not get to all of them)
    ok: int  # rows answered
    wall_s: float  # client wall time, start-up included
    steady: float  # rows/s from the simulator's answer times (p5..p95)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def run_rate(self) -> float:
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "rows_offered": self.rows,
            "rows_ok": self.ok,
            "wall_s": round(self.wall_s, 3),
            "rows_per_s_run": round(self.run_rate, 2),
            "rows_per_s_steady": round(self.steady, 2),
            "note": self.note,
            **self.extra,
        }


def timed_run(sim: TimedSim, name: str, rows: int, body: Callable[[], int]) -> ClientRun:
    """Reset the simulator, run `body` (returns rows answered), time it server-side."""
    sim.reset()
    started = time.monotonic()
    ok = body()
    wall = time.monotonic() - started
    sim.quiesce()
    log = sim.log()
    return ClientRun(name, rows, ok, wall, log.steady_rate(), extra={"_log": log})


def tierline_run(
    sim: TimedSim, name: str, rows: int, spec: JobSpec, out: Path, timeout_s: float
) -> tuple[ClientRun, JobRun]:
    """One job through `run_job` (in a child driver on this Ray cluster), timed by the
    simulator; wall = run_job itself, worker actors' start-up included."""
    import ray

    address = ray.get_runtime_context().gcs_address
    sim.reset()
    job = run_job_child(spec.model_dump_json(), out, address, timeout_s)
    ended = time.time()
    sim.quiesce()
    log = sim.log()
    run = ClientRun(name, rows, job.rows_ok, job.wall_s, log.steady_rate(), extra={"_log": log})
    if job.status != "complete":
        print(f"  {name}: job {job.status} {job.detail}", file=sys.stderr)
        run.note = f"job {job.status}: {job.detail}".strip()
        run.extra["job_status"] = job.status
        if job.stalled:  # rows answered from its first request until it was ended
            run.ok = len(log.ok_times())
            run.steady = stalled_rate(log, ended)
            run.extra["ended_at"] = ended
    return run, job


def stalled_rate(log: RequestLog, ended: float, key: str | None = None) -> float:
    span = ended - min(log.t_in) if log.t_in else 0.0
    return len(log.ok_times(key)) / span if span > 0 else 0.0


# --- peers -----------------------------------------------------------------------------


async def _bare(url: str, key: str, bodies: list[dict[str, Any]], concurrency: int) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        sem = asyncio.Semaphore(concurrency)

        async def one(b: dict[str, Any]) -> bool:
            async with sem, session.post(url, json=b, headers=headers) as r:
                await r.json()
                return r.status == 200

        return sum(await asyncio.gather(*(one(b) for b in bodies)))


def bare_run(sim: TimedSim, name: str, bodies: list[dict[str, Any]], env: str) -> ClientRun:
    url, key = sim.base_url + "/chat/completions", KEYS[env]
    run = timed_run(
        sim, name, len(bodies), lambda: asyncio.run(_bare(url, key, bodies, CONCURRENCY))
    )
    return run


async def _litellm(base_url: str, key: str, bodies: list[dict[str, Any]], cap_s: float) -> int:
    import litellm
    from litellm import Router

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    router = Router(
        model_list=[
            {
                "model_name": "bench",
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": base_url,
                    "api_key": key,
                    "rpm": 1_000_000,
                },
            }
        ]
    )
    sem = asyncio.Semaphore(CONCURRENCY)
    deadline = time.monotonic() + cap_s

    async def one(b: dict[str, Any]) -> bool:
        async with sem:
            if time.monotonic() > deadline:
                return False
            r = await router.acompletion(
                model="bench",
                messages=b["messages"],
                max_tokens=b["max_tokens"],
                temperature=b["temperature"],
            )
            return bool(r.choices[0].message.content)

    return sum(await asyncio.gather(*(one(b) for b in bodies)))


def litellm_run(sim: TimedSim, bodies: list[dict[str, Any]], env: str, cap_s: float) -> ClientRun:
    started = time.monotonic()
    import litellm  # noqa: F401  (about 3 s: timed apart from the run)

    imported = time.monotonic() - started
    run = timed_run(
        sim,
        "litellm Router",
        len(bodies),
        lambda: asyncio.run(_litellm(sim.base_url, KEYS[env], bodies, cap_s)),
    )
    run.note = f"import {imported:.1f}s not in wall; capped at {cap_s:g}s"
    return run


def ray_data_run(
    sim: TimedSim, bodies: list[dict[str, Any]], env: str, actors: int, cap_s: float
) -> ClientRun:
    import ray.data
    from ray.data.llm import HttpRequestProcessorConfig, build_processor

    ray.data.DataContext.get_current().enable_progress_bars = False
    # Every stage must fit in 2 CPUs at once, or the pipeline waits for CPUs forever.
    config = HttpRequestProcessorConfig(
        url=sim.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {KEYS[env]}"},
        batch_size=64,
        concurrency=actors,
        http_request_stage={"concurrency": (actors, actors), "num_cpus": 1.0 / actors},
    )
    processor = build_processor(
        config,
        postprocess=lambda row: {
            "id": row["id"],
            "ok": bool(row["http_response"]["choices"][0]["message"]["content"]),
        },
        postprocess_map_kwargs={"num_cpus": 0.25},
    )
    items = [{"id": i, "payload": b} for i, b in enumerate(bodies)]
    done = [0]
    failed: list[BaseException] = []

    def consume(deadline: float) -> None:
        try:
            it = processor(ray.data.from_items(items)).iter_batches(
                batch_size=None, batch_format="pyarrow"
            )
            for batch in it:
                done[0] += int(pc.sum(batch["ok"]).as_py() or 0)
                if time.monotonic() > deadline:
                    break
        except BaseException as exc:
            failed.append(exc)

    def body() -> int:
        # In a thread: a pipeline that stalls (no batch ever comes) cannot hold the run.
        worker = threading.Thread(target=consume, args=(time.monotonic() + cap_s,), daemon=True)
        worker.start()
        worker.join(cap_s + 30)
        if failed:
            raise failed[0]
        if worker.is_alive():
            raise TimeoutError(f"no batch for {cap_s + 30:g}s; {done[0]} rows done")
        return done[0]

    run = timed_run(sim, f"ray data x{actors}", len(bodies), body)
    # Its UDF awaits a batch's requests one after another: one in flight per actor.
    run.note = f"{actors} actor(s) = {actors} in flight, batch 64; capped at {cap_s:g}s"
    return run


def peer(name: str, fn: Callable[[], ClientRun]) -> ClientRun:
    """Run a peer; an import or run failure is reported, never faked."""
    try:
        return fn()
    except Exception as exc:
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        print(f"  {name}: unavailable: {detail}", file=sys.stderr)
        return ClientRun(name, 0, 0, 0.0, 0.0, note=f"unavailable: {detail[:300]}")


# --- workloads -------------------------------------------------------------------------


def _tiny(max_tokens: int) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": max_tokens,
    }


def quota_bound(sim: TimedSim, tmp: Path, sizes: Sizes) -> dict[str, Any]:
    rate_a = RPM_A / 60.0
    n = round((rate_a + B_ROWS_PER_S) * sizes.quota_s)
    rows = make_rows(n, b_every=3)  # 2 rows for A, 1 for B: the ratio of their rates
    bodies = request_bodies(rows)
    b_tokens = [sim_tokens(b) for b, lane in zip(bodies, rows.lanes, strict=True) if lane == "b"]
    mean_b = sum(b_tokens) / len(b_tokens)
    tpm_b = round(B_ROWS_PER_S * 60 * mean_b)
    ideal = {"a": rate_a, "b": tpm_b / 60.0 / mean_b}
    env = {"a": "TIERLINE_BENCH_KEY_A", "b": "TIERLINE_BENCH_KEY_B"}
    sim.configure(
        SimConfig(
            latency=Latency(mean_ms=LATENCY_MS, jitter_ms=10),
            limits={KEYS[env["a"]]: KeyLimits(rpm=RPM_A), KEYS[env["b"]]: KeyLimits(tpm=tpm_b)},
        )
    )
    # Leave one second of headroom in each bucket (see the module docstring).
    url = sim.base_url + "/chat/completions"
    asyncio.run(_bare(url, KEYS[env["a"]], [_tiny(1)] * (RPM_A - RPM_A // 60), 100))
    drain_b = tpm_b - tpm_b // 60 - sim_tokens(_tiny(0))
    asyncio.run(_bare(url, KEYS[env["b"]], [_tiny(drain_b)], 1))
    unit = max(1, n // 6)
    spec = job_spec(
        "bench-quota",
        write_rows(tmp / "quota-in", rows, row_group=unit),
        str(tmp / "quota-out"),
        rows_per_unit=unit,
        providers={
            "a": openai_provider(sim, env["a"], limits={"rpm": RPM_A}),
            "b": openai_provider(sim, env["b"], limits={"tpm": tpm_b}),
        },
        tiers={"cheap": [f"a/{MODEL}"], "mid": [f"b/{MODEL}"]},
        rules=[{"when": "lane = 'b'", "tier": "mid"}],
        run={"workers": 2, "max_in_flight": CONCURRENCY},
    )
    run, job = tierline_run(
        sim, "tierline 2x64", n, spec, tmp / "quota-out", timeout_s=1.5 * sizes.quota_s + 10
    )
    stats = sim.stats()
    log: RequestLog = run.extra.pop("_log")
    total = stats["total"]
    share_429 = total["rate_limited"] / total["requests"] if total["requests"] else 0.0
    providers = {}
    for p in ("a", "b"):
        key = KEYS[env[p]]
        counts = stats["keys"].get(f"{key[:3]}...{key[-4:]}", {})
        steady = (
            stalled_rate(log, run.extra["ended_at"], TAG[env[p]])
            if job.stalled
            else log.steady_rate(TAG[env[p]])
        )
        providers[p] = {
            "limit": f"rpm {RPM_A}" if p == "a" else f"tpm {tpm_b} ({mean_b:.1f} tokens/request)",
            "ideal_rows_per_s": round(ideal[p], 3),
            "rows_per_s_steady": round(steady, 3),
            "ratio_to_ideal": round(steady / ideal[p], 4),
            "requests": counts.get("requests", 0),
            "rate_limited": counts.get("rate_limited", 0),
        }
    ideal_all = sum(ideal.values())
    return {
        "ratio_to_ideal": round(run.steady / ideal_all, 4),
        "share_429": round(share_429, 4),
        "ideal_rows_per_s": round(ideal_all, 3),
        "rows": n,
        "rows_ok": run.ok,
        "job_status": job.status,
        "rows_per_s_steady": round(run.steady, 3),
        "rows_per_s_run": round(run.run_rate, 3),
        "ratio_to_ideal_run": round(run.run_rate / ideal_all, 4),
        "wall_s": round(run.wall_s, 2),
        "window_s": round(log.window_s(), 2),
        "requests": total["requests"],
        "rate_limited": total["rate_limited"],
        "providers": providers,
        "config": f"2 workers x {CONCURRENCY} in flight, rows 2:1 over A:B, {unit} rows per "
        f"unit, sim latency {LATENCY_MS:g}+-10 ms, sim buckets drained to 1 s of headroom",
    }


def latency_bound(sim: TimedSim, tmp: Path, sizes: Sizes) -> dict[str, Any]:
    n = sizes.latency_rows
    rows = make_rows(n)
    bodies = request_bodies(rows)
    env = "TIERLINE_BENCH_KEY_L"
    input_uri = write_rows(tmp / "lat-in", rows, row_group=min(250, sizes.rows_per_unit))
    runs: dict[str, ClientRun] = {}

    # The simulator's own ceiling on this machine: 0 ms latency, same 64 in flight.
    sim.configure(SimConfig())
    runs["ceiling"] = bare_run(sim, "bare aiohttp, 0 ms (sim ceiling)", bodies, env)
    sim.configure(SimConfig(latency=Latency(mean_ms=LATENCY_MS)))

    def tierline(workers: int, attempt: int) -> ClientRun:
        name = f"tierline {workers}x{CONCURRENCY // workers}"
        out = tmp / f"lat-out-{workers}-{attempt}"
        spec = job_spec(
            f"bench-lat-{workers}",
            input_uri,
            str(out),
            rows_per_unit=sizes.rows_per_unit,
            providers={"p": openai_provider(sim, env)},
            tiers={"cheap": [f"p/{MODEL}"]},
            run={"workers": workers, "max_in_flight": CONCURRENCY // workers},
        )
        run, _ = tierline_run(sim, name, n, spec, out, timeout_s=120)
        run.note = run.note or f"{sizes.rows_per_unit} rows per unit"
        return run

    # tierline 1x64 and the bare client twice, alternating, best of each: this machine
    # is shared, and a burst of someone else's load should not decide the ratio.
    pairs = [(tierline(1, i), bare_run(sim, "bare aiohttp 64", bodies, env)) for i in range(2)]
    runs["t1"] = max((p[0] for p in pairs), key=lambda r: r.steady)
    runs["t1"].note += "; best of 2"
    runs["t2"] = tierline(2, 0)
    runs["bare"] = max((p[1] for p in pairs), key=lambda r: r.steady)
    runs["bare"].note = "same bodies; best of 2"
    for actors in sizes.ray_data_actors:
        runs[f"ray_data_{actors}"] = peer(
            f"ray data x{actors}",
            lambda a=actors: ray_data_run(sim, bodies, env, a, sizes.peer_cap_s),  # type: ignore[misc]
        )
    runs["litellm"] = peer(
        "litellm Router", lambda: litellm_run(sim, bodies, env, sizes.peer_cap_s)
    )
    for r in runs.values():
        r.extra.pop("_log", None)

    t1, t2, bare = runs["t1"], runs["t2"], runs["bare"]
    ray_runs = [r for k, r in runs.items() if k.startswith("ray_data") and r.steady > 0]
    best_ray = max(ray_runs, key=lambda r: r.steady) if ray_runs else None
    litellm = runs["litellm"] if runs["litellm"].steady > 0 else None

    def ratio(a: ClientRun, b: ClientRun | None) -> float | None:
        return round(a.steady / b.steady, 3) if b is not None and b.steady > 0 else None

    out: dict[str, Any] = {
        "ratio_to_bare_aiohttp": ratio(t1, bare),
        "ratio_to_ray_data": ratio(t1, best_ray),
        "ratio_to_litellm": ratio(t1, litellm),
        "ratio_to_bare_aiohttp_2x32": ratio(t2, bare),
        "ratio_to_bare_aiohttp_run": (
            round(t1.run_rate / bare.run_rate, 3) if bare.run_rate else None
        ),
        "rows": n,
        "ray_data_compared": best_ray.name if best_ray else None,
        "clients": {r.name: r.to_json() for r in runs.values()},
        "config": f"sim latency {LATENCY_MS:g} ms, no limits, {CONCURRENCY} in flight per client",
    }
    if best_ray is None:
        out["ray_data_unavailable"] = "; ".join(
            r.note for k, r in runs.items() if k.startswith("ray_data")
        )
    if litellm is None:
        out["litellm_unavailable"] = runs["litellm"].note
    return out


def _read_all(folder: Path) -> pl.DataFrame:
    frames = [pl.read_parquet(io.BytesIO(p.read_bytes())) for p in sorted(folder.glob("*.parquet"))]
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()


def faults(sim: TimedSim, tmp: Path, sizes: Sizes) -> dict[str, Any]:
    n = sizes.fault_rows
    rows = make_rows(n)
    fault_cfg = Faults(error_rates={500: 0.05, 503: 0.05}, hang_rate=0.02, max_hang_s=30)
    sim.configure(SimConfig(latency=Latency(mean_ms=LATENCY_MS), faults=fault_cfg))
    unit = max(1, n // 4)
    out = tmp / "faults-out"
    spec = job_spec(
        "bench-faults",
        write_rows(tmp / "faults-in", rows, row_group=unit),
        str(out),
        rows_per_unit=unit,
        providers={
            "p": openai_provider(
                sim, "TIERLINE_BENCH_KEY_F", timeouts={"connect_s": 1, "total_s": 2}
            )
        },
        tiers={"cheap": [f"p/{MODEL}"], "mid": ["p/gpt-4o"], "flagship": ["p/gpt-4o"]},
        run={"workers": 2, "max_in_flight": CONCURRENCY // 2, "max_attempts": 4},
    )
    _, job = tierline_run(sim, "tierline 2x32", n, spec, out, timeout_s=180)
    stats = sim.stats()
    job_dir = out / job.job_id if job.job_id else out
    results, errors = _read_all(job_dir / "results"), _read_all(job_dir / "errors")
    ids = pl.concat(
        [pl.Series("id", [], pl.String)] + [f["id"] for f in (results, errors) if f.height]
    )
    seen = ids.to_list()
    duplicates = int(ids.value_counts().filter(pl.col("count") > 1).height) if seen else 0
    total = stats["total"]
    retries = int(results["retries"].sum() or 0) if results.height else 0
    error_attempts = int(errors["attempts"].sum() or 0) if errors.height else 0
    return {
        "rows": n,
        "rows_lost": len(set(rows.ids) - set(seen)),
        "duplicates": duplicates,
        "unknown_ids": len(set(seen) - set(rows.ids)),
        "rows_ok": results.height,
        "rows_error": errors.height,
        "errors_by_type": (
            dict(errors.group_by("error_type").len().iter_rows()) if errors.height else {}
        ),
        # Retries: extra attempts of answered rows, plus those of rows that ended in errors.
        "retries": retries + max(0, error_attempts - errors.height),
        "retries_in_results": retries,
        "error_row_attempts": error_attempts,
        "sim_requests": total["requests"],
        "sim_errors": total["errors"],
        "sim_hangs": total["hangs"],
        "sim_answered_twice": stats["repeated_answers"],
        "job_status": job.status,
        "driver_notes": list(job.notes),
        "wall_s": round(job.wall_s, 2),
        "rows_per_s_run": round(results.height / job.wall_s, 1) if job.wall_s else 0.0,
        "config": f"sim 5% 500, 5% 503, 2% hangs, latency {LATENCY_MS:g} ms; timeout 2 s, "
        f"4 attempts, 2 workers x {CONCURRENCY // 2}, {unit} rows per unit",
    }


# --- report ----------------------------------------------------------------------------


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "cpus": str(os.cpu_count())}
    for dist in ("ray", "aiohttp", "litellm", "pandas", "polars", "pyarrow"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _mark(ok: bool | None) -> str:
    return "" if ok is None else ("ok" if ok else "MISS")


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def print_report(report: dict[str, Any]) -> None:
    w = sys.stdout.write
    v = report["versions"]
    w(
        f"\ntierline throughput ({report['mode']}), {v['cpus']} CPUs, python {v['python']}, "
        f"ray {v['ray']}, litellm {v['litellm']}, aiohttp {v['aiohttp']}\n"
    )
    w(
        f"Ray started once in {report['ray_init_s']:.1f}s (in no figure). Load average "
        f"(1 min) around each workload: {report['load']}\n"
    )
    q = report.get("quota_bound")
    if q:
        w("\n1. quota-bound: " + q["config"] + "\n")
        w(
            f"   {'provider':<10}{'limit':<34}{'ideal/s':>9}{'steady/s':>10}{'ratio':>8}"
            f"{'requests':>10}{'429s':>6}\n"
        )
        for p, d in q["providers"].items():
            over = "  above its limit" if d["ratio_to_ideal"] > 1.02 else ""
            w(
                f"   {p:<10}{d['limit']:<34}{d['ideal_rows_per_s']:>9.2f}"
                f"{d['rows_per_s_steady']:>10.2f}{d['ratio_to_ideal']:>8.3f}"
                f"{d['requests']:>10}{d['rate_limited']:>6}{over}\n"
            )
        w(
            f"   {'all':<44}{q['ideal_rows_per_s']:>9.2f}{q['rows_per_s_steady']:>10.2f}"
            f"{q['ratio_to_ideal']:>8.3f}{q['requests']:>10}{q['rate_limited']:>6}\n"
        )
        w(
            f"   ratio_to_ideal {q['ratio_to_ideal']:.3f} (target >= 0.95) "
            f"{_mark(q['ratio_to_ideal'] >= 0.95)}; share_429 {q['share_429']:.4f} "
            f"(target <= 0.01) {_mark(q['share_429'] <= 0.01)}; job {q['job_status']}\n"
        )
        w(
            f"   run phase, actor start-up included: {q['rows_ok']} rows in {q['wall_s']:.1f}s "
            f"= {q['rows_per_s_run']:.2f}/s ({q['ratio_to_ideal_run']:.3f} of ideal)\n"
        )
    lat = report.get("latency_bound")
    if lat:
        w(f"\n2. latency-bound: {lat['config']}, {lat['rows']} rows\n")
        w(f"   {'client':<34}{'rows ok':>8}{'wall s':>8}{'run/s':>9}{'steady/s':>10}  note\n")
        for name, c in lat["clients"].items():
            w(
                f"   {name:<34}{c['rows_ok']:>8}{c['wall_s']:>8.1f}{c['rows_per_s_run']:>9.1f}"
                f"{c['rows_per_s_steady']:>10.1f}  {c['note']}\n"
            )
        r_bare, r_run = lat["ratio_to_bare_aiohttp"], lat["ratio_to_bare_aiohttp_run"]
        w(
            f"   tierline 1x64 / bare aiohttp {_fmt(r_bare)} (target >= 0.9) "
            f"{_mark(None if r_bare is None else r_bare >= 0.9)}; 2x32 / bare "
            f"{_fmt(lat['ratio_to_bare_aiohttp_2x32'])}; run/s incl. start-up / bare "
            f"{_fmt(r_run)} (target >= 0.75) {_mark(None if r_run is None else r_run >= 0.75)}\n"
        )
        w(
            f"   tierline 1x64 / {lat['ray_data_compared'] or 'ray data'} "
            f"{_fmt(lat['ratio_to_ray_data'])}; / litellm {_fmt(lat['ratio_to_litellm'])}\n"
        )
    f = report.get("faults")
    if f:
        w("\n3. faults: " + f["config"] + "\n")
        w(
            f"   {f['rows']} rows: {f['rows_ok']} results, {f['rows_error']} error rows "
            f"{f['errors_by_type']}; lost {f['rows_lost']} {_mark(f['rows_lost'] == 0)}, "
            f"duplicates {f['duplicates']} {_mark(f['duplicates'] == 0)}; job {f['job_status']}\n"
        )
        w(
            f"   retries {f['retries']}; simulator: {f['sim_requests']} requests, errors "
            f"{f['sim_errors']}, hangs {f['sim_hangs']}, answered twice "
            f"{f['sim_answered_twice']}; {f['rows_per_s_run']} rows/s over {f['wall_s']}s\n"
        )
        for note in f["driver_notes"][:5]:
            w(f"   driver: {note[:160]}\n")
    if report.get("pool"):
        w(print_pool(report["pool"], _mark))
    if report.get("hedge"):
        w(print_hedge(report["hedge"], _mark))
    w("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Smaller sizes (about 2 min).")
    parser.add_argument("--json", type=Path, help="Write the results here as JSON.")
    parser.add_argument(
        "--only",
        default="quota,latency,faults,pool,hedge",
        help="Comma-separated workloads to run (quota, latency, faults, pool, hedge).",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    # Before Ray or LiteLLM start: no usage reports, no price-table download.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.update(KEYS)  # inherited by Ray's workers, which read the keys at call time

    import ray

    report: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "versions": versions(),
        "load": {},
    }
    sim = TimedSim.start(SimConfig())
    try:
        # Load the simulator's tokenizer now, not inside the first client's window.
        asyncio.run(_bare(sim.base_url + "/chat/completions", "sk-warm", [_tiny(1)] * 4, 4))
        started = time.monotonic()
        # "local": a Ray of our own, even when another one on this machine is recorded as
        # the latest cluster (a plain ray.init() would join that one).
        ray.init(
            address="local",
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
        report["ray_init_s"] = round(time.monotonic() - started, 2)
        with tempfile.TemporaryDirectory(prefix="tierline-bench-") as tmp:
            for key, name, fn in (
                ("quota", "quota_bound", quota_bound),
                ("latency", "latency_bound", latency_bound),
                ("faults", "faults", faults),
                ("pool", "pool", pool_bound),
                ("hedge", "hedge", hedge_bound),
            ):
                if key not in only:
                    continue
                t, load = time.monotonic(), os.getloadavg()[0]
                print(f"running {name} ...", file=sys.stderr, flush=True)
                report[name] = fn(sim, Path(tmp), sizes)
                report["load"][name] = [round(load, 1), round(os.getloadavg()[0], 1)]
                print(f"  {name} done in {time.monotonic() - t:.0f}s", file=sys.stderr)
    finally:
        ray.shutdown()
        sim.stop()
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
