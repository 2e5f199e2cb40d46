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
        price = prices.for_deployment(u.provider, u.model)
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


def pool_shares(spec: JobSpec, tier: str, tokens_per_call: float) -> dict[str, float]:
    """How a pooled tier's calls split among its providers, as the run shares them: by the
    rate each provider's limits allow (rpm, or tpm over the tokens of a call); providers
    without a known limit take the rows first, evenly. An `ordered` tier (or a tier of one
    provider) sends everything to its first deployment."""
    deps = spec.tiers.get(tier) or []  # type: ignore[call-overload]
    providers = list(dict.fromkeys(d.provider for d in deps))
    if spec.strategies().get(tier) == "ordered" or len(providers) <= 1:
        return {providers[0]: 1.0} if providers else {}
    rates: dict[str, float] = {}
    for name in providers:
        lim = spec.providers[name].limits
        rate = math.inf
        if lim.rpm:
            rate = min(rate, lim.rpm / 60.0)
        if lim.tpm and tokens_per_call > 0:
            rate = min(rate, lim.tpm / 60.0 / tokens_per_call)
        rates[name] = rate
    unlimited = [n for n, r in rates.items() if math.isinf(r)]
    if unlimited:
        return {n: 1.0 / len(unlimited) for n in unlimited}
    total = sum(rates.values())
    return {n: r / total for n, r in rates.items()}


def provider_loads(spec: JobSpec, usage: list[ForecastUsage]) -> list[ProviderLoad]:
    """Requests, rate-limited tokens and typical latency per provider. A tier's calls go
    to its pool as the run spreads them (`pool_shares`), so two providers of 300 rpm in
    one tier forecast the pace of 600."""
    acc: dict[str, list[float]] = {}
    firsts = {t: deps[0] for t, deps in spec.tiers.items() if deps}
    for u in usage:
        first = firsts.get(u.tier)  # type: ignore[call-overload]
        pooled = first is not None and (first.provider, first.model) == (u.provider, u.model)
        per_call = u.reserve_tokens / u.calls if u.calls else 0.0
        shares = pool_shares(spec, u.tier, per_call) if pooled else {u.provider: 1.0}
        for name, share in shares.items():
            p = spec.providers[name]
            latency = p.sim.latency_ms / 1000.0 if p.kind == "sim" else TYPICAL_LATENCY_S[u.tier]
            a = acc.setdefault(name, [0.0, 0.0, 0.0])
            a[0] += u.calls * share
            a[1] += u.reserve_tokens * share
            a[2] += u.calls * share * latency
    run_conc = spec.run.workers * spec.run.max_in_flight
    return [
        ProviderLoad(
            name, req, tok, busy / req if req else 0.0, spec.providers[name].limits, run_conc
        )
        for name, (req, tok, busy) in sorted(acc.items())
    ]
