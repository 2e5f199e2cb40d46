"""Structured extraction benchmark: the demo tickets through the simulator, with invalid
answers injected on the cheap tier, against the same job as `classify`.

    python tests/benchmarks/extract.py                      # the 3,000 demo tickets
    python tests/benchmarks/extract.py --quick --json out.json   # the first 600

1. Input: the demo tickets (jobs/examples/data/tickets, `python -m jobs.examples.make_data`).
   Their known values: `queue` is the topic each ticket was written about (the generator
   is deterministic, so it is regenerated here), `priority` is a column of the files,
   `language` is en for every ticket. `product` and `summary` have no known value.
2. Job: jobs/examples/extract-tickets.yaml (queue, priority, language, product, summary),
   its input and output moved to a temporary folder, the cache off, and the cheap model
   (gpt-4o-mini) spoiling `--invalid` (5%) of its answers: invalid JSON, a missing
   required field and a wrong enum value in equal parts. Policy cascade from cheap: an
   answer that fails validation is re-asked once on the same model, then escalates.
3. The same job as `classify` (labels billing / technical / account / other, same input,
   tiers, routing and simulator), timed the same way: `rows_per_s` of both, and the ratio.
   Both run with a stall timeout: a job that stops making progress ends incomplete, its
   status is printed, and no rate or ratio is given for it.

Measured from the outputs: `valid_pct` (rows with a validated answer, of the rows with
text; target 100), `reasks` (cost rows `reasked`), `escalations` (rows answered or failed
above the tier they were routed to), `field_accuracy.<field>` against the known values,
`cost_usd`, `pct_flagship_cost` (of the same rows all on the flagship, as the summary
prices it), and the forecast (dry run) against the actual cost.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import polars as pl  # noqa: E402
import yaml  # noqa: E402

from jobs.examples.make_data import DEFAULT_ROWS, DEFAULT_SEED  # noqa: E402
from jobs.examples.tickets import make_tickets  # noqa: E402
from pipeline.dryrun.forecast import forecast_job  # noqa: E402
from pipeline.engine.driver import run_job  # noqa: E402
from pipeline.engine.summary import JobSummary  # noqa: E402
from pipeline.store import Store  # noqa: E402
from schemas.job import JobSpec, parse_spec  # noqa: E402

EXAMPLE = REPO / "jobs" / "examples" / "extract-tickets.yaml"
TICKETS = REPO / "jobs" / "examples" / "data" / "tickets"
CHEAP = "gpt-4o-mini"
STALL_S = 120.0
KNOWN = ("queue", "priority", "language")


def tickets(rows: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The first `rows` demo tickets, and their known values (id, queue, priority, language)."""
    frame = pl.read_parquet(TICKETS).sort("ticket_id").head(rows)
    made = make_tickets(random.Random(f"{DEFAULT_SEED}-tickets"), DEFAULT_ROWS)
    topic = pl.DataFrame(
        {"id": [str(t["ticket_id"]) for t in made], "queue": [str(t["topic"]) for t in made]}
    )
    truth = (
        frame.select(pl.col("ticket_id").alias("id"), "priority")
        .join(topic, on="id", how="left")
        .with_columns(pl.lit("en").alias("language"))
    )
    return frame, truth


def specs(input_dir: Path, out: Path, invalid: float) -> tuple[JobSpec, JobSpec]:
    doc = yaml.safe_load(EXAMPLE.read_text())
    share = invalid / 3
    doc["input"]["uri"] = str(input_dir)
    doc["input"]["rows_per_unit"] = 500
    doc["output"]["uri"] = str(out)
    doc["cache"] = "off"
    doc["budget_usd"] = 100.0
    # A run that stops making progress ends (incomplete) instead of hanging the benchmark.
    doc["run"] = {"workers": 2, "max_in_flight": 64, "stall_timeout_s": STALL_S}
    faults = {"invalid_json_rate": share, "missing_required_rate": share, "wrong_enum_rate": share}
    doc["providers"]["sim"]["sim"]["models"] = {CHEAP: {"extract": faults}}
    extract = parse_spec(doc)
    doc = {**doc, "name": "bench-classify"}
    doc["task"] = {
        "kind": "classify",
        "labels": ["billing", "technical", "account", "other"],
        "instructions": "Classify the support ticket by the team that should handle it.",
    }
    doc["providers"]["sim"]["sim"]["models"] = {}
    return extract, parse_spec(doc)


