"""Per-unit results folded into sums per tier, provider and model, then priced.

    totals = sum_results(results, todo_units={3, 4})     # constant memory
    usage = with_escalation(totals.usage.values(), rate=0.1, plans=plans)
    price_usage(usage, prices, by="tier")["cheap"].cost_usd.p50
    provider_loads(spec, usage)                          # -> duration arithmetic

Prices come from `pipeline.costs.cost_usd` applied to the summed tokens: the price is
linear in tokens, so pricing sums is exact and needs one lookup per model, not per row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.costs import cost_usd
from pipeline.dryrun.estimates import TYPICAL_LATENCY_S, Interval, ProviderLoad
from pipeline.dryrun.units import TierPlan
from schemas.job import TIER_ORDER, JobSpec
from schemas.prices import PriceTable


class Range(BaseModel):
    model_config = ConfigDict(extra="forbid")

    p10: float
    p50: float
    p90: float

    @classmethod
    def of(cls, i: Interval) -> Range:
        return cls(p10=i.p10, p50=i.p50, p90=i.p90)


class ForecastBucket(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: int = Field(description="Rows routed here (an escalated call is not a row).")
    calls: float = Field(description="Calls expected, escalations included.")
    input_tokens: int = Field(description="Input tokens of those calls (exact counts).")
    est_output_tokens: int = Field(description="Answer tokens at p50.")
    cost_usd: Range = Field(description="USD at p10 / p50 / p90 answer lengths.")


@dataclass
class ForecastUsage:
    """One tier's rows sent to one model, summed; tokens are those of paid calls (a row
    answered from the cache or by an identical row's call costs nothing)."""

    tier: str
    provider: str
    model: str
    rows: float = 0.0
    calls: float = 0.0
    input_tokens: float = 0.0
    out: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # p10, p50, p90
    reserve_tokens: float = 0.0  # input + max_tokens


@dataclass
class Totals:
    rows: int = 0
    callable: int = 0
    duplicates: int = 0
    early: dict[str, int] = field(default_factory=dict)
    reused: dict[str, int] = field(default_factory=dict)
    usage: dict[tuple[str, str, str], ForecastUsage] = field(default_factory=dict)
    todo: dict[tuple[str, str, str], ForecastUsage] = field(default_factory=dict)


def sum_results(results: Iterable[Any], todo_units: set[int]) -> Totals:
    """Fold per-unit results into per-(tier, provider, model) sums, in constant memory."""
    t = Totals()
    for r in results:
        t.rows += r.rows
        t.callable += r.rows_callable
        t.duplicates += r.duplicates
        for k, v in r.early.items():
            t.early[k] = t.early.get(k, 0) + v
        for k, v in r.reused.items():
            t.reused[k] = t.reused.get(k, 0) + v
        books = [t.usage, t.todo] if r.unit in todo_units else [t.usage]
        for tier, provider, model, rows, calls, tin, o10, o50, o90, reserve in r.groups:
            for book in books:
                u = book.setdefault((tier, provider, model), ForecastUsage(tier, provider, model))
                u.rows += rows
                u.calls += calls
                u.input_tokens += tin
                u.out = [u.out[0] + o10, u.out[1] + o50, u.out[2] + o90]
                u.reserve_tokens += reserve
    return t


def with_escalation(
    usage: Iterable[ForecastUsage], rate: float, plans: dict[str, TierPlan]
) -> list[ForecastUsage]:
    """The usage plus escalated calls: a share `rate` of each tier's rows asked again on
    the next tier up, with the same tokens (the top tier does not escalate)."""
    tiers = [t for t in TIER_ORDER if t in plans]
    out: list[ForecastUsage] = []
    for u in usage:
        out.append(u)
        i = tiers.index(u.tier) if u.tier in tiers else len(tiers)
        if rate > 0 and i + 1 < len(tiers):
            up = plans[tiers[i + 1]]
            out.append(
                ForecastUsage(
                    u.tier,
                    up.provider,
                    up.model,
                    rows=0.0,
                    calls=u.calls * rate,
                    input_tokens=u.input_tokens * rate,
                    out=[v * rate for v in u.out],
                    reserve_tokens=u.reserve_tokens * rate,
                )
            )
    return out


def price_usage(
    usage: list[ForecastUsage], prices: PriceTable, by: str, *, batch: bool = False
) -> dict[str, ForecastBucket]:
    """Buckets keyed by tier (`by="tier"`) or by 'provider/model' (`by="model"`), at
    batch-API prices when `batch`."""
    acc: dict[str, list[float]] = {}
    for u in usage:
        price = prices.lookup(u.model)
        tin = round(u.input_tokens)
        costs = [cost_usd(price, tin, round(o), batch=batch) for o in u.out]
        key = u.tier if by == "tier" else f"{u.provider}/{u.model}"
        a = acc.setdefault(key, [0.0] * 7)
        for i, v in enumerate((u.rows, u.calls, u.input_tokens, u.out[1], *costs)):
            a[i] += v
    order = {t: i for i, t in enumerate(TIER_ORDER)}
    keys = sorted(acc, key=lambda k: (order.get(k, len(order)), k))
    return {
        k: ForecastBucket(
            rows=round(acc[k][0]),
            calls=round(acc[k][1], 1),
            input_tokens=round(acc[k][2]),
            est_output_tokens=round(acc[k][3]),
            cost_usd=Range(p10=acc[k][4], p50=acc[k][5], p90=acc[k][6]),
        )
        for k in keys
    }


def total_range(buckets: dict[str, ForecastBucket]) -> Range:
    costs = [b.cost_usd for b in buckets.values()]
    return Range(
        p10=math.fsum(c.p10 for c in costs),
        p50=math.fsum(c.p50 for c in costs),
        p90=math.fsum(c.p90 for c in costs),
    )


def provider_loads(spec: JobSpec, usage: list[ForecastUsage]) -> list[ProviderLoad]:
    """Requests, rate-limited tokens and typical latency per provider."""
    acc: dict[str, list[float]] = {}
    for u in usage:
        p = spec.providers[u.provider]
        latency = p.sim.latency_ms / 1000.0 if p.kind == "sim" else TYPICAL_LATENCY_S[u.tier]
        a = acc.setdefault(u.provider, [0.0, 0.0, 0.0])
        a[0] += u.calls
        a[1] += u.reserve_tokens
        a[2] += u.calls * latency
    run_conc = spec.run.workers * spec.run.max_in_flight
    return [
        ProviderLoad(
            name, req, tok, busy / req if req else 0.0, spec.providers[name].limits, run_conc
        )
        for name, (req, tok, busy) in sorted(acc.items())
    ]
