"""The forecast's arithmetic: answer-length intervals, durations and the limit that binds,
escalations and prices, token counts as the simulator bills them. No Ray, no network."""

from __future__ import annotations

from typing import Any

import polars as pl
import pyarrow as pa
import pytest

from jobs.base import get_job_kind
from pipeline.costs import cost_usd
from pipeline.dryrun.estimates import (
    CLIENT_ROWS_PER_S_PER_WORKER,
    Interval,
    OutputAssumption,
    ProviderLoad,
    job_duration,
    observed_interval,
    provider_duration,
)
from pipeline.dryrun.history import observed_assumption, observed_escalation
from pipeline.dryrun.plans import (
    asker_plans,
    choose_backend,
    long_doc_planner,
    sensitive_plans,
    tier_plans,
)
from pipeline.dryrun.pool import tasks_of
from pipeline.dryrun.sums import ForecastUsage, price_usage, sum_results, with_escalation
from pipeline.dryrun.units import UnitContext, UnitResult, forecast_file, unit_rows, units_rows
from pipeline.engine.plan import Unit
from pipeline.engine.summary import JobSummary, compare_forecast
from pipeline.longdoc.plan import choose_plan, tier_options
from pipeline.sim import generate
from schemas.job import Limits, parse_spec
from schemas.prices import load_prices

PRICES = load_prices()


def spec(**over: Any) -> Any:
    doc: dict[str, Any] = {
        "name": "fc",
        "task": {"kind": "classify", "labels": ["billing", "technical", "other"]},
        "input": {"uri": "in/", "id_column": "id", "text_columns": ["subject", "body"]},
        "output": {"uri": "out/"},
        "providers": {"sim": {"kind": "sim", "sim": {"latency_ms": 50}}},
        "tiers": {"cheap": ["sim/gpt-4o-mini"], "mid": ["sim/claude-3-5-haiku"]},
        "routing": {"rules": [{"when": "length(body) > 40", "tier": "mid"}], "default": "cheap"},
    }
    doc.update(over)
    return parse_spec(doc)


def values(exprs: tuple[pl.Expr, ...], text: list[int], inp: list[int]) -> list[list[float]]:
    df = pl.DataFrame({"t": text, "i": inp})
    return [df.with_columns(e.alias("x"))["x"].to_list() for e in exprs]


# --- answer lengths -------------------------------------------------------------------


def test_label_lengths_give_shortest_mean_longest() -> None:
    a = OutputAssumption.labels([1, 2, 3, 6], cap=4)
    p10, p50, p90 = values(a.exprs(pl.col("t"), pl.col("i")), [10, 500], [20, 600])
    assert p10 == [1.0, 1.0] and p50 == [3.0, 3.0] and p90 == [4.0, 4.0]  # capped at 4


def test_summary_length_follows_max_words_but_not_past_the_text() -> None:
    a = OutputAssumption.words(max_words=60, cap=100)  # 60 words ~ 79.8 tokens
    p10, p50, p90 = values(a.exprs(pl.col("t"), pl.col("i")), [30, 300], [80, 350])
    assert p50 == [30.0, pytest.approx(79.8)]  # a 30-token text is not summarised longer
    assert p10 == [15.0, pytest.approx(39.9)]
    assert p90 == [45.0, 100.0]  # 1.5 x 79.8 is past the cap


def test_observed_ratio_scales_with_input_and_is_capped() -> None:
    a = OutputAssumption("observed_ratio", cap=50, ratio=Interval(0.1, 0.2, 0.3))
    p10, p50, p90 = values(a.exprs(pl.col("t"), pl.col("i")), [0, 0], [100, 1000])
    assert p10 == pytest.approx([10.0, 50.0]) and p50 == [20.0, 50.0] and p90 == [30.0, 50.0]


def test_observed_interval_uses_unit_spread_at_least_ten_percent() -> None:
    same = observed_interval([1.0, 1.0, 1.0], 1.0)
    assert (same.p10, same.p50, same.p90) == (0.9, 1.0, pytest.approx(1.1))
    wide = observed_interval([0.5, 1.0, 1.0, 1.0, 2.0], 1.0)
    assert wide.p10 == pytest.approx(0.7) and wide.p90 == pytest.approx(1.6)


