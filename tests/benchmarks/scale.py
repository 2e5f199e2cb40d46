"""Scale benchmark: the memory of the driver, the report and verify as a job grows.

    python tests/benchmarks/scale.py                       # 100,000 and 1,000,000 rows
    python tests/benchmarks/scale.py --quick --json out.json   # 10,000 and 100,000 rows
    python tests/benchmarks/scale.py --sizes 20000 200000

Each size is one classify job over generated tickets (every text distinct, so none is
reused), on the built-in simulator at zero latency, run by the real pipeline in a child
driver joined to one local Ray (`harness.run_job_child`). Then `tierline report`'s data
and page (`build_report`, `render_html`) and `verify_job` each run in a process of their
own. Each process reports its own peak resident set (VmHWM), so the figures are the
driver's, the report's and verify's, not Ray's or this script's.

The job's figures are sums over its units' commit markers, so the driver and the report
should stay flat as rows grow tenfold; verify reads one unit at a time and should grow
only with the largest unit. Targets: peak RSS at the larger size at most 1.2x the smaller
one's, for each of the three, and the larger job's rows/s at least 0.9 of the smaller's
(exit status 1 when missed; the figures are written either way). Every job must end
complete and verify clean.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import polars as pl  # noqa: E402

from tests.benchmarks.harness import run_job_child  # noqa: E402
from tests.integration.helpers import spec_for  # noqa: E402

GROWTH_TARGET = 1.2  # peak RSS at the larger size / at the smaller, at most
RATE_TARGET = 0.9  # rows/s at the larger size / at the smaller, at least
ROWS_PER_GROUP = 10_000  # Parquet row groups; units are the default rows_per_unit
SHARD_ROWS = 100_000
WORDS = pl.Series(
    [
        "invoice",
        "refund",
        "charged",
        "billing",
        "card",
        "payment",
        "app",
        "crash",
        "error",
        "login",
        "api",
        "timeout",
        "password",
        "email",
        "account",
        "reset",
        "office",
        "hours",
        "feedback",
        "question",
        "order",
        "delivery",
        "broken",
        "upgrade",
    ]
)


def make_input(folder: Path, rows: int) -> None:
    """`rows` tickets in shards of SHARD_ROWS; every text distinct (its number is in it)."""
    folder.mkdir(parents=True, exist_ok=True)
    w = len(WORDS)
    for s, start in enumerate(range(0, rows, SHARD_ROWS)):
        i = pl.int_range(start, min(rows, start + SHARD_ROWS), eager=True)
        df = pl.DataFrame(
            {
                "ticket_id": "T-" + i.cast(pl.String),
                "subject": "Ticket " + i.cast(pl.String) + " about " + WORDS.gather(i % w),
                "body": "Case "
                + i.cast(pl.String)
                + ": the "
                + WORDS.gather(i // 7 % w)
                + " and the "
                + WORDS.gather(i // 3 % w)
                + ", please help.",
                "priority": pl.Series(["high" if x % 10 == 0 else "normal" for x in i]),
            }
        )
        df.write_parquet(folder / f"part-{s:04d}.parquet", row_group_size=ROWS_PER_GROUP)


def spec_json(inp: Path, out: Path, rows: int) -> str:
    return spec_for(
        str(inp),
        str(out),
        name=f"scale-{rows}",
        input={
            "uri": str(inp),
            "id_column": "ticket_id",
            "text_columns": ["subject", "body"],
        },
        providers={"sim": {"kind": "sim", "sim": {"latency_ms": 0, "jitter_ms": 0}}},
        budget_usd=None,
        cache="off",
        run={"workers": 2, "max_in_flight": 128},
    ).model_dump_json()


# As harness.peak_rss_mb, without importing the harness (and aiohttp) into the measured tool.
_PEAK = (
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')]\n"
    "print('PEAK_MB', round(int(hwm[0].split()[1]) / 1024, 1) if hwm else None)\n"
)
_TOOLS = {
    "report": "from pipeline.report.data import build_report\n"
    "from pipeline.report.html import render_html\n"
    "d = build_report(PREFIX); html = render_html(d)\n"
    "print('FIGURES', d.rows_ok, d.rows_error, d.calls)\n",
    "verify": "from pipeline.engine.verify import verify_job\n"
    "r = verify_job(PREFIX)\n"
    "print('FIGURES', r.ok, r.rows_checked, '; '.join(r.problems[:3]))\n",
}


def run_tool(name: str, prefix: str) -> dict[str, Any]:
    """Run a job-folder tool in a process of its own: its wall time, peak RSS, figures."""
    code = f"PREFIX = {prefix!r}\n" + _TOOLS[name] + _PEAK
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )  # fmt: skip
    wall = time.monotonic() - started
    out = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in proc.stdout.splitlines()
           if line.startswith(("PEAK_MB", "FIGURES"))}  # fmt: skip
    if proc.returncode != 0 or "PEAK_MB" not in out:
        return {"wall_s": round(wall, 1), "peak_rss_mb": None, "error": proc.stderr[-500:]}
    return {
        "wall_s": round(wall, 1),
        "peak_rss_mb": None if out["PEAK_MB"] == "None" else float(out["PEAK_MB"]),
        "figures": out.get("FIGURES", ""),
    }


def one_size(root: Path, rows: int, address: str, timeout_s: float) -> dict[str, Any]:
    inp, out = root / f"in-{rows}", root / f"out-{rows}"
    t = time.monotonic()
    make_input(inp, rows)
    made_s = time.monotonic() - t
    job = run_job_child(spec_json(inp, out, rows), out, address, timeout_s)
    result: dict[str, Any] = {
        "rows": rows,
        "input_s": round(made_s, 1),
        "job": {
            "status": job.status,
            "wall_s": round(job.wall_s, 1),
            "rows_ok": job.rows_ok,
            "rows_error": job.rows_error,
            "rows_per_s": round((job.rows_ok + job.rows_error) / job.wall_s) if job.wall_s else 0,
            "peak_rss_mb": job.peak_rss_mb,
            "detail": job.detail,
        },
    }
    if job.status in ("complete", "incomplete"):
        prefix = str(out / job.job_id)
        markers = list((out / job.job_id / "_commits").glob("*.json"))
        result["marker_bytes"] = sum(p.stat().st_size for p in markers)
        result["units"] = len(markers)
        result["report"] = run_tool("report", prefix)
        result["verify"] = run_tool("verify", prefix)
    return result


def size_label(rows: int) -> str:
    """100000 -> '100k', 1000000 -> '1m' (the issue's figure names)."""
    for unit, name in ((1_000_000, "m"), (1_000, "k")):
        if rows >= unit and rows % unit == 0:
            return f"{rows // unit}{name}"
    return str(rows)


PARTS = {
    "driver_peak_rss_mb": "job",
    "report_peak_rss_mb": "report",
    "verify_peak_rss_mb": "verify",
}


def figures_of(results: list[dict[str, Any]]) -> dict[str, float | None]:
    """Per size and as a ratio of the largest size to the smallest: peak RSS of the driver,
    the report and verify, and the job's rows/s."""
    out: dict[str, float | None] = {}

    def per_size(name: str, value: Callable[[dict[str, Any]], float | None]) -> None:
        vals = [value(r) for r in results]
        for r, v in zip(results, vals, strict=True):
            out[f"{name}.rows_{size_label(r['rows'])}"] = v
        small, large = vals[0], vals[-1]
        out[f"{name}.ratio"] = round(large / small, 3) if small and large else None

    for name, part in PARTS.items():
        per_size(name, lambda r, part=part: r.get(part, {}).get("peak_rss_mb") or None)
    per_size("rows_per_s", lambda r: r["job"]["rows_per_s"] or None)
    return out


def misses(figures: dict[str, float | None]) -> list[str]:
    """The ratio figures that miss their targets, each with the target."""
    out = []
    for name in PARTS:
        v = figures.get(f"{name}.ratio")
        if v is None or v > GROWTH_TARGET:
            out.append(f"{name}.ratio {v} (target <= {GROWTH_TARGET})")
    v = figures.get("rows_per_s.ratio")
    if v is None or v < RATE_TARGET:
        out.append(f"rows_per_s.ratio {v} (target >= {RATE_TARGET})")
    return out


HEAD = (
    f"  {'rows':>10} {'units':>6} {'job s':>7} {'rows/s':>7} {'driver MB':>10} "
    f"{'report MB':>10} {'report s':>9} {'verify MB':>10} {'verify s':>9} {'markers KB':>11}"
)


def row_line(r: dict[str, Any]) -> str:
    j, rep, ver = r["job"], r.get("report", {}), r.get("verify", {})
    return (
        f"  {r['rows']:>10,} {r.get('units', 0):>6} {j['wall_s']:>7} {j['rows_per_s']:>7} "
        f"{j['peak_rss_mb'] or 'n/a':>10} {rep.get('peak_rss_mb') or 'n/a':>10} "
        f"{rep.get('wall_s', ''):>9} {ver.get('peak_rss_mb') or 'n/a':>10} "
        f"{ver.get('wall_s', ''):>9} {r.get('marker_bytes', 0) // 1024:>11}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10,000 and 100,000 rows")
    ap.add_argument("--sizes", type=int, nargs="+", help="row counts, smallest first")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per job")
    ap.add_argument("--json", type=Path, help="write the figures here (after each size)")
    args = ap.parse_args()
    sizes = args.sizes or ([10_000, 100_000] if args.quick else [100_000, 1_000_000])
    import ray

    os.environ.pop("RAY_ADDRESS", None)
    started = time.monotonic()
    ctx = ray.init(address="local", include_dashboard=False, log_to_driver=False)
    address = ctx.address_info["gcs_address"]
    doc: dict[str, Any] = {"sizes": sizes, "results": [], "problems": [], "cpus": os.cpu_count()}
    results, problems = doc["results"], doc["problems"]
    print(HEAD, flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="tl-scale-bench-") as tmp:
            for rows in sizes:
                # Each size is printed and saved as it ends: a size too large for the
                # machine can be stopped without losing the ones before it.
                r = one_size(Path(tmp), rows, address, args.timeout)
                results.append(r)
                print(row_line(r), flush=True)
                if r["job"]["status"] != "complete":
                    problems.append(f"{rows:,} rows: job {r['job']['status']} {r['job']['detail']}")
                v = r.get("verify", {})
                if not str(v.get("figures", "")).startswith("True"):
                    problems.append(f"{rows:,} rows: verify {v}")
                doc["figures"] = figures_of(results)
                doc["wall_s"] = round(time.monotonic() - started, 1)
                if args.json:
                    args.json.write_text(json.dumps(doc, indent=2, default=str))
    finally:
        ray.shutdown()
    figures = doc["figures"]
    print(f"\nscale benchmark, {doc['wall_s']} s, {os.cpu_count()} cpus")
    print(HEAD)
    for r in results:
        print(row_line(r))
    for name, value in figures.items():
        if name.endswith(".ratio"):
            print(f"  {name:<28} {value}")
    missed = misses(figures)
    for m in missed:
        print(f"  MISSED: {m}")
    for p in problems:
        print(f"  PROBLEM: {p}")
    return 1 if missed or problems else 0


if __name__ == "__main__":
    sys.exit(main())
