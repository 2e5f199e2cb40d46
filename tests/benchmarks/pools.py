"""The pool and hedge workloads of `throughput.py` (run them with `--only pool,hedge`).

pool: the flagship tier on three simulated providers, each with a quota of its own: a and
b serve gpt-4o at 300 rpm each, c a cheaper model at 100 rpm. Every row goes to flagship.
`ratio_to_combined_ideal` is the achieved rows/s (steady, timed by the simulator) over
the sum of the three limits (700 rpm); `ratio_ordered` is the same job with `strategy:
ordered`, where the second and third providers idle while the first is saturated.
Target: >= 0.95 with <= 1% of requests answered 429.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pipeline.sim import KeyLimits, Latency, SimConfig
from tests.benchmarks.harness import TimedSim

# One key variable per provider and per run: quota actors are found by account, so each
# run starts from a fresh lease book.
POOL_RPM = {"a": 300, "b": 300, "c": 100}
POOL_MODEL = {"a": "gpt-4o", "b": "gpt-4o", "c": "gpt-4o-mini"}
POOL_KEYS = {
    f"TIERLINE_BENCH_KEY_P{run}{p}": f"sk-tierline-bench-p{run}{p}{p * 3}"
    for run in ("S", "O")
    for p in POOL_RPM
}


def pool_key(run: str, p: str) -> str:
    return f"TIERLINE_BENCH_KEY_P{run}{p}"


def pool_bound(sim: TimedSim, tmp: Path, sizes: Any) -> dict[str, Any]:
    from tests.benchmarks import throughput as tp

    ideal = sum(POOL_RPM.values()) / 60.0
    n = round(ideal * sizes.quota_s)
    rows = tp.make_rows(n)
    input_uri = tp.write_rows(tmp / "pool-in", rows, row_group=max(1, n // 6))
    limits = {
        POOL_KEYS[pool_key(r, p)]: KeyLimits(rpm=rpm) for r in "SO" for p, rpm in POOL_RPM.items()
    }
    sim.configure(SimConfig(latency=Latency(mean_ms=tp.LATENCY_MS, jitter_ms=10), limits=limits))
    url = sim.base_url + "/chat/completions"
    out: dict[str, Any] = {"ideal_rows_per_s": round(ideal, 3), "rows": n}
    for run, strategy in (("S", "cheapest"), ("O", "ordered")):
        # Leave one second of headroom in each bucket (see throughput.py's docstring).
        for p, rpm in POOL_RPM.items():
            key = POOL_KEYS[pool_key(run, p)]
            asyncio.run(tp._bare(url, key, [tp._tiny(1)] * (rpm - rpm // 60), 100))
        spec = tp.job_spec(
            f"bench-pool-{strategy}",
            input_uri,
            str(tmp / f"pool-out-{strategy}"),
            rows_per_unit=max(1, n // 6),
            providers={
                p: tp.openai_provider(sim, pool_key(run, p), limits={"rpm": rpm})
                for p, rpm in POOL_RPM.items()
            },
            tiers={"flagship": [f"{p}/{POOL_MODEL[p]}" for p in POOL_RPM]},
            default="flagship",
            run={"workers": 2, "max_in_flight": tp.CONCURRENCY},
        )
        spec = spec.model_copy(update={"pools": {"flagship": _pool(strategy)}})
        # ordered runs at about 300/700 of the pace: give it time to show its rate.
        timeout = (1.5 if strategy == "cheapest" else 0.8) * sizes.quota_s + 20
        run_, job = tp.tierline_run(
            sim, f"tierline {strategy}", n, spec, tmp / f"pool-out-{strategy}", timeout
        )
        stats = sim.stats()
        log = run_.extra.pop("_log")
        total = stats["total"]
        per: dict[str, Any] = {}
        for p in POOL_RPM:
            key = POOL_KEYS[pool_key(run, p)]
            counts = stats["keys"].get(f"{key[:3]}...{key[-4:]}", {})
            tag = key[-6:]
            rate = (
                tp.stalled_rate(log, run_.extra["ended_at"], tag)
                if job.stalled
                else log.steady_rate(tag)
            )
            per[p] = {
                "limit_rpm": POOL_RPM[p],
                "rows_per_s_steady": round(rate, 3),
                "ratio_to_limit": round(rate / (POOL_RPM[p] / 60.0), 4),
                "requests": counts.get("requests", 0),
                "rate_limited": counts.get("rate_limited", 0),
            }
        out[strategy] = {
            "ratio": round(run_.steady / ideal, 4),
            "rows_per_s_steady": round(run_.steady, 3),
            "share_429": round(total["rate_limited"] / total["requests"], 4)
            if total["requests"]
            else 0.0,
            "rows_ok": run_.ok,
            "job_status": job.status,
            "wall_s": round(run_.wall_s, 2),
            "providers": per,
        }
    out["ratio_to_combined_ideal"] = out["cheapest"]["ratio"]
    out["share_429"] = out["cheapest"]["share_429"]
    out["ratio_ordered"] = out["ordered"]["ratio"]
    out["config"] = (
        f"flagship pool a/gpt-4o 300 rpm, b/gpt-4o 300 rpm, c/gpt-4o-mini 100 rpm; 2 workers "
        f"x {tp.CONCURRENCY} in flight; sim latency {tp.LATENCY_MS:g}+-10 ms; buckets drained "
        "to 1 s of headroom"
    )
    return out


def _pool(strategy: str) -> Any:
    from schemas.job import PoolSpec

    return PoolSpec(strategy=strategy)  # type: ignore[arg-type]


def _status(strategy: str, status: str) -> str:
    # The ordered run is ended at its time limit on purpose: its rate until then counts.
    return "ended at its time limit (rate until then)" if strategy == "ordered" else status


def print_pool(p: dict[str, Any], mark: Any) -> str:
    lines = [f"\n4. pool: {p['config']}\n"]
    for strategy in ("cheapest", "ordered"):
        d = p[strategy]
        shares = ", ".join(
            f"{name} {v['rows_per_s_steady']:.2f}/s ({v['ratio_to_limit']:.2f} of its limit, "
            f"{v['rate_limited']} 429s)"
            for name, v in d["providers"].items()
        )
        lines.append(
            f"   {strategy:<9} {d['rows_per_s_steady']:.2f} rows/s = {d['ratio']:.3f} of "
            f"{p['ideal_rows_per_s']:.2f}; share_429 {d['share_429']:.4f}; job "
            f"{_status(strategy, d['job_status'])}; {shares}\n"
        )
    r, s = p["ratio_to_combined_ideal"], p["share_429"]
    lines.append(
        f"   pool.ratio_to_combined_ideal {r:.3f} (target >= 0.95) {mark(r >= 0.95)}; "
        f"share_429 {s:.4f} (target <= 0.01) {mark(s <= 0.01)}; pool.ratio_ordered "
        f"{p['ratio_ordered']:.3f}\n"
    )
    return "".join(lines)


HEDGE_KEYS = {
    "TIERLINE_BENCH_KEY_H1": "sk-tierline-bench-hhh111",
    "TIERLINE_BENCH_KEY_H2": "sk-tierline-bench-hhh222",
}
SLOW_RATE, SLOW_MS = 0.02, 5000.0


def hedge_bound(sim: TimedSim, tmp: Path, sizes: Any) -> dict[str, Any]:
    """hedge: the flagship pool on two providers whose answers take 50 ms, except 2% that
    take 5 s. `p99_unit_s_ratio`: the p99 of a row's completion time (its results row's
    latency, retries and hedges included) with `run.hedge: {after: p95}` over without;
    `extra_cost_pct`: what hedging added to the job's cost (cancelled calls at their worst
    case). Targets: <= 0.5 and <= 5."""
    import polars as pl

    from tests.benchmarks import throughput as tp

    n = sizes.fault_rows * 2
    rows = tp.make_rows(n)
    input_uri = tp.write_rows(tmp / "hedge-in", rows, row_group=max(1, n // 4))
    tail = Latency(mean_ms=tp.LATENCY_MS, jitter_ms=10, slow_rate=SLOW_RATE, slow_ms=SLOW_MS)
    sim.configure(SimConfig(latency=tail))
    out: dict[str, Any] = {"rows": n}
    for label, hedge in (("without", None), ("with", {"after": "p95", "max_extra_pct": 5})):
        folder = tmp / f"hedge-out-{label}"
        spec = tp.job_spec(
            f"bench-hedge-{label}",
            input_uri,
            str(folder),
            rows_per_unit=max(1, n // 4),
            providers={
                f"h{i}": tp.openai_provider(sim, f"TIERLINE_BENCH_KEY_H{i}") for i in (1, 2)
            },
            tiers={"flagship": ["h1/gpt-4o", "h2/gpt-4o"]},
            default="flagship",
            run={
                "workers": 2,
                "max_in_flight": tp.CONCURRENCY,
                **({"hedge": hedge} if hedge else {}),
            },
        )
        spec = spec.model_copy(update={"pools": {"flagship": _pool("spread")}})
        run_, job = tp.tierline_run(sim, f"tierline hedge {label}", n, spec, folder, 180)
        run_.extra.pop("_log", None)
        job_dir = folder / job.job_id if job.job_id else folder
        results = tp._read_all(job_dir / "results")
        costs = tp._read_all(job_dir / "costs")
        lat = results["latency_ms"] / 1000.0 if results.height else pl.Series([0.0])
        hedges = costs.filter(pl.col("step") == "hedge") if costs.height else costs
        out[label] = {
            "rows_ok": results.height,
            "job_status": job.status,
            "p50_s": round(float(lat.quantile(0.5) or 0), 4),
            "p99_s": round(float(lat.quantile(0.99) or 0), 4),
            "max_s": round(float(lat.max() or 0), 4),  # type: ignore[arg-type]
            "cost_usd": round(float(costs["cost_usd"].sum()) if costs.height else 0.0, 6),
            "hedges_sent": hedges.height,
            "hedges_won": hedges.filter(pl.col("call_status") != "cancelled").height
            if hedges.height
            else 0,
            "cancelled_calls": costs.filter(pl.col("call_status") == "cancelled").height
            if costs.height
            else 0,
            "wall_s": round(run_.wall_s, 2),
        }
    w, wo = out["with"], out["without"]
    out["p99_unit_s_ratio"] = round(w["p99_s"] / wo["p99_s"], 4) if wo["p99_s"] else None
    out["extra_cost_pct"] = (
        round((w["cost_usd"] / wo["cost_usd"] - 1.0) * 100.0, 3) if wo["cost_usd"] else None
    )
    out["config"] = (
        f"flagship pool h1/gpt-4o + h2/gpt-4o (spread), no limits; sim latency "
        f"{tp.LATENCY_MS:g}+-10 ms with {SLOW_RATE:.0%} of answers taking {SLOW_MS / 1000:g} s; "
        f"2 workers x {tp.CONCURRENCY} in flight; hedge after p95, max_extra_pct 5"
    )
    return out


def print_hedge(h: dict[str, Any], mark: Any) -> str:
    lines = [f"\n5. hedge: {h['config']}, {h['rows']} rows\n"]
    for label in ("without", "with"):
        d = h[label]
        lines.append(
            f"   {label:<8} p50 {d['p50_s']:.3f}s p99 {d['p99_s']:.3f}s max {d['max_s']:.2f}s; "
            f"cost ${d['cost_usd']:.4f}; hedges {d['hedges_sent']} sent, {d['hedges_won']} won; "
            f"{d['cancelled_calls']} calls cancelled; job {d['job_status']}\n"
        )
    r, x = h["p99_unit_s_ratio"], h["extra_cost_pct"]
    lines.append(
        f"   hedge.p99_unit_s_ratio {r} (target <= 0.5) {mark(r is not None and r <= 0.5)}; "
        f"hedge.extra_cost_pct {x} (target <= 5) {mark(x is not None and x <= 5)}\n"
    )
    return "".join(lines)