def test_earlier_calls_give_ratio_mean_and_escalation() -> None:
    calls = pl.DataFrame(
        {
            "id": ["a", "b", "c", "c"],
            "unit": [0, 0, 1, 1],
            "input_tokens": [100, 100, 200, 200],
            "output_tokens": [10, 30, 40, 40],
        }
    )
    ratio = observed_assumption(calls, "observed_ratio", cap=500)
    assert ratio.ratio is not None and ratio.ratio.p50 == pytest.approx(120 / 600)
    mean = observed_assumption(calls, "observed_mean", cap=500)
    assert mean.fixed is not None and mean.fixed.p50 == pytest.approx(30.0)
    assert observed_escalation(calls) == pytest.approx(4 / 3 - 1)


# --- tokens as the run sends them ---------------------------------------------------------


def test_prompt_overhead_plus_text_tokens_equal_what_the_simulator_bills() -> None:
    s = spec()
    plans = tier_plans(s, PRICES)
    kind = get_job_kind(s.task)
    table = pa.table(
        {
            "id": ["1", "2", "3", "3", "4"],
            "subject": ["Refund", None, "Login", "dup", ""],
            "body": [
                "I was charged twice",
                "The app crashes with an error whenever I open the settings page",
                "cannot log in",
                "x",
                "  ",
            ],
        }
    )
    ctx = UnitContext(s, PRICES, plans)
    rows, result = unit_rows(ctx, Unit(0, "f", (0,), 0, 5), table)
    assert (result.rows_callable, result.duplicates, result.early) == (3, 1, {"empty_text": 1})
    for rid, tier, text in [
        ("1", "cheap", "Refund\n\nI was charged twice"),
        ("2", "mid", "The app crashes with an error whenever I open the settings page"),
    ]:
        row = rows.filter(pl.col("id") == rid).row(0, named=True)
        msgs = tuple((m.role, m.content) for m in kind.build_messages(text))
        assert row["tier"] == tier
        assert row["input_tokens"] == generate.input_tokens(msgs, row["model"])
    sums = {g[0]: g for g in result.groups}
    assert sums["cheap"][3] == 2 and sums["mid"][3] == 1  # rows per tier


def test_identical_requests_are_paid_once_and_sensitive_rows_stay_on_allowed_providers() -> None:
    s = spec(
        providers={"sim": {"kind": "sim"}, "local": {"kind": "sim"}},
        tiers={"cheap": ["sim/gpt-4o-mini"], "mid": ["sim/claude-3-5-haiku", "local/gpt-4o"]},
        routing={
            "rules": [{"when": "length(body) > 40", "tier": "mid"}],
            "default": "cheap",
            "sensitive": {"pattern": "IBAN", "allowed_providers": ["local"]},
        },
    )
    plans = tier_plans(s, PRICES)
    ctx = UnitContext(s, PRICES, plans, sensitive=sensitive_plans(s, plans, PRICES), reuse=True)
    table = pa.table(
        {
            "id": ["1", "2", "3", "4", "5"],
            "subject": ["Refund", "Refund", "Refund", "x", "x"],
            "body": ["twice", "twice", "twice", "my IBAN is DE00", "my IBAN is DE00"],
        }
    )
    rows, result = unit_rows(ctx, Unit(0, "f", (0,), 0, 5), table)
    assert rows["reuse"].to_list() == [None, "duplicate", "duplicate", None, None]
    assert result.reused == {"duplicate": 2}
    # Sensitive rows are never shared, and go up to the first allowed deployment.
    sensitive = rows.filter(pl.col("id").is_in(["4", "5"]))
    assert set(zip(sensitive["provider"], sensitive["model"], strict=True)) == {("local", "gpt-4o")}
    groups = {(g[0], g[1]): g for g in result.groups}
    assert groups[("cheap", "sim")][3:5] == (3, 1)  # three rows, one paid call
    assert groups[("cheap", "local")][3:5] == (2, 2)
    only_sim = spec(routing={"sensitive": {"pattern": "IBAN", "allowed_providers": ["sim"]}})
    none_allowed = spec(
        providers={"sim": {"kind": "sim"}, "other": {"kind": "sim"}},
        routing={"sensitive": {"pattern": "IBAN", "allowed_providers": ["other"]}},
    )
    assert sensitive_plans(only_sim, tier_plans(only_sim, PRICES), PRICES)["cheap"] is not None
    assert sensitive_plans(none_allowed, tier_plans(none_allowed, PRICES), PRICES) == {
        "cheap": None,
        "mid": None,
    }


