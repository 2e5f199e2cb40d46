"""Summarisation benchmark: documents of any length, against one flagship call each, and a
second run of the same job answered by the response cache.

    python tests/benchmarks/summarise.py                     # 1,000 documents
    python tests/benchmarks/summarise.py --quick --json out.json

1. Documents: DialogSum dialogues (../shared/data/dialogsum) joined into documents whose
   lengths follow a log-normal (median about 2,000 tokens) clipped to 200..60,000, with
   the shortest and longest always present and 2% exact duplicates (as real batches
   have); without ../shared, generated dialogue-like text of the same lengths.
2. The job (`run_summarise_job`): every document is routed to the cheap tier,
   gpt-3.5-turbo (16,385-token window). `choose_plan` keeps a document there when it
   fits; otherwise it takes the cheapest by forecast cost of chunking on cheap, or a
   direct (or chunked) run on mid, gpt-4o-mini (128k), or flagship, gpt-4o (128k).
   Calls go over HTTP, in the OpenAI format, to the simulator with these models' real
   windows and prices; the cache (a local folder beside the outputs) is looked up in one
   batch per unit of 100 documents, and identical documents in a unit are sent once.
3. Baseline: every document sent once to the flagship, cut to its window when it must be.
4. The same job again, a fresh cache object on the same prefix: calls made and cost.
5. Scenario `chunk_only`: the same job with upgrades off, so every document past 16k is
   map-reduced on gpt-3.5-turbo. The price table makes gpt-4o-mini cheaper per token than
   gpt-3.5-turbo, so the chooser never picks chunking when it may upgrade; this run shows
   chunking at scale and what it costs.

Targets: truncated 0, one summary per document, rerun calls 0 and rerun cost 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402

from jobs.summarise import SummariseJob  # noqa: E402
from pipeline.cache import (  # noqa: E402
    CachedAnswer,
    ResponseCache,
    cache_key,
    chat_body,
    dedupe_within,
)
from pipeline.chunking import input_budget, truncate_tokens  # noqa: E402
from pipeline.costs import cost_usd  # noqa: E402
from pipeline.errors import TierlineError  # noqa: E402
from pipeline.longdoc import (  # noqa: E402
    CallResult,
    DocOutcome,
    DocWork,
    StepRequest,
    TierOption,
    choose_plan,
    prepare_document,
    run_document,
)
from pipeline.longdoc_plan import prompt_tokens  # noqa: E402
from pipeline.providers import registry  # noqa: E402
from pipeline.providers.base import ChatRequest, Provider, Usage  # noqa: E402
from pipeline.sim import SimConfig, run_in_thread  # noqa: E402
from pipeline.store import Store  # noqa: E402
from pipeline.tokens import count_tokens  # noqa: E402
from schemas.job import SummariseTask, Timeouts  # noqa: E402
from schemas.prices import PriceTable, load_prices  # noqa: E402

DIALOGSUM = REPO.parent / "shared" / "data" / "dialogsum" / "dev.parquet"
TIERS = {"cheap": "gpt-3.5-turbo", "mid": "gpt-4o-mini", "flagship": "gpt-4o"}
MIN_TOKENS, MEDIAN_TOKENS, MAX_TOKENS = 200, 2_000, 60_000
MAX_WORDS, UNIT, IN_FLIGHT = 60, 100, 64


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


# --- the job, driven directly until the worker integrates longdoc + cache ---------------


@dataclass
class JobRun:
    outcomes: dict[str, DocOutcome]
    plans: dict[str, str]  # doc id -> "mode:tier"
    forecast_usd: float
    calls: int = 0  # HTTP requests sent
    over_window: int = 0  # calls whose input + max_tokens exceeded the model's window
    duplicates: int = 0
    cache: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class SimCaller:
    """The `call` longdoc needs: cache first, then the provider; a valid answer is cached."""

    def __init__(self, provider: Provider, session: aiohttp.ClientSession, cache: ResponseCache):
        self.provider, self.session, self.cache = provider, session, cache
        self.parse = SummariseJob(SummariseTask(kind="summarise", max_words=MAX_WORDS)).parse
        self.windows = {m: load_prices().lookup(m).context_window for m in TIERS.values()}
        self.calls = self.over_window = 0

    def key(self, req: StepRequest) -> str:
        chat = ChatRequest(TIERS[req.tier], req.messages, req.max_tokens)
        return cache_key("openai", chat.model, chat_body(chat))

    async def __call__(self, req: StepRequest) -> CallResult:
        model, key = TIERS[req.tier], self.key(req)
        hit = (await self.cache.get_many([key])).get(key)  # memory, after the unit's batch
        if hit is not None:
            usage = Usage(hit.input_tokens, hit.output_tokens)
            return CallResult(True, hit.text, usage, "sim", hit.model, req.tier, cached=True)
        self.calls += 1
        try:
            resp = await self.provider.complete(
                self.session, ChatRequest(model, req.messages, req.max_tokens)
            )
        except TierlineError as exc:
            return CallResult(False, tier=req.tier, error_type=exc.error_type, message=exc.message)
        # the simulator does not enforce windows: check every call against the real one
        self.over_window += resp.usage.input_tokens + req.max_tokens > self.windows[model]
        parsed = self.parse(resp.text)
        if parsed.ok:
            answer = CachedAnswer(
                resp.text, resp.usage.input_tokens, resp.usage.output_tokens, resp.model
            )
            self.cache.put_many({key: answer})
        return CallResult(
            parsed.ok,
            parsed.output or "",
            resp.usage,
            "sim",
            resp.model,
            req.tier,
            error_type=None if parsed.ok else "invalid_output",
            message=parsed.reason,
        )


def tier_options(prices: PriceTable) -> list[TierOption]:
    return [TierOption(t, m, prices.lookup(m)) for t, m in TIERS.items()]


async def run_summarise_job(
    docs: list[tuple[str, str]], base_url: str, cache_uri: str, *, allow_upgrade: bool = True
) -> JobRun:
    """One summarise job over `docs`. Stand-in for `pipeline.driver.run_job` until the
    worker calls longdoc and the cache itself; the steps are the ones it will take."""
    started = time.perf_counter()
    cache = ResponseCache(Store.open(cache_uri), "read-write")
    provider = registry.create(
        "openai", name="sim", base_url=base_url, api_key_env=None, timeouts=Timeouts()
    )
    run = JobRun({}, {}, 0.0)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=IN_FLIGHT)) as session:
        caller = SimCaller(provider, session, cache)
        for lo in range(0, len(docs), UNIT):
            await run_unit(docs[lo : lo + UNIT], caller, run, allow_upgrade)
            await cache.flush()
    run.calls, run.over_window = caller.calls, caller.over_window
    run.seconds = time.perf_counter() - started
    run.cache = {
        "lookups": cache.stats.lookups,
        "listings": cache.stats.listings,
        "segments_written": cache.stats.segments_written,
        "segments_read": cache.stats.segments_read,
    }
    return run


async def run_unit(
    unit: list[tuple[str, str]], caller: SimCaller, run: JobRun, allow_upgrade: bool
) -> None:
    """Plan every document, send identical ones once, look the unit's first requests up
    in one batch, then run the documents concurrently."""
    options = tier_options(load_prices())
    works = []
    for doc_id, text in unit:
        tokens = count_tokens(text, TIERS["cheap"])
        plan = choose_plan(
            tokens, "cheap", options, max_words=MAX_WORDS, allow_upgrade=allow_upgrade
        )
        run.plans[doc_id] = f"{plan.mode}:{plan.tier}"
        run.forecast_usd += plan.forecast_usd
        works.append(prepare_document(doc_id, text, plan))
    # same text, same route => the same requests: one key over all of a document's requests
    same = dedupe_within(
        [cache_key("doc", w.plan.tier, {"k": [caller.key(r) for r in w.requests]}) for w in works]
    )
    leaders = [works[i] for i in same.send]
    await caller.cache.get_many([caller.key(r) for w in leaders for r in w.requests])
    sem = asyncio.Semaphore(IN_FLIGHT)

    async def one(work: DocWork) -> DocOutcome:
        async with sem:
            return await run_document(work, caller)

    results = same.fan_out(await asyncio.gather(*(one(w) for w in leaders)))
    for i, (work, out) in enumerate(zip(works, results, strict=True)):
        if same.is_duplicate(i):  # its own result row; its cost rows cost nothing
            run.duplicates += 1
            dup = [replace(r, call_status="duplicate") for r in out.records]
            out = replace(out, id=work.id, records=dup)
        run.outcomes[work.id] = out


def spend(run: JobRun, prices: PriceTable) -> tuple[float, float]:
    """(USD billed, USD saved by cache hits and duplicates)."""
    billed = saved = 0.0
    for out in run.outcomes.values():
        for r in out.records:
            usd = cost_usd(prices.lookup(r.model), r.input_tokens, r.output_tokens)
            if r.call_status in ("cached", "duplicate"):
                saved += usd
            else:
                billed += usd
    return billed, saved


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


def scenario(
    docs: list[tuple[str, str]], base_url: str, folder: Path, allow_upgrade: bool
) -> dict[str, Any]:
    prices, uri = load_prices(), str(folder / "out" / "_cache")
    first = asyncio.run(run_summarise_job(docs, base_url, uri, allow_upgrade=allow_upgrade))
    again = asyncio.run(run_summarise_job(docs, base_url, uri, allow_upgrade=allow_upgrade))
    cost, saved = spend(first, prices)
    rerun_cost, rerun_saved = spend(again, prices)
    steps: dict[str, int] = {}
    for out in first.outcomes.values():
        for r in out.records:
            if r.call_status not in ("cached", "duplicate"):
                steps[r.step] = steps.get(r.step, 0) + 1
    plans: dict[str, int] = {}
    for p in first.plans.values():
        plans[p] = plans.get(p, 0) + 1
    ok = [o for o in first.outcomes.values() if o.ok and o.output]
    return {
        "cost_usd": round(cost, 6),
        "forecast_usd": round(first.forecast_usd, 6),
        "docs_with_one_summary": len(ok),
        "errors": len(first.outcomes) - len(ok),
        "truncated": sum(1 for o in first.outcomes.values() if o.truncated),
        "calls": first.calls,
        "calls_over_window": first.over_window,
        "calls_by_step": steps,
        "plans": plans,
        "chunks_max": max(o.chunks for o in first.outcomes.values()),
        "reduce_levels_max": max(o.levels for o in first.outcomes.values()),
        "duplicates_sent_once": first.duplicates,
        "cache_hits": sum(
            r.call_status == "cached" for o in first.outcomes.values() for r in o.records
        ),
        "duplicate_savings_usd": round(saved, 6),
        "seconds": round(first.seconds, 1),
        "rerun_calls": again.calls,
        "rerun_cost_usd": round(rerun_cost, 6),
        "rerun_cache_hits": sum(
            r.call_status == "cached" for o in again.outcomes.values() for r in o.records
        ),
        "rerun_savings_usd": round(rerun_saved, 6),
        "rerun_cache_io": {k: again.cache[k] for k in ("listings", "segments_read")},
        "rerun_seconds": round(again.seconds, 1),
        "cache_segments_written": first.cache["segments_written"],
    }


ROWS = [
    ("cost USD", "cost_usd"),
    ("forecast USD", "forecast_usd"),
    ("% of flagship cost", "pct_flagship_cost"),
    ("docs truncated (target 0)", "truncated"),
    ("docs with one summary", "docs_with_one_summary"),
    ("errors", "errors"),
    ("calls", "calls"),
    ("calls past the model's window (target 0)", "calls_over_window"),
    ("calls by step", "calls_by_step"),
    ("plans", "plans"),
    ("most chunks / reduce levels", "chunks_max", "reduce_levels_max"),
    ("duplicates sent once / cache hits", "duplicates_sent_once", "cache_hits"),
    ("rerun calls (target 0)", "rerun_calls"),
    ("rerun cost USD (target 0)", "rerun_cost_usd"),
    ("rerun cache hits", "rerun_cache_hits"),
    ("rerun savings USD", "rerun_savings_usd"),
    ("seconds (first / rerun)", "seconds", "rerun_seconds"),
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
    base_url, stop = run_in_thread(SimConfig(seed=1))
    try:
        with tempfile.TemporaryDirectory(prefix="tl-bench-") as tmp:
            auto = scenario(docs, base_url, Path(tmp) / "auto", allow_upgrade=True)
            chunked = scenario(docs, base_url, Path(tmp) / "chunk", allow_upgrade=False)
            flagship, flagship_truncated = asyncio.run(flagship_baseline(docs, base_url))
    finally:
        stop()
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
