"""From a job's summed figures to the report's tables and charts: pure functions, no I/O.

    spend = spend_rows(f.by_tier, tiers=True)      # tiers in routing order
    timeline(f.timelines).rows                      # rows completed per time bucket
    deployment_shares(f.pools)                      # each deployment's share of its tier

`pipeline.report.data.build_report` reads a job folder and calls these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.figures import (
    TIMELINE_STEPS_S,
    Completions,
    Deployment,
    ErrorSample,
    Latency,
    Tally,
    latency_edge,
)

TIER_ORDER = ("cheap", "mid", "flagship")


@dataclass(frozen=True)
class Spend:
    key: str  # tier, or "provider/model"
    rows: int
    calls: int
    cost_usd: float
    group: str = ""  # the tier, in the tier-by-model breakdown
    reused: int = 0  # rows answered without a call (cache, identical row): not in calls


@dataclass(frozen=True)
class LatencyHistogram:
    provider: str
    edges_ms: tuple[float, ...]  # log-spaced, shared by every provider; len(counts) + 1
    counts: tuple[int, ...]
    n: int
    p50: float
    p95: float
    p99: float


@dataclass(frozen=True)
class Timeline:
    """Rows completed, rows that needed a retry and 429s, per time bucket."""

    start: datetime | None
    step_s: float
    rows: tuple[int, ...]
    retried: tuple[int, ...]
    rate_limited: tuple[int, ...]
    per_call_429: bool  # False: files without per-row 429 counts (older writers)


@dataclass(frozen=True)
class DeploymentShare:
    """One deployment of a tier's pool: its share of the tier's answered rows, the 429s
    it answered (to any row that was then answered, there or elsewhere), its latency."""

    tier: str
    deployment: str  # provider/model
    rows: int
    share: float  # of the tier's answered rows
    rate_limited: int
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True)
class ErrorType:
    error_type: str
    count: int
    example_ids: tuple[str, ...]
    example_message: str


def spend_rows(
    tallies: dict[str, Tally], *, tiers: bool = False, grouped: bool = False
) -> tuple[Spend, ...]:
    """Tiers in routing order; anything else by cost, largest first (within its tier).
    `grouped`: keys are 'tier/provider/model', shown as provider/model within the tier."""
    out = []
    for key, t in tallies.items():
        group, name = key.split("/", 1) if grouped and "/" in key else ("", key)
        out.append(Spend(name, t.rows, t.calls, t.cost_usd, group, t.reused))
    if tiers:
        return tuple(sorted(out, key=lambda s: (_tier_rank(s.key), s.key)))
    return tuple(sorted(out, key=lambda s: (_tier_rank(s.group), -s.cost_usd, s.key)))


def _tier_rank(tier: str) -> int:
    return TIER_ORDER.index(tier) if tier in TIER_ORDER else len(TIER_ORDER)


def deployment_shares(pools: dict[str, Deployment]) -> tuple[DeploymentShare, ...]:
    """Per tier that more than one deployment answered (or whose rows met 429s): each
    deployment's share of the tier's rows, the 429s its rows met there, their latency."""
    per: dict[tuple[str, str], Deployment] = {}
    for key, d in pools.items():
        tier, _, dep = key.partition("/")
        per[(tier, dep)] = d
    tier_rows: dict[str, int] = {}
    deps_of: dict[str, set[str]] = {}
    for (t, dep), d in per.items():
        tier_rows[t] = tier_rows.get(t, 0) + d.rows
        deps_of.setdefault(t, set()).add(dep)
    shares = []
    for t, dep in sorted(per, key=lambda k: (_tier_rank(k[0]), k[1])):
        d = per[(t, dep)]
        if len(deps_of[t]) < 2 and not d.rate_limited:
            continue  # one deployment and no 429s: not a pool worth showing
        share = d.rows / tier_rows[t] if tier_rows[t] else 0.0
        shares.append(
            DeploymentShare(
                t,
                dep,
                d.rows,
                share,
                d.rate_limited,
                d.latency.quantile(0.5),
                d.latency.quantile(0.95),
            )
        )
    return tuple(shares)


def latency_histograms(latency: dict[str, Latency]) -> tuple[LatencyHistogram, ...]:
    """Per-provider histograms on the figures' fixed log-spaced buckets, trimmed to the
    range any provider used (so every provider shares its edges)."""
    used = [b for h in latency.values() for b, n in h.counts.items() if n]
    if not used:
        return ()
    lo, hi = min(used), max(used) + 1
    edges = tuple(latency_edge(b) for b in range(lo, hi + 1))
    return tuple(
        LatencyHistogram(
            provider=provider,
            edges_ms=edges,
            counts=tuple(h.counts.get(b, 0) for b in range(lo, hi)),
            n=h.n,
            p50=h.quantile(0.5),
            p95=h.quantile(0.95),
            p99=h.quantile(0.99),
        )
        for provider, h in sorted(latency.items())
        if h.n
    )


def timeline(parts: list[Completions]) -> Timeline:
    """The units' completion buckets on one time axis: the smallest step that gives at
    most 60 buckets (never finer than a unit's own)."""
    per_call = all(p.per_call_429 for p in parts)
    events = [(t, v) for p in parts for t, v in p.events()]
    if not events:
        return Timeline(None, 1.0, (), (), (), per_call)
    t0, t1 = min(t for t, _ in events), max(t for t, _ in events)
    finest = max(p.step_s for p in parts)
    step_s = next(
        (s for s in TIMELINE_STEPS_S if s >= finest and (t1 - t0) / s < 60), TIMELINE_STEPS_S[-1]
    )
    # Bucket numbers on the whole time axis, counted from the first: floor is monotonic,
    # so every event lands in 0..n-1 (a start recomputed in seconds can round past t0).
    first = math.floor(t0 / step_s)
    n = math.floor(t1 / step_s) - first + 1
    start = first * step_s
    rows, retried, rl = [0] * n, [0] * n, [0] * n
    for t, (r, rt, x) in events:
        b = math.floor(t / step_s) - first
        rows[b] += r
        retried[b] += rt
        rl[b] += x
    at = datetime.fromtimestamp(start, tz=UTC)
    return Timeline(at, step_s, tuple(rows), tuple(retried), tuple(rl), per_call)


def error_types(errors: dict[str, ErrorSample], top: int = 10) -> tuple[ErrorType, ...]:
    ranked = sorted(errors.items(), key=lambda kv: (-kv[1].count, kv[0]))[:top]
    return tuple(ErrorType(t, e.count, tuple(e.ids), e.message) for t, e in ranked)