def test_units_forecast_together_give_what_each_gives_alone() -> None:
    s = spec()
    plans = tier_plans(s, PRICES)
    ctx = UnitContext(s, PRICES, plans, reuse=True)
    one = pa.table(
        {
            "id": ["1", "2", "2", None, "3"],
            "subject": ["Refund", "Refund", "x", "y", " "],
            "body": ["twice", "twice", "dup id", "no id", ""],
        }
    )
    # The same texts again in the next unit: a unit's identical rows are sent once, but
    # not across units (each unit is its own batch of calls, as in a run).
    two = pa.table({"id": ["4", "5"], "subject": ["Refund", "Refund"], "body": ["twice", "a"]})
    units = [(Unit(0, "f", (0,), 0, 5), one), (Unit(1, "f", (0,), 5, 2), two)]
    together = units_rows(ctx, units)
    for (unit, table), (rows, result) in zip(units, together, strict=True):
        alone_rows, alone = unit_rows(ctx, unit, table)
        assert result == alone
        assert rows.sort("id").equals(alone_rows.sort("id"))
    (_, r0), (rows1, r1) = together
    assert (r0.duplicates, r0.early, r0.reused) == (
        1,
        {"null_id": 1, "empty_text": 1},
        {"duplicate": 1},
    )
    assert r1.reused == {} and rows1["reuse"].null_count() == 2


def test_voted_rows_are_counted_once_per_voter_and_once_as_rows() -> None:
    voters = ["sim/gpt-4o-mini", "sim/claude-3-5-haiku", "sim/gpt-4o"]
    s = spec(routing={"default": "cheap", "vote": {"deployments": voters, "tier": "cheap"}})
    plans = tier_plans(s, PRICES)
    ctx = UnitContext(s, PRICES, plans, askers=asker_plans(s, plans, PRICES))
    table = pa.table({"id": ["1", "2"], "subject": ["a", "b"], "body": ["one", "two"]})
    rows, result = unit_rows(ctx, Unit(0, "f", (0,), 0, 2), table)
    calls = {g[2]: g[4] for g in result.groups}
    assert calls == {"gpt-4o-mini": 2, "claude-3-5-haiku": 2, "gpt-4o": 2}
    assert sum(g[3] for g in result.groups) == 2 == result.rows_callable
    per_id = forecast_file(rows, PRICES)
    assert per_id["id"].to_list() == ["1", "2"] and per_id["calls"].to_list() == [3, 3]
    one_call = forecast_file(rows.filter(pl.col("model") == "gpt-4o-mini"), PRICES)
    assert (per_id["est_cost_usd"] > one_call["est_cost_usd"]).all()


