"""Small input data and specs for integration tests (no ../shared needed)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.engine.summary import JobSummary
from pipeline.store import Store
from schemas.job import JobSpec, parse_spec

TOPICS = {
    "billing": "I was charged twice on my invoice and need a refund for the billing error",
    "technical": "The app crashes with an error and the technical API times out on login",
    "account": "Please change the account email and reset the password for my account",
    "other": "Just a question about your office hours and general feedback",
}


def ticket_frame(start: int, n: int) -> pl.DataFrame:
    rows: list[dict[str, Any]] = []
    labels = list(TOPICS)
    for i in range(start, start + n):
        label = labels[i % len(labels)]
        body: str | None = TOPICS[label] + f" (case {i})."
        if i % 7 == 3:
            body += " More detail follows. " * 90  # long rows route to mid
        subject: str | None = f"Ticket {i} about {label}"
        if i % 53 == 5:
            subject, body = None, None  # null text -> error row
        elif i % 53 == 6:
            subject, body = "", "   "  # empty text -> error row
        rows.append(
            {
                "ticket_id": f"T-{i:05d}",
                "subject": subject,
                "body": body,
                "priority": "high" if i % 10 == 0 else "normal",
                "expected": label,
            }
        )
    return pl.DataFrame(rows, schema_overrides={"subject": pl.String, "body": pl.String})


def write_shards(
    folder: Path, shards: int = 3, rows: int = 120, row_group: int = 40
) -> pl.DataFrame:
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for s in range(shards):
        df = ticket_frame(s * rows, rows)
        pq.write_table(df.to_arrow(), folder / f"part-{s:03d}.parquet", row_group_size=row_group)
        frames.append(df)
    return pl.concat(frames)


def upload_shards(store: Store, prefix: str, df: pl.DataFrame, shards: int = 2) -> None:
    per = -(-df.height // shards)
    for s in range(shards):
        part = df.slice(s * per, per)
        buf = io.BytesIO()
        pq.write_table(part.to_arrow(), buf, row_group_size=50)
        store.write_bytes(f"{prefix}/part-{s:03d}.parquet", buf.getvalue())


def spec_for(input_uri: str, output_uri: str, **overrides: Any) -> JobSpec:
    return parse_spec(spec_doc(input_uri, output_uri, **overrides))


def spec_doc(input_uri: str, output_uri: str, **overrides: Any) -> dict[str, Any]:
    """The test job as the mapping a spec file holds."""
    doc: dict[str, Any] = {
        "name": "itest",
        "task": {
            "kind": "classify",
            "labels": ["billing", "technical", "account", "other"],
            "instructions": "Classify the support ticket by its main topic.",
        },
        "input": {
            "uri": input_uri,
            "id_column": "ticket_id",
            "text_columns": ["subject", "body"],
            "rows_per_unit": 50,
        },
        "output": {"uri": output_uri},
        "providers": {"sim": {"kind": "sim", "sim": {"latency_ms": 2, "jitter_ms": 1}}},
        "tiers": {
            "cheap": ["sim/gpt-4o-mini"],
            "mid": ["sim/claude-3-5-haiku"],
            "flagship": ["sim/gpt-4o"],
        },
        "routing": {
            "policy": "rules",
            "rules": [
                {"when": "priority = 'high'", "tier": "flagship"},
                {"when": "length(body) > 1500", "tier": "mid"},
            ],
            "default": "cheap",
        },
        "budget_usd": 5.0,
        "run": {"workers": 2, "max_in_flight": 32},
    }
    doc.update(overrides)
    return doc


def read_all(store: Store, folder: str) -> pl.DataFrame:
    files = store.list_files(folder, suffix=".parquet")
    frames = [pl.read_parquet(io.BytesIO(store.read_bytes(f.path))) for f in files]
    return pl.concat(frames) if frames else pl.DataFrame()


def arrow_ids(table: pa.Table) -> list[str]:
    return [str(x) for x in table.column("id").to_pylist()]


FREE_CALLS = ("cached", "duplicate")  # cost rows of reused answers: no call was made


def ledger_by_model(costs: pl.DataFrame) -> dict[str, tuple[int, int, int]]:
    """model -> (calls, input tokens, output tokens) of the paid cost rows."""
    paid = costs.filter(~pl.col("call_status").is_in(FREE_CALLS))
    sums = paid.group_by("model").agg(
        pl.len(), pl.col("input_tokens").sum(), pl.col("output_tokens").sum()
    )
    return {str(m): (int(n), int(i), int(o)) for m, n, i, o in sums.iter_rows()}


def sim_by_model(stats: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    """model -> (answered requests, input tokens, output tokens) from the simulator's /stats."""
    return {
        name: (int(c["ok"]), int(c["tokens_in"]), int(c["tokens_out"]))
        for name, c in stats["models"].items()
        if c["ok"]
    }


def sim_stats(root_url: str) -> dict[str, Any]:
    """The simulator's /stats (`root_url` without /v1)."""
    import json
    import urllib.request

    with urllib.request.urlopen(root_url.removesuffix("/v1") + "/stats", timeout=10) as r:
        stats: dict[str, Any] = json.load(r)
    return stats


def tiers_on(provider: str) -> dict[str, list[str]]:
    """The test job's tiers, all on one provider: gpt-4o-mini cheap and mid, gpt-4o flagship."""
    mini, big = f"{provider}/gpt-4o-mini", f"{provider}/gpt-4o"
    return {"cheap": [mini], "mid": [mini], "flagship": [big]}


def every_row_once(
    summary: JobSummary, data: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(results, errors, costs) of a complete job that verifies, after checking that every
    input row is in results or errors exactly once, and only rows without text failed."""
    from pipeline.engine.verify import verify_job

    assert summary.status == "complete" and verify_job(summary.output).ok
    out = Store.open(summary.output)
    results, errors, costs = (read_all(out, k) for k in ("results", "errors", "costs"))
    ids = pl.concat([results["id"], errors["id"]])
    assert ids.n_unique() == ids.len() == data.height
    assert set(errors["error_type"].to_list()) <= {"empty_text"}
    return results, errors, costs
