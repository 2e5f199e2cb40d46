"""Planning a document of any length: how many calls it takes on a model, and which tier
and mode (direct or chunked) cost least. Pure arithmetic over token counts and prices.

    est = estimate_calls(60_000, context_window=16_385, max_words=60)
    est.n_map, est.n_reduce                  # (5, 1): five chunks, one reduce call
    plan = choose_plan(60_000, "cheap", options, max_words=60)
    plan.mode, plan.tier, plan.forecast_usd  # ('direct', 'mid', 0.0091)

The dry-run forecast uses `estimate_calls` for rows longer than their model's window;
`choose_plan` compares chunking on the routed tier with a direct (or chunked) run on a
higher tier by forecast cost, never moving a document that fits where routing sent it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

from jobs.longdoc_prompts import map_messages, reduce_messages
from jobs.summarise import TOKENS_PER_WORD, SummariseJob
from pipeline.costs import cost_usd
from pipeline.longdoc.chunking import Count, input_budget
from pipeline.providers.base import Message
from pipeline.tokens import chat_overhead_tokens, count_tokens
from schemas.job import TIER_ORDER, JobSpec, SummariseTask
from schemas.prices import ModelPrice, PriceTable

REDUCE_OVERHEAD = 2  # tokens per partial summary for the blank line between them
_DIGITS_SLACK = 4  # "part 12 of 34" costs a few tokens more than the probe prompt


class CallEstimate(NamedTuple):
    """Forecast of one document: n_map == n_reduce == 0 means one direct call."""

    n_map: int
    n_reduce: int
    input_tokens: int
    output_tokens: int


def output_cap(max_words: int) -> int:
    """The answer's token cap for a word limit (SummariseTask's default)."""
    return SummariseTask(kind="summarise", max_words=max_words).output_token_cap()


def estimate_calls(
    tokens: int,
    context_window: int,
    max_words: int,
    *,
    map_words: int | None = None,
    prompt_tokens: int = 120,
    overlap_tokens: int = 200,
    margin: float = 0.05,
    fill: float = 0.9,
) -> CallEstimate:
    """Calls and tokens to summarise a `tokens`-long text on one model. Chunks are taken
    as `fill` full (breaks fall at sentences); raises ValueError if even a chunk cannot fit."""
    words = map_words or max_words
    out_cap, map_cap = output_cap(max_words), output_cap(words)
    out = min(out_cap, math.ceil(max_words * TOKENS_PER_WORD))
    item = min(map_cap, math.ceil(words * TOKENS_PER_WORD)) + REDUCE_OVERHEAD
    if tokens <= input_budget(context_window, prompt_tokens, out_cap, margin):
        return CallEstimate(0, 0, tokens + prompt_tokens, out)
    chunk = input_budget(context_window, prompt_tokens, map_cap, margin)
    reduce_room = input_budget(context_window, prompt_tokens, out_cap, margin)
    if chunk < 8 or reduce_room < 2 * max(item, out + REDUCE_OVERHEAD):
        raise ValueError(f"a {context_window}-token window leaves no room for chunks")
    overlap = min(overlap_tokens, chunk // 4)
    n_map = max(2, math.ceil((tokens - overlap) / max(1, int(chunk * fill) - overlap)))
    input_total = tokens + (n_map - 1) * overlap + n_map * prompt_tokens
    output_total = n_map * (item - REDUCE_OVERHEAD)
    items, n_reduce = n_map, 0
    while items > 1:
        groups = math.ceil(items / max(2, reduce_room // item))
        n_reduce += groups
        input_total += items * item + groups * prompt_tokens
        output_total += groups * out
        items, item = groups, out + REDUCE_OVERHEAD
    return CallEstimate(n_map, n_reduce, input_total, output_total)


# --- the plan ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TierOption:
    """A tier as the planner sees it: its first deployment's model and price. Pass the
    smallest window among the tier's deployments as `context_window` when they differ."""

    tier: str
    model: str
    price: ModelPrice
    context_window: int | None = None

    @property
    def window(self) -> int:
        return self.context_window or self.price.context_window


@dataclass(frozen=True, slots=True)
class DocPlan:
    mode: Literal["direct", "chunked"]
    tier: str
    model: str
    context_window: int
    max_words: int
    output_tokens: int  # max_tokens of the direct and reduce calls
    map_words: int
    map_output_tokens: int
    chunk_tokens: int  # most text tokens in one map call
    reduce_tokens: int  # most summary tokens in one reduce call
    overlap_tokens: int
    forecast_usd: float
    forecast_calls: int
    forecast_input_tokens: int  # over every call of the plan (map, reduce or direct)
    forecast_output_tokens: int
    routed_tier: str
    instructions: str = ""
    considered: tuple[tuple[str, str, float], ...] = ()  # (mode, tier, usd) compared