def test_rows_at_an_agreement_check_tier_are_counted_for_both_deployments() -> None:
    s = spec(
        routing={
            "rules": [{"when": "length(body) > 40", "tier": "mid"}],
            "default": "cheap",
            "cascade": {"agree": ["sim/gpt-4o-mini", "sim/claude-3-5-haiku"]},
        }
    )
    plans = tier_plans(s, PRICES)
    askers = asker_plans(s, plans, PRICES)
    assert {t: [p.model for p in a] for t, a in askers.items()} == {
        "cheap": ["gpt-4o-mini", "claude-3-5-haiku"]
    }
    assert asker_plans(s, plans, PRICES, agreement=False) == {}
    ctx = UnitContext(s, PRICES, plans, askers=askers)
    long_body = "The app crashes with an error whenever I open the settings page"
    table = pa.table({"id": ["1", "2"], "subject": ["a", "b"], "body": ["short", long_body]})
    _, result = unit_rows(ctx, Unit(0, "f", (0,), 0, 2), table)
    calls = {(g[0], g[2]): g[4] for g in result.groups}
    # The cheap row: its answer and the check; the mid row: asked once.
    assert calls == {("cheap", "gpt-4o-mini"): 1, ("cheap", "claude-3-5-haiku"): 1,
                     ("mid", "claude-3-5-haiku"): 1}  # fmt: skip
    assert result.rows_callable == 2


def test_a_document_too_long_for_its_tier_is_forecast_as_the_run_plans_it() -> None:
    s = spec(
        task={"kind": "summarise", "max_words": 40},
        tiers={"cheap": ["sim/gpt-3.5-turbo"], "mid": ["sim/gpt-4o-mini"]},
        routing={"default": "cheap"},
    )
    plans = tier_plans(s, PRICES)
    planner = long_doc_planner(s, PRICES)
    assert planner is not None and long_doc_planner(spec(), PRICES) is None
    ctx = UnitContext(s, PRICES, plans, longdocs=planner)
    long_text = "The gateway certificate expired and renewals failed for an hour. " * 3000
    table = pa.table({"id": ["short", "long"], "subject": ["x", "y"], "body": ["hi", long_text]})
    rows, result = unit_rows(ctx, Unit(0, "f", (0,), 0, 2), table)
    long = rows.filter(pl.col("id") == "long").row(0, named=True)
    plan = choose_plan(
        long["text_tokens"], "cheap", tier_options(s, PRICES), max_words=40, instructions=""
    )
    assert plan.tier == "mid" and plan.mode == "direct"  # one call to the 128k-token window
    assert (long["tier"], long["model"], long["_calls"]) == ("mid", "gpt-4o-mini", 1)
    assert long["input_tokens"] == plan.forecast_input_tokens
    assert long["out_p50"] == plan.forecast_output_tokens
    # Without a longer window to go to, it is chunked: many calls on its own tier.
    cheap_only = spec(
        task={"kind": "summarise", "max_words": 40},
        tiers={"cheap": ["sim/gpt-3.5-turbo"]},
        routing={"default": "cheap"},
    )
    ctx = UnitContext(
        cheap_only,
        PRICES,
        tier_plans(cheap_only, PRICES),
        longdocs=long_doc_planner(cheap_only, PRICES),
    )
    rows, result = unit_rows(ctx, Unit(0, "f", (0,), 0, 2), table)
    chunked = rows.filter(pl.col("id") == "long").row(0, named=True)
    assert chunked["_calls"] >= 3 and chunked["model"] == "gpt-3.5-turbo"
    assert {g[0]: g[4] for g in result.groups} == {"cheap": 1 + chunked["_calls"]}
    assert {g[0]: g[3] for g in result.groups} == {"cheap": 2}


# --- sums, escalation, prices -------------------------------------------------------------


def test_results_fold_into_sums_with_a_separate_todo_part() -> None:
    g = ("cheap", "sim", "gpt-4o-mini", 10, 9, 1000.0, 10.0, 20.0, 30.0, 1160.0)
    results = [
        UnitResult(0, rows=11, rows_callable=10, early={"empty_text": 1}, groups=[g]),
        UnitResult(1, rows=10, rows_callable=10, groups=[g], reused={"duplicate": 1}),
    ]
    t = sum_results(results, todo_units={1})
    u = t.usage[("cheap", "sim", "gpt-4o-mini")]
    assert (t.rows, t.callable, t.early, t.reused) == (21, 20, {"empty_text": 1}, {"duplicate": 1})
    assert (u.rows, u.calls, u.input_tokens, u.out) == (20, 18, 2000, [20, 40, 60])
    assert u.reserve_tokens == 2320
    assert t.todo[("cheap", "sim", "gpt-4o-mini")].rows == 10


