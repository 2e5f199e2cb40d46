"""A unit's figures add up: the figures of two halves of the rows, summed, are the figures of
all of them, which is what lets a job's figures come from its markers alone."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow as pa
import pytest

from pipeline.engine.figures import conform, forecast_error_pct, unit_figures
from pipeline.report.data import timeline
from schemas.figures import (
    TIMELINE_JOB_BUCKETS,
    TIMELINE_PARTS,
    TIMELINE_UNIT_BUCKETS,
    Latency,
    UnitFigures,
    latency_bucket,
)
from schemas.prices import load_prices
from schemas.records import COSTS, ERRORS, RESULTS

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
DEPLOYMENTS = {"cheap": "gpt-4o-mini", "mid": "claude-3-5-haiku", "flagship": "gpt-4o"}


def tables(n: int, seed: int = 1) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    rng = random.Random(seed)
    results, costs, errors = [], [], []
    for i in range(n):
        rid, tier = f"r{i}", rng.choice(list(DEPLOYMENTS))
        model = DEPLOYMENTS[tier]
        if i % 17 == 0:  # empty text: no call, no tier
            errors.append({"id": rid, "error_type": "empty_text", "message": "no text",
                           "attempts": 0, "tier": None, "routed_tier": tier})  # fmt: skip
            continue
        status = "cached" if i % 11 == 0 else "duplicate" if i % 13 == 0 else "ok"
        up = tier == "cheap" and i % 7 == 0  # escalated: a cheap answer not kept
        if up:
            costs.append({"id": rid, "provider": "p", "model": "gpt-4o-mini", "tier": "cheap",
                          "input_tokens": 90, "output_tokens": 2, "cost_usd": 0.00002,
                          "call_status": "escalated", "attempt": 1, "mode": "sync"})  # fmt: skip
            tier, model = "mid", DEPLOYMENTS["mid"]
        costs.append({"id": rid, "provider": "p", "model": model, "tier": tier,
                      "input_tokens": 100, "output_tokens": 3,
                      "cost_usd": 0.0 if status != "ok" else 0.0001 * (1 + i % 3),
                      "call_status": status, "attempt": 2 if up else 1,
                      "mode": "sync"})  # fmt: skip
        results.append({"id": rid, "tier": tier, "answered_tier": tier,
                        "routed_tier": "cheap" if up else tier, "provider": "p", "model": model,
                        "attempts": 0 if status != "ok" else 1 + i % 2,
                        "rate_limited": int(i % 5 == 0),
                        "latency_ms": rng.lognormvariate(4, 0.5),
                        "completed_at": T0 + timedelta(seconds=i * 0.7)})  # fmt: skip
    frames = []
    for rows, schema in ((results, RESULTS), (costs, COSTS), (errors, ERRORS)):
        table = pa.Table.from_pylist(rows, schema=schema)
        frames.append(conform(pl.DataFrame(pl.from_arrow(table)), schema))
    return frames[0], frames[1], frames[2]


def halves(df: pl.DataFrame, ids: set[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    inside = pl.col("id").is_in(list(ids))
    return df.filter(inside), df.filter(~inside)


def same(a: dict[str, object], b: dict[str, object], where: str) -> None:
    """Equal, floats within rounding (sums taken in another order), nested parts too."""
    assert a.keys() == b.keys(), where
    for part, want in b.items():
        got = a[part]
        if isinstance(want, float):
            assert got == pytest.approx(want), f"{where}.{part}"
        elif isinstance(want, dict) and isinstance(got, dict):
            same(got, want, f"{where}.{part}")
        else:
            assert got == want, f"{where}.{part}"


def test_the_figures_of_two_halves_add_up_to_those_of_the_whole() -> None:
    prices = load_prices()
    r, c, e = tables(400)
    whole = unit_figures(r, c, e, prices=prices)
    ids = {f"r{i}" for i in range(0, 400, 2)}
    (r1, r2), (c1, c2), (e1, e2) = (halves(x, ids) for x in (r, c, e))
    summed = unit_figures(r1, c1, e1, prices=prices).plus(unit_figures(r2, c2, e2, prices=prices))
    for name, field in UnitFigures.model_fields.items():
        if field.annotation is float:
            assert getattr(summed, name) == pytest.approx(getattr(whole, name)), name
        elif name not in ("timelines", "errors"):
            got, want = getattr(summed, name), getattr(whole, name)
            if isinstance(want, dict):
                assert got.keys() == want.keys(), name
                for k in want:
                    same(got[k].model_dump(), want[k].model_dump(), f"{name}[{k}]")
            else:
                assert got == want, name
    assert {k: v.count for k, v in summed.errors.items()} == {"empty_text": 24}
    rows = sum(sum(v[0] for v in t.buckets.values()) for t in summed.timelines)
    assert rows == r.height


def test_definitions_calls_reused_tiers_and_escalations() -> None:
    r, c, e = tables(400)
    f = unit_figures(r, c, e)
    free = c["call_status"].is_in(["cached", "duplicate"])
    assert f.calls == c.filter(~free).height  # a call is a paid call
    # Reused: answered without a paid call of its own (a row with one is not reused).
    paid_ids = c.filter(~free)["id"].implode()
    reused = c.filter(free & ~pl.col("id").is_in(paid_ids))["id"].n_unique()
    assert f.reused == reused == f.cache_hits + f.duplicates > 0
    assert sum(t.calls for t in f.by_tier.values()) == f.calls
    assert sum(t.reused for t in f.by_tier.values()) == f.reused
    assert f.by_tier["none"].rows == f.by_tier["none"].errors == e.height  # reached no tier
    assert f.rows_escalated == r.filter(pl.col("routed_tier") != pl.col("tier")).height > 0
    assert f.cost_usd == pytest.approx(float(c["cost_usd"].sum()))
    # Reused rows made no call: their latency is not the provider's.
    assert sum(h.n for h in f.latency.values()) == r.height - f.reused


def test_latency_quantiles_read_from_fixed_buckets_are_within_a_bucket() -> None:
    values = [random.Random(3).lognormvariate(5, 0.8) for _ in range(5000)]
    h = Latency()
    for v in values:
        h = h.plus(Latency(counts={latency_bucket(v): 1}, n=1, sum_ms=v))
    exact = sorted(values)
    for q in (0.5, 0.95, 0.99):
        assert h.quantile(q) == pytest.approx(exact[int(q * len(exact))], rel=0.12)


def test_forecast_errors_have_one_sign_convention() -> None:
    assert forecast_error_pct(forecast=10.0, actual=12.0) == pytest.approx(20.0)
    assert forecast_error_pct(forecast=10.0, actual=8.0) == pytest.approx(-20.0)
    assert forecast_error_pct(forecast=0.0, actual=0.0) == 0.0
    assert forecast_error_pct(forecast=0.0, actual=1.0) is None


def test_a_jobs_figures_stay_the_same_size_however_many_units_it_has() -> None:
    """Summing 1,000 units' figures keeps one merged timeline, not 1,000: the summary and
    the report of a job of 100,000 units must not hold every unit's timeline."""
    prices = load_prices()
    r, c, e = tables(60)
    units = []
    for u in range(1000):  # the same unit's rows, each unit 10 minutes after the last
        shift = pl.col("completed_at") + timedelta(minutes=10 * u)
        units.append(unit_figures(r.with_columns(completed_at=shift), c, e, prices=prices))
    small = UnitFigures.total(units[:10])
    total = UnitFigures.total(units)
    assert len(small.timelines) == 10  # a few units keep their own timelines
    assert len(total.timelines) <= TIMELINE_PARTS
    merged = total.timelines[0]  # the first part: what was merged when too many came
    assert len(merged.buckets) <= TIMELINE_JOB_BUCKETS
    assert sum(v[0] for t in total.timelines for v in t.buckets.values()) == 1000 * r.height
    assert sum(v[2] for t in total.timelines for v in t.buckets.values()) == 1000 * int(
        r["rate_limited"].sum()
    )
    bound = TIMELINE_JOB_BUCKETS + TIMELINE_PARTS * TIMELINE_UNIT_BUCKETS
    assert sum(len(t.buckets) for t in total.timelines) <= bound
    # The report draws the same totals from the merged timeline as from the units' own.
    drawn, exact = timeline(total.timelines), timeline([t for f in units for t in f.timelines])
    assert sum(drawn.rows) == sum(exact.rows) == 1000 * r.height
    assert sum(drawn.rate_limited) == sum(exact.rate_limited)
    assert drawn.start == exact.start
