"""Summarisation benchmark: documents of any length, against one flagship call each, and a
second job over the same documents answered by the response cache.

    python tests/benchmarks/summarise.py                     # 1,000 documents
    python tests/benchmarks/summarise.py --quick --json out.json

1. Documents: DialogSum dialogues (../shared/data/dialogsum) joined into documents whose
   lengths follow a log-normal (median about 2,000 tokens) clipped to 200..60,000, with
   the shortest and longest always present and 2% exact duplicates (as real batches
   have); without ../shared, generated dialogue-like text of the same lengths. They are
   written as one Parquet file (doc_id, text) in a temporary folder.
2. The job is the real pipeline: `pipeline.engine.driver.run_job(spec)` with a summarise task,
   a `kind: sim` provider, routing default cheap (gpt-3.5-turbo, 16,385-token window),
   2 workers and units of 100 rows. A row past its tier's window is planned by forecast
   cost and map-reduced or upgraded (mid gpt-4o-mini 128k, flagship gpt-4o); every call
   is a cost row with its step (direct / map / reduce) and chunk. Identical rows in a
   unit are sent once; answers go to the response cache under <output>/_cache.
3. Baseline: every document sent once to the flagship, cut to its window when it must be
   (over HTTP to an in-process simulator).
4. The same spec again (same job id: it resumes, committed units are skipped), then a
   second job (another name) over the same input and output root: it shares the cache,
   so its calls and cost should be 0.
5. Scenario `chunk_only`: the same job with the upgrade made unattractive (mid
   gpt-3.5-turbo-1106 with a 16k window, flagship gpt-4-1106-preview at its high price),
   so every document past 16k is map-reduced on gpt-3.5-turbo.

Truncation is counted from the outputs: a document counts as truncated when one of its
paid cost rows has input_tokens above that model's context window (the simulator does not
enforce windows). Partial summaries cut to fit a reduce call are not recorded in the
outputs, so they are not in this count.

Before each scenario's first run, the dry run (`forecast_job`) over the same spec: its
calls and cost (long documents planned as the run plans them) against the run's.

Targets: truncated 0, one summary per document, rerun calls 0 and rerun cost 0; the
forecast within 15% of the actual cost.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import polars as pl  # noqa: E402

from jobs.summarise import SummariseJob  # noqa: E402
from pipeline.costs import cost_usd  # noqa: E402
from pipeline.dryrun.forecast import forecast_job  # noqa: E402
from pipeline.engine.driver import run_job  # noqa: E402
from pipeline.engine.summary import JobSummary  # noqa: E402
from pipeline.longdoc.chunking import input_budget, truncate_tokens  # noqa: E402
from pipeline.longdoc.plan import prompt_tokens  # noqa: E402
from pipeline.providers import registry  # noqa: E402
from pipeline.providers.base import ChatRequest  # noqa: E402
from pipeline.sim import SimConfig, run_in_thread  # noqa: E402
from pipeline.store import Store  # noqa: E402
from pipeline.tokens import count_tokens  # noqa: E402
from schemas.job import JobSpec, SummariseTask, Timeouts, parse_spec  # noqa: E402
from schemas.prices import load_prices  # noqa: E402

DIALOGSUM = REPO.parent / "shared" / "data" / "dialogsum" / "dev.parquet"
TIERS = {"cheap": "gpt-3.5-turbo", "mid": "gpt-4o-mini", "flagship": "gpt-4o"}
# Upgrades unattractive: mid has a 16k window, flagship is dear; long rows chunk on cheap.
CHUNK_ONLY_TIERS = {
    "cheap": "gpt-3.5-turbo",
    "mid": "gpt-3.5-turbo-1106",
    "flagship": "gpt-4-1106-preview",
}
MIN_TOKENS, MEDIAN_TOKENS, MAX_TOKENS = 200, 2_000, 60_000
MAX_WORDS, UNIT, IN_FLIGHT = 60, 100, 64
REUSED = ("cached", "duplicate")


# --- documents -------------------------------------------------------------------------


def source_paragraphs(rng: random.Random) -> tuple[list[str], str]:
    if DIALOGSUM.exists():
        import polars as pl

        return pl.read_parquet(DIALOGSUM)["dialogue"].to_list(), "dialogsum/dev.parquet"
    names, verbs = ["Anna", "Ben", "the doctor", "Mr. Lee"], ["asks", "explains", "agrees"]
    things = ["the invoice", "a refund", "the meeting", "the test results", "a new flat"]
    return [
        "\n".join(
            f"#Person{t % 2 + 1}#: {rng.choice(names)} {rng.choice(verbs)} about "
            f"{rng.choice(things)} on day {rng.randint(1, 28)}."
            for t in range(rng.randint(6, 16))
        )
        for _ in range(500)
    ], "generated"


def make_documents(n: int, seed: int = 7) -> tuple[list[tuple[str, str]], str]:
    rng = random.Random(seed)
    paragraphs, source = source_paragraphs(rng)
    sizes = [count_tokens(p, TIERS["cheap"]) + 1 for p in paragraphs]
    mu, sigma = math.log(MEDIAN_TOKENS), 1.1
    targets = [
        min(MAX_TOKENS, max(MIN_TOKENS, int(rng.lognormvariate(mu, sigma)))) for _ in range(n)
    ]
    targets[0], targets[-1] = MIN_TOKENS, MAX_TOKENS
    docs: list[tuple[str, str]] = []
    for i, target in enumerate(targets):
        if docs and rng.random() < 0.02:
            docs.append((f"doc-{i:05d}", rng.choice(docs)[1]))  # an exact duplicate
            continue
        parts: list[str] = []
        total = 0
        while total < target:
            j = rng.randrange(len(paragraphs))
            if parts and total + sizes[j] > MAX_TOKENS:
                break
            parts.append(paragraphs[j])
            total += sizes[j]
        docs.append((f"doc-{i:05d}", "\n\n".join(parts)))
    return docs, source


# --- the job: the real pipeline ---------------------------------------------------------


def write_documents(docs: list[tuple[str, str]], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame(
        {"doc_id": [d for d, _ in docs], "text": [t for _, t in docs]},
        schema={"doc_id": pl.String, "text": pl.String},
    )
    frame.write_parquet(folder / "docs.parquet")
    return folder


def summarise_spec(name: str, input_dir: Path, output: Path, tiers: dict[str, str]) -> JobSpec:
    return parse_spec(
        {
            "name": name,
            "task": {"kind": "summarise", "max_words": MAX_WORDS},
            "input": {
                "uri": str(input_dir),
                "id_column": "doc_id",
                "text_columns": ["text"],
                "rows_per_unit": UNIT,
            },
            "output": {"uri": str(output)},
            "providers": {"sim": {"kind": "sim", "sim": {"latency_ms": 5, "jitter_ms": 1}}},
            "tiers": {tier: [f"sim/{model}"] for tier, model in tiers.items()},
            "routing": {"policy": "rules", "default": "cheap"},
            "budget_usd": 1_000.0,
            "run": {"workers": 2, "max_in_flight": IN_FLIGHT},
        }
    )


def read_outputs(prefix: str, folder: str) -> pl.DataFrame:
    store = Store.open(prefix)
    files = store.list_files(folder, suffix=".parquet")
    frames = [pl.read_parquet(io.BytesIO(store.read_bytes(f.path))) for f in files]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def window_of(model: str) -> int | None:
    try:
        return load_prices().lookup(model).context_window
    except Exception:  # a model the price table does not know: no window to check
        return None


def scenario(input_dir: Path, folder: Path, tiers: dict[str, str], label: str) -> dict[str, Any]:
    spec = summarise_spec(f"bench-{label}", input_dir, folder / "out", tiers)
    fc = forecast_job(spec)  # the dry run first: what it says, against what the run does
    first = run_job(spec)
    resumed = run_job(spec)  # same output, same job id: committed units are skipped
    again = run_job(spec.model_copy(update={"name": f"bench-{label}-again"}))
    out = measure(first, resumed, again)
    calls = sum(b.calls for b in fc.by_model.values())
    out |= {
        "forecast_cost_usd": round(fc.cost_usd.p50, 6),
        "forecast_error_pct": round(100.0 * (fc.cost_usd.p50 - first.cost_usd) / first.cost_usd, 2)
        if first.cost_usd
        else None,
        "forecast_calls": round(calls, 1),
    }
    return out


def measure(first: JobSummary, resumed: JobSummary, again: JobSummary) -> dict[str, Any]:
    results = read_outputs(first.output, "results")
    costs = read_outputs(first.output, "costs")
    rerun_costs = read_outputs(again.output, "costs")
    cap = SummariseJob(SummariseTask(kind="summarise", max_words=MAX_WORDS)).max_output_tokens()
    windows = {m: window_of(m) for m in costs["model"].unique().to_list()}
    costs = costs.with_columns(
        pl.col("model").replace_strict(windows, default=None, return_dtype=pl.Int64).alias("win")
    )
    # Input past the model's window: that call only got through cut (or not at all).
    # Answers reused (cache, identical row) made no call: a long document's reused answer
    # carries the whole document's tokens, but nothing was sent.
    paid = costs.filter(~pl.col("call_status").is_in(REUSED))
    over_input = paid.filter(pl.col("win").is_not_null() & (pl.col("input_tokens") > pl.col("win")))
    over_window = paid.filter(
        pl.col("win").is_not_null() & (pl.col("input_tokens") + cap > pl.col("win"))
    )
    steps = dict(paid.group_by("step").len().sort("step").iter_rows())
    per_doc = costs.group_by("id").agg(
        (pl.col("step") == "map").any().alias("chunked"),
        pl.col("chunk").filter(pl.col("step") == "map").n_unique().alias("chunks"),
        (pl.col("step") == "reduce").sum().alias("reduces"),
    )
    plan_rows = results.select("id", "tier").join(per_doc, on="id", how="left")
    plans: dict[str, int] = {}
    for tier, chunked in plan_rows.select("tier", "chunked").iter_rows():
        key = f"{'chunk' if chunked else 'direct'}:{tier}"
        plans[key] = plans.get(key, 0) + 1
    once = results.group_by("id").len().filter(pl.col("len") == 1).height
    return {
        "cost_usd": round(first.cost_usd, 6),
        "docs_with_one_summary": once,
        "rows_ok": first.rows_ok,
        "errors": first.rows_error,
        "errors_by_type": first.errors_by_type,
        "truncated": over_input["id"].n_unique(),
        "calls": first.calls,
        "calls_over_window": over_window.height,
        "calls_by_step": steps,
        "plans": dict(sorted(plans.items())),
        "chunks_max": int(per_doc["chunks"].max() or 0),  # type: ignore[arg-type]
        "reduce_calls_max": int(per_doc["reduces"].max() or 0),  # type: ignore[arg-type]
        "duplicates_sent_once": first.duplicates,
        "cache_hits": first.cache_hits,
        "duplicate_savings_usd": round(first.cache_saved_usd, 6),
        "by_tier_usd": {t: round(b.cost_usd, 6) for t, b in first.by_tier.items()},
        "status": first.status,
        "seconds": round(first.wall_s, 1),
        # a summary totals every committed unit's cost rows: the resume's own are the rest
        "resume_calls": resumed.calls - first.calls,
        "resume_cost_usd": round(resumed.cost_usd - first.cost_usd, 6),
        "resume_units_committed": f"{resumed.units_committed}/{resumed.units_total}",
        "resume_seconds": round(resumed.wall_s, 1),
        "rerun_calls": again.calls,
        "rerun_cost_usd": round(again.cost_usd, 6),
        "rerun_calls_by_step": dict(
            rerun_costs.filter(~pl.col("call_status").is_in(REUSED))
            .group_by("step")
            .len()
            .sort("step")
            .iter_rows()
        ),
        "rerun_cache_hits": again.cache_hits,
        "rerun_duplicates": again.duplicates,
        "rerun_savings_usd": round(again.cache_saved_usd, 6),
        "rerun_seconds": round(again.wall_s, 1),
    }


# --- the baseline: every document once to the flagship ---------------------------------


async def flagship_baseline(docs: list[tuple[str, str]], base_url: str) -> tuple[float, int]:
    prices, model = load_prices(), TIERS["flagship"]
    price = prices.lookup(model)
    job = SummariseJob(SummariseTask(kind="summarise", max_words=MAX_WORDS))
    out_cap = job.max_output_tokens()

    def count(s: str) -> int:
        return count_tokens(s, model)

    budget = input_budget(
        price.context_window, prompt_tokens(job.build_messages(""), count), out_cap
    )
    provider = registry.create(
        "openai", name="sim", base_url=base_url, api_key_env=None, timeouts=Timeouts()
    )
    sem, total, truncated = asyncio.Semaphore(IN_FLIGHT), 0.0, 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=IN_FLIGHT)) as session:

        async def one(text: str) -> float:
            nonlocal truncated
            if count(text) > budget:
                text, truncated = truncate_tokens(text, budget, count), truncated + 1
            async with sem:
                resp = await provider.complete(
                    session, ChatRequest(model, job.build_messages(text), out_cap)
                )
            return cost_usd(price, resp.usage.input_tokens, resp.usage.output_tokens)

        total = sum(await asyncio.gather(*(one(t) for _, t in docs)))
    return total, truncated


# --- report ----------------------------------------------------------------------------


ROWS = [
    ("cost USD", "cost_usd"),
    ("% of flagship cost", "pct_flagship_cost"),
    ("docs truncated (target 0)", "truncated"),
    ("docs with one summary", "docs_with_one_summary"),
    ("errors", "errors"),
    ("status", "status"),
    ("calls", "calls"),
    (
        "forecast: calls / cost USD / error %",
        "forecast_calls",
        "forecast_cost_usd",
        "forecast_error_pct",
    ),
    ("calls past the model's window (target 0)", "calls_over_window"),
    ("calls by step", "calls_by_step"),
    ("plans", "plans"),
    ("most chunks / reduce calls (one doc)", "chunks_max", "reduce_calls_max"),
    ("duplicates sent once / cache hits", "duplicates_sent_once", "cache_hits"),
    ("resume: new calls / units committed", "resume_calls", "resume_units_committed"),
    ("rerun calls (target 0)", "rerun_calls"),
    ("rerun calls by step", "rerun_calls_by_step"),
    ("rerun cost USD (target 0)", "rerun_cost_usd"),
    ("rerun cache hits / duplicates", "rerun_cache_hits", "rerun_duplicates"),
    ("rerun savings USD", "rerun_savings_usd"),
    ("seconds (first / resume / rerun)", "seconds", "resume_seconds", "rerun_seconds"),
]


def print_table(*scenarios: dict[str, Any]) -> None:
    rows: list[tuple[str, ...]] = [("", "auto (upgrade by cost)", "chunk_only (no upgrade)")]
    for label, *keys in ROWS:
        rows.append((label, *(" / ".join(str(s[k]) for k in keys) for s in scenarios)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--quick", action="store_true", help="100 documents instead of 1,000")
    ap.add_argument("--docs", type=int, default=None)
    args = ap.parse_args()
    n = args.docs or (100 if args.quick else 1_000)
    docs, source = make_documents(n)
    lengths = sorted(count_tokens(t, TIERS["cheap"]) for _, t in docs)
    import ray  # after pipeline (imported above), so its loopback default applies

    ray.init(address="local", include_dashboard=False)
    base_url, stop = run_in_thread(SimConfig(seed=1))
    try:
        with tempfile.TemporaryDirectory(prefix="tl-bench-") as tmp:
            input_dir = write_documents(docs, Path(tmp) / "in")
            auto = scenario(input_dir, Path(tmp) / "auto", TIERS, "auto")
            chunked = scenario(input_dir, Path(tmp) / "chunk", CHUNK_ONLY_TIERS, "chunk-only")
            flagship, flagship_truncated = asyncio.run(flagship_baseline(docs, base_url))
    finally:
        stop()
        ray.shutdown()
    for s in (auto, chunked):
        s["pct_flagship_cost"] = round(100.0 * s["cost_usd"] / flagship, 2) if flagship else 0.0
    result = {
        **{
            k: auto[k]
            for k in (
                "cost_usd",
                "pct_flagship_cost",
                "truncated",
                "docs_with_one_summary",
                "rerun_calls",
                "rerun_cost_usd",
                "forecast_cost_usd",
                "forecast_error_pct",
            )
        },
        "flagship_cost_usd": round(flagship, 6),
        "flagship_truncated": flagship_truncated,
        "docs": n,
        "source": source,
        "tokens": {
            "min": lengths[0],
            "median": lengths[n // 2],
            "p95": lengths[int(n * 0.95)],
            "max": lengths[-1],
            "over_16k": sum(t > 16_385 for t in lengths),
            "total": sum(lengths),
        },
        "tiers": TIERS,
        "chunk_only_tiers": CHUNK_ONLY_TIERS,
        "truncated_counted_as": "documents with a cost row whose input_tokens exceed the "
        "model's context window; reduce-level cuts are not recorded in the outputs",
        "auto": auto,
        "chunk_only": chunked,
    }
    tok = result["tokens"]
    print(f"{n:,} documents ({source}), {tok['min']:,} to {tok['max']:,} tokens,", end=" ")
    print(f"median {tok['median']:,}, {tok['over_16k']} past gpt-3.5-turbo's 16k window")
    print(f"flagship baseline (gpt-4o, one call each): ${flagship:.4f},", end=" ")
    print(f"{flagship_truncated} truncated")
    print_table(auto, chunked)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