def test_escalated_calls_go_to_the_next_tier_and_are_priced_there() -> None:
    s = spec()
    plans = tier_plans(s, PRICES)
    cheap = ForecastUsage("cheap", "sim", "gpt-4o-mini", 100, 100, 10_000, [100, 200, 300], 12_000)
    mid = ForecastUsage("mid", "sim", "claude-3-5-haiku", 10, 10, 5_000, [10, 20, 30], 5_200)
    usage = with_escalation([cheap, mid], 0.2, plans)
    assert len(usage) == 3  # the top tier does not escalate
    up = usage[1]
    assert (up.tier, up.model, up.rows, up.calls, up.input_tokens) == (
        "cheap",
        "claude-3-5-haiku",
        0,
        20,
        2_000,
    )
    by_model = price_usage(usage, PRICES, "model")
    haiku = PRICES.lookup("claude-3-5-haiku")
    expect = cost_usd(haiku, 5_000, 20) + cost_usd(haiku, 2_000, 40)
    assert by_model["sim/claude-3-5-haiku"].cost_usd.p50 == pytest.approx(expect)
    by_tier = price_usage(usage, PRICES, "tier")
    assert list(by_tier) == ["cheap", "mid"] and by_tier["cheap"].calls == 120


# --- duration ---------------------------------------------------------------------------


def load(**over: Any) -> ProviderLoad:
    base: dict[str, Any] = {
        "provider": "openai",
        "requests": 10_000,
        "tokens": 4_000_000,
        "latency_s": 0.6,
        "limits": Limits(),
        "run_concurrency": 128,
    }
    base.update(over)
    return ProviderLoad(**base)


def test_rpm_binds_when_it_is_the_slowest_limit() -> None:
    d = provider_duration(load(limits=Limits(rpm=500, tpm=10_000_000)))
    assert d.binding == "openai rpm=500"
    assert d.seconds.p50 == pytest.approx(1200.0)  # 10,000 / 500 per minute
    assert d.seconds.p10 == d.seconds.p90 == d.seconds.p50  # a rate limit has no spread
    assert d.limits["openai tpm=10000000"] == pytest.approx(24.0)


def test_tpm_and_provider_concurrency_bind() -> None:
    d = provider_duration(load(limits=Limits(tpm=100_000)))
    assert d.binding == "openai tpm=100000" and d.seconds.p50 == pytest.approx(2400.0)
    d = provider_duration(load(limits=Limits(max_concurrency=8)))
    assert d.binding == "openai max_concurrency=8"
    assert d.seconds.p50 == pytest.approx(10_000 * 0.6 / 8)
    assert d.seconds.p10 < d.seconds.p50 < d.seconds.p90


def test_without_limits_the_runs_concurrency_and_latency_bind() -> None:
    d = provider_duration(load())
    assert d.binding == "concurrency=128"
    assert d.seconds.p50 == pytest.approx(10_000 * 0.6 / 128)


def test_job_takes_as_long_as_its_slowest_provider_plus_startup() -> None:
    slow = load(limits=Limits(rpm=500))
    fast = load(provider="sim", latency_s=0.01, requests=1_000)
    job = job_duration([slow, fast], workers=2, startup_s=5.0)
    assert job.binding == "openai rpm=500" and job.seconds.p50 == pytest.approx(1205.0)
    assert [p.provider for p in job.providers] == ["openai", "sim"]


def test_shared_slots_and_client_throughput_are_job_wide_floors() -> None:
    a, b = load(provider="a", latency_s=1.0), load(provider="b", latency_s=1.0)
    job = job_duration([a, b], workers=2, startup_s=0.0)
    assert job.seconds.p50 == pytest.approx(20_000 / 128)  # both share 128 slots
    assert job.binding.startswith("concurrency=128 (all providers)")
    quick = load(provider="sim", latency_s=0.0, requests=30_000)
    job = job_duration([quick], workers=2, startup_s=0.0)
    assert job.binding == "client workers=2"
    assert job.seconds.p50 == pytest.approx(30_000 / (2 * CLIENT_ROWS_PER_S_PER_WORKER))


