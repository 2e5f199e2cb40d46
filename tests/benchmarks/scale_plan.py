"""Planning and resuming jobs of many files and many units, local and on S3 over HTTP.

    python tests/benchmarks/scale_plan.py                     # 10,000 files, 20,000 units
    python tests/benchmarks/scale_plan.py --quick --json out.json   # 1,000 and 2,000

What a user waits for before the first row of a big job is asked, or before a rerun of a
nightly job that stopped near its end goes on:

1. plan: `make_plan` over N input files (one listing, every Parquet footer read, units
   split). Baseline: the same `make_plan` reading one footer at a time.
2. resume: `JobFolder.committed_units` over a job folder of N committed units (a marker
   with the figures of a 1,000-row unit, and three data files each). Baseline: what a
   resume did before markers recorded file sizes: every marker and every data file's
   footer read one after another. Also the memory the summary's reading of the markers
   holds per unit (`resume_kb_per_unit`, resident set growth over N), which is what makes
   a driver grow with a job's number of units.

Both run on a local folder and on S3: a moto server in a child process on loopback (real
HTTP, so every read pays a round trip, as on S3, only shorter; moto serves one request
at a time per connection and is slower than S3, so the S3 speed-ups are a floor). Each
local figure is the median of three timings, each S3 figure one timing (the baseline
resume of 20,000 units takes minutes); baseline and tierline run side by side in one run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import boto3  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from pipeline.engine.figures import unit_figures  # noqa: E402
from pipeline.engine.plan import make_plan  # noqa: E402
from pipeline.jobfolder import FigureSum, JobFolder, read_parquet_footer, unit_files  # noqa: E402
from pipeline.store import Store, concurrently  # noqa: E402
from tests.integration.helpers import spec_for  # noqa: E402
from tests.unit.test_figures import tables  # noqa: E402
from tests.unit.test_resume_markers import commit_unit  # noqa: E402

BUCKET = "tierline-bench"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server in a child process; AWS_* set for the Store and boto3."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        boto3.client("s3", endpoint_url=url).create_bucket(Bucket=BUCKET)
        yield f"s3://{BUCKET}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # moto busy with a long listing: the figures count
            proc.kill()
            proc.wait(timeout=10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _shard(i: int, rows: int = 10) -> bytes:
    table = pa.table(
        {
            "ticket_id": [f"t{i}-{r}" for r in range(rows)],
            "subject": ["printer"] * rows,
            "body": ["it does not print"] * rows,
            "priority": ["low"] * rows,
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def write_inputs(store: Store, files: int) -> None:
    concurrently(
        lambda i: store.write_bytes(f"part-{i:05d}.parquet", _shard(i)),
        range(files),
        workers=store.parallel_reads,
    )


def write_units(folder: JobFolder, units: int) -> None:
    figures = unit_figures(*tables(1000))  # a 1,000-row unit's figures, as a worker writes them

    def one(u: int) -> None:
        c = commit_unit(folder, u, rows=3)
        folder.write_commit(c.model_copy(update={"figures": figures}))

    concurrently(one, range(units), workers=folder.store.parallel_reads)


def held_kb_per_unit(folder: JobFolder, units: int) -> float:
    """Python memory the summary's read of the markers still holds after it, per unit."""
    tracemalloc.start()
    try:
        summed = FigureSum()
        held = folder.committed_units(sum_into=summed)
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(held) == units
    return round(current / 1024 / units, 2)


def timed(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@contextmanager
def one_at_a_time() -> Iterator[None]:
    """Every store reads one object at a time: the baseline of the same code."""
    saved = Store.parallel_reads
    Store.parallel_reads = property(lambda self: 1)  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        Store.parallel_reads = saved  # type: ignore[method-assign]


def sequential_plan(spec: Any) -> None:
    with one_at_a_time():
        make_plan(spec)


def sequential_resume(folder: JobFolder) -> None:
    for info in folder.commit_markers():
        commit = folder.read_commit(info.path)
        for entry in (commit.results, commit.costs, commit.errors):
            read_parquet_footer(folder.store, entry.path)


def measure(root: str, files: int, units: int, repeats: int) -> dict[str, float]:
    inputs = Store.open(f"{root}/in")
    write_inputs(inputs, files)
    spec = spec_for(f"{root}/in", f"{root}/out").model_copy(deep=True)
    plan = make_plan(spec)
    assert len(plan.units) == files and not plan.bad_files, "every file is one unit"
    folder = JobFolder(Store.open(f"{root}/resume"))
    write_units(folder, units)
    assert len(folder.committed_units()) == units, "every unit counts as committed"
    assert unit_files(0).commit in {m.path for m in folder.commit_markers()}
    out = {
        "plan_s": timed(lambda: make_plan(spec), repeats),
        "plan_sequential_s": timed(lambda: sequential_plan(spec), repeats),
        "resume_s": timed(lambda: folder.committed_units(figures=False), repeats),
        "resume_sequential_s": timed(lambda: sequential_resume(folder), repeats),
    }
    out["resume_kb_per_unit"] = held_kb_per_unit(folder, units)
    out["plan_speedup"] = out["plan_sequential_s"] / out["plan_s"]
    out["resume_speedup"] = out["resume_sequential_s"] / out["resume_s"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1,000 files and 2,000 units")
    ap.add_argument("--json", metavar="PATH", help="write the figures here")
    args = ap.parse_args()
    files, units = (1_000, 2_000) if args.quick else (10_000, 20_000)
    figures: dict[str, Any] = {"files": files, "units": units}
    with tempfile.TemporaryDirectory() as tmp:
        figures["local"] = measure(tmp, files, units, repeats=3)
    with s3_server() as root:
        figures["s3"] = measure(root, files, units, repeats=1)

    print(f"\nplanning {files:,} input files and resuming {units:,} committed units")
    print(f"{'store':<6} {'what':<8} {'tierline s':>11} {'one by one s':>13} {'speed-up':>9}")
    for store in ("local", "s3"):
        f = figures[store]
        for what in ("plan", "resume"):
            print(
                f"{store:<6} {what:<8} {f[f'{what}_s']:>11.2f} "
                f"{f[f'{what}_sequential_s']:>13.2f} {f[f'{what}_speedup']:>8.1f}x"
            )
        print(f"{store:<6} memory held by the summary's read: {f['resume_kb_per_unit']} KB a unit")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