def read(prefix: str, folder: str) -> pl.DataFrame:
    store = Store.open(prefix)
    files = store.list_files(folder, suffix=".parquet")
    frames = [pl.read_parquet(io.BytesIO(store.read_bytes(f.path))) for f in files]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def measure(summary: JobSummary, truth: pl.DataFrame) -> dict[str, Any]:
    results = read(summary.output, "results")
    errors = read(summary.output, "errors")
    costs = read(summary.output, "costs")
    empty = int(errors.filter(pl.col("error_type") == "empty_text").height)
    with_text = summary.rows_total - empty
    rows = pl.concat(
        [results.select("id", "tier", "routed_tier"), errors.select("id", "tier").with_columns(
            pl.lit("cheap").alias("routed_tier"))],
        how="vertical_relaxed",
    )  # fmt: skip
    escalated = rows.filter(
        pl.col("tier").is_not_null() & (pl.col("tier") != pl.col("routed_tier"))
    )
    joined = results.join(truth, on="id", how="inner")
    accuracy = {
        f: round(float((joined[f"out_{f}"].cast(pl.String) == joined[f]).mean() or 0.0), 4)
        for f in KNOWN
    }
    flagship_usd = summary.flagship_baseline_usd
    return {
        "rows": summary.rows_total,
        "rows_with_text": with_text,
        "valid_pct": round(100.0 * results.height / with_text, 3) if with_text else 0.0,
        "invalid_output_rows": int(errors.filter(pl.col("error_type") == "invalid_output").height),
        "reasks": int(costs.filter(pl.col("call_status") == "reasked").height),
        "escalations": escalated.height,
        "field_accuracy": accuracy,
        "cost_usd": round(summary.cost_usd, 6),
        "pct_flagship_cost": round(100.0 * summary.cost_usd / flagship_usd, 2)
        if flagship_usd
        else None,
        "calls": summary.calls,
        "wall_s": round(summary.wall_s, 2),
        "rows_per_s": round(summary.rows_total / summary.wall_s, 1) if summary.wall_s else 0.0,
    }


ROWS = [
    ("rows (with text)", "rows", "rows_with_text"),
    ("valid % (target 100)", "valid_pct"),
    ("invalid_output rows", "invalid_output_rows"),
    ("re-asks", "reasks"),
    ("escalations", "escalations"),
    ("field accuracy queue / priority / language", "acc_queue", "acc_priority", "acc_language"),
    ("cost USD / % of all-flagship", "cost_usd", "pct_flagship_cost"),
    ("forecast USD / error %", "forecast_cost_usd", "forecast_error_pct"),
    ("calls", "calls"),
    ("rows/s (extract / classify / ratio)", "rows_per_s", "classify_rows_per_s", "ratio"),
    ("status (extract / classify)", "extract_status", "classify_status"),
]


def print_table(result: dict[str, Any]) -> None:
    flat = {**result, **{f"acc_{k}": v for k, v in result["field_accuracy"].items()}}
    table = [(label, " / ".join(str(flat.get(k)) for k in keys)) for label, *keys in ROWS]
    width = max(len(label) for label, _ in table)
    for label, value in table:
        print(f"{label.ljust(width)}  {value}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--quick", action="store_true", help="600 tickets instead of 3,000")
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--invalid", type=float, default=0.05, help="cheap tier's bad answers")
    args = ap.parse_args()
    n = args.rows or (600 if args.quick else DEFAULT_ROWS)
    frame, truth = tickets(n)
    import ray  # after pipeline (imported above), so its loopback default applies

    ray.init(address="local", include_dashboard=False)
    try:
        with tempfile.TemporaryDirectory(prefix="tl-bench-") as tmp:
            input_dir = Path(tmp) / "in"
            input_dir.mkdir()
            frame.write_parquet(input_dir / "tickets.parquet", row_group_size=250)
            extract, classify = specs(input_dir, Path(tmp) / "out", args.invalid)
            fc = forecast_job(extract)
            summary = run_job(extract)
            result = measure(summary, truth)
            baseline = run_job(classify)
    finally:
        ray.shutdown()
    # A rate is only a rate of a job that finished: an incomplete run (stalled, stopped)
    # is reported as such, never as a slow one.
    done = summary.status == baseline.status == "complete"
    classify_rate = baseline.rows_total / baseline.wall_s if done and baseline.wall_s else 0.0
    result |= {
        "extract_status": summary.status,
        "classify_status": baseline.status,
        "invalid_injected": args.invalid,
        "forecast_cost_usd": round(fc.cost_usd.p50, 6),
        "forecast_error_pct": round(100.0 * (fc.cost_usd.p50 / summary.cost_usd - 1.0), 1)
        if summary.cost_usd
        else None,
        "classify_rows_per_s": round(classify_rate, 1) if done else None,
        "ratio": round(result["rows_per_s"] / classify_rate, 3) if classify_rate else None,
        "classify_cost_usd": round(baseline.cost_usd, 6),
    }
    print(f"{n:,} demo tickets, {args.invalid:.0%} of the cheap tier's answers spoiled")
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