def tier_options(spec: JobSpec, prices: PriceTable) -> list[TierOption]:
    """The spec's tiers, cheapest first, as the planner sees them: each tier's first
    deployment priced, with the smallest context window among its deployments."""
    options = []
    for tier in TIER_ORDER:
        deps = spec.tiers.get(tier)  # type: ignore[call-overload]
        if not deps:
            continue
        windows = [prices.lookup(d.model).context_window for d in deps]
        options.append(TierOption(tier, deps[0].model, prices.lookup(deps[0].model), min(windows)))
    return options


def needs_plan(input_tokens: int, window: int | None, output_cap: int) -> bool:
    """A row whose request (text and prompt) plus its answer cap does not fit the window
    of its tier is planned as a long document (map-reduce or a longer-context tier)."""
    return window is not None and input_tokens + output_cap > window


def prompt_tokens(messages: Sequence[Message], count: Count) -> int:
    """Tokens of a chat request: every message's text plus the chat framing."""
    return sum(count(m.content) for m in messages) + chat_overhead_tokens(len(messages))


def _plan_for(
    opt: TierOption,
    tokens: int,
    routed: str,
    words: tuple[int, int],
    instructions: str,
    overlap: int,
    margin: float,
    count: Callable[[str, str], int],
) -> DocPlan | None:
    max_words, map_words = words

    def cnt(text: str) -> int:
        return count(text, opt.model)

    task = SummariseTask(kind="summarise", max_words=max_words, instructions=instructions)
    direct = prompt_tokens(SummariseJob(task).build_messages(""), cnt)
    mapping = prompt_tokens(map_messages("", 0, 1, map_words, instructions), cnt)
    reducing = prompt_tokens(reduce_messages([""], max_words, instructions), cnt)
    prompt = max(direct, mapping, reducing) + _DIGITS_SLACK
    try:
        est = estimate_calls(
            tokens,
            opt.window,
            max_words,
            map_words=map_words,
            prompt_tokens=prompt,
            overlap_tokens=overlap,
            margin=margin,
        )
    except ValueError:
        return None
    out_cap, map_cap = output_cap(max_words), output_cap(map_words)
    chunk = input_budget(opt.window, mapping + _DIGITS_SLACK, map_cap, margin)
    return DocPlan(
        mode="direct" if est.n_map == 0 else "chunked",
        tier=opt.tier,
        model=opt.model,
        context_window=opt.window,
        max_words=max_words,
        output_tokens=out_cap,
        map_words=map_words,
        map_output_tokens=map_cap,
        chunk_tokens=chunk,
        reduce_tokens=input_budget(opt.window, reducing + _DIGITS_SLACK, out_cap, margin),
        overlap_tokens=min(overlap, chunk // 4),
        forecast_usd=cost_usd(opt.price, est.input_tokens, est.output_tokens),
        forecast_calls=max(1, est.n_map + est.n_reduce),
        forecast_input_tokens=est.input_tokens,
        forecast_output_tokens=est.output_tokens,
        routed_tier=routed,
        instructions=instructions,
    )


def choose_plan(
    tokens: int,
    routed_tier: str,
    options: Sequence[TierOption],
    *,
    max_words: int,
    map_words: int | None = None,
    instructions: str = "",
    overlap_tokens: int = 200,
    margin: float = 0.05,
    allow_upgrade: bool = True,
    count: Callable[[str, str], int] = count_tokens,
) -> DocPlan:
    """Direct on the routed tier when the document fits it; otherwise the cheapest by
    forecast cost of: chunking on the routed tier, or (with `allow_upgrade`) a direct or
    chunked run on a higher tier. `options` go cheapest tier first; ties keep the lower
    tier, then fewer calls. Raises ValueError when no tier can take it, even in chunks."""
    names = [o.tier for o in options]
    if routed_tier not in names:
        raise ValueError(f"routed tier {routed_tier!r} is not among {names}")
    start = names.index(routed_tier)
    pool = options[start:] if allow_upgrade else options[start : start + 1]
    words = (max_words, map_words or max_words)
    plans: list[DocPlan] = []
    for k, opt in enumerate(pool):
        plan = _plan_for(
            opt, tokens, routed_tier, words, instructions, overlap_tokens, margin, count
        )
        if plan is None:
            continue
        if k == 0 and plan.mode == "direct":
            return plan  # it fits where routing sent it: routing's choice stands
        plans.append(plan)
    if not plans:
        raise ValueError(f"a {tokens}-token document fits no tier from {routed_tier!r} up")
    best = min(plans, key=lambda p: (p.forecast_usd, p.forecast_calls))
    return replace(best, considered=tuple((p.mode, p.tier, p.forecast_usd) for p in plans))