# --- odds and ends ----------------------------------------------------------------------


def test_small_inputs_are_counted_in_process_and_tasks_are_bounded() -> None:
    assert choose_backend(1_000, parallel=True) == "inline"
    assert choose_backend(10_000_000, parallel=False) == "inline"
    units = [Unit(i, "f", (i,), 0, 300) for i in range(10)]
    assert [len(t) for t in tasks_of(units, task_rows=1_000)] == [4, 4, 2]
    # Units cut from one big row group stay together: it is read once.
    big = [Unit(i, "f", (0,), i * 300, 300) for i in range(10)] + [Unit(10, "f", (1,), 0, 300)]
    assert [len(t) for t in tasks_of(big, task_rows=1_000)] == [10, 1]


def test_compare_forecast_gives_signed_errors() -> None:
    # One convention everywhere: (actual - forecast) / forecast, positive when the run
    # cost or took more than forecast.
    summary = JobSummary.model_construct(cost_usd=2.0, wall_s=50.0)
    got = compare_forecast({"cost_usd": {"p50": 2.5}, "duration_s": {"p50": 40.0}}, summary)
    assert got["cost_error_pct"] == pytest.approx(-20.0)
    assert got["duration_error_pct"] == pytest.approx(25.0)
    nothing = JobSummary.model_construct(cost_usd=1.0, wall_s=1.0)
    assert (
        compare_forecast({"cost_usd": {"p50": 0.0}, "duration_s": {"p50": 1.0}}, nothing)[
            "cost_error_pct"
        ]
        is None
    )


def test_the_forecast_says_when_a_deadline_cannot_hold_even_synchronously() -> None:
    from pipeline.dryrun.forecast import plan_finish

    tight = spec(run={"mode": "auto", "deadline": "10m"})
    late = plan_finish(tight, sync_s=3600.0, escalation_rate=0.0)
    assert (late.mode, late.holds) == ("sync", False)  # no time for a batch, nor for sync
    room = spec(run={"mode": "auto", "deadline": "6h", "batch_turnaround_s": 3600})
    batched = plan_finish(room, sync_s=3600.0, escalation_rate=0.1)
    assert (batched.mode, batched.holds) == ("batch", True)  # two stages of an hour
    # Earlier runs measured batches at five hours: auto goes sync, and sync holds.
    slow = plan_finish(room, sync_s=3600.0, escalation_rate=0.0, turnaround_s=5 * 3600)
    assert (slow.mode, slow.holds) == ("sync", True)


def test_a_pooled_tier_forecasts_the_pace_of_its_providers_quotas_together() -> None:
    from pipeline.dryrun.sums import provider_loads

    providers = {
        "a": {"kind": "sim", "limits": {"rpm": 300}},
        "b": {"kind": "sim", "limits": {"rpm": 300}},
    }
    tiers = {"cheap": ["a/gpt-4o-mini"], "flagship": ["a/gpt-4o", "b/gpt-4o"]}
    usage = [ForecastUsage("flagship", "a", "gpt-4o", rows=3000, calls=3000, reserve_tokens=3e5)]

    def seconds(pools: dict[str, Any]) -> tuple[float, dict[str, float]]:
        s = spec(providers=providers, tiers=tiers, pools=pools, routing={"default": "flagship"})
        loads = {load.provider: load.requests for load in provider_loads(s, usage)}
        return job_duration(provider_loads(s, usage), 2, startup_s=0.0).seconds.p50, loads

    pooled, split = seconds({})  # the default strategy, cheapest, shares the pool
    ordered, alone = seconds({"flagship": {"strategy": "ordered"}})
    assert split == {"a": 1500, "b": 1500} and alone == {"a": 3000}
    assert pooled == pytest.approx(300.0) and ordered == pytest.approx(600.0)
