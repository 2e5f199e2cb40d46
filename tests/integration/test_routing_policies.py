"""Routing policies end to end on the simulator: sensitive rows, cascades (agreement as the
learned router assumes it, low log-probabilities)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from pipeline.engine.driver import run_job
from pipeline.engine.verify import verify_job
from pipeline.routing.calibrate import Outcomes, realise
from pipeline.routing.cascade import normalise
from pipeline.sim import SimConfig, run_in_thread
from pipeline.store import Store
from tests.integration.helpers import read_all, spec_for, ticket_frame

pytestmark = pytest.mark.integration


def _stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url.removesuffix("/v1") + "/stats") as r:
        return dict(json.load(r))


def _tickets_with_pii(folder: Path) -> pl.DataFrame:
    folder.mkdir(parents=True)
    df = ticket_frame(0, 80).with_columns(
        pl.when(pl.int_range(pl.len()) % 4 == 0)
        .then(pl.col("body") + " Contact me at jane.doe@example.com.")
        .otherwise(pl.col("body"))
        .alias("body")
    )
    df.write_parquet(folder / "a.parquet")
    return df


def test_sensitive_rows_stay_on_allowed_providers_under_fallback_and_escalation(
    tmp_path: Path, ray_local: None
) -> None:
    # Provider "inhouse" is allowed to see PII but its cheap model is down; "vendor" is not.
    inhouse_url, stop_a = run_in_thread(
        SimConfig(models={"gpt-4o-mini": {"faults": {"error_rates": {503: 1.0}}}})
    )
    vendor_url, stop_b = run_in_thread(SimConfig())
    try:
        df = _tickets_with_pii(tmp_path / "in")
        spec = spec_for(
            str(tmp_path / "in"),
            str(tmp_path / "out"),
            providers={
                "inhouse": {"kind": "openai", "base_url": inhouse_url},
                "vendor": {"kind": "openai", "base_url": vendor_url},
            },
            tiers={
                "cheap": ["inhouse/gpt-4o-mini", "vendor/gpt-4o-mini"],
                "mid": ["vendor/claude-3-5-haiku", "inhouse/gpt-4o"],
                "flagship": ["inhouse/gpt-4o"],
            },
            routing={
                "policy": "rules",
                "default": "cheap",
                "sensitive": {
                    "pattern": r"[\w.+-]+@[\w-]+\.[\w.]+",
                    "allowed_providers": ["inhouse"],
                },
            },
            run={"max_attempts": 1, "breaker_failures": 2, "workers": 1},
        )
        summary = run_job(spec)
        vendor = _stats(vendor_url)
    finally:
        stop_a()
        stop_b()
    out = Store.open(summary.output)
    results = read_all(out, "results")
    pii_ids = df.filter(pl.col("body").str.contains("@example.com"))["ticket_id"].to_list()
    pii = results.filter(pl.col("id").is_in(pii_ids))
    assert pii.height == len(pii_ids) and set(pii["provider"].to_list()) == {"inhouse"}
    # The vendor answered exactly the rows without PII: not one sensitive prompt reached it.
    others = results.filter(~pl.col("id").is_in(pii_ids))
    assert vendor["total"]["requests"] == others.height
    assert set(others["provider"].to_list()) == {"vendor"}
    assert verify_job(summary.output).ok


def test_cascade_escalates_wrong_cheap_answers_and_costs_add_up(
    tmp_path: Path, ray_local: None
) -> None:
    data = _tickets_with_pii(tmp_path / "in")
    spec = spec_for(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        providers={
            "sim": {
                "kind": "sim",
                "sim": {"latency_ms": 1, "models": {"gpt-4o-mini": {"accuracy": 0.6}}},
            }
        },
        tiers={
            "cheap": ["sim/gpt-4o-mini"],
            "mid": ["sim/claude-3-5-haiku"],
            "flagship": ["sim/gpt-4o"],
        },
        routing={
            "policy": "cascade",
            "default": "cheap",
            "cascade": {"agree": ["sim/gpt-4o-mini", "sim/claude-3-5-haiku"]},
        },
    )
    summary = run_job(spec)
    out = Store.open(summary.output)
    results, costs = read_all(out, "results"), read_all(out, "costs")
    assert set(results["routed_tier"].to_list()) == {"cheap"}
    escalated = results.filter(pl.col("tier") == "flagship")
    kept = results.filter(pl.col("tier") == "cheap")
    assert escalated.height > 0 and kept.height > 0
    assert set(kept["accepted_reason"].to_list()) == {"agree"}
    # Every attempt is billed with its tier; the kept answer's call is the accepted one.
    per_row = costs.group_by("id").len()
    assert per_row.filter(pl.col("id").is_in(escalated["id"].to_list()))["len"].min() == 3
    assert set(costs["call_status"].to_list()) >= {"ok", "disagreed"}
    assert costs["cost_usd"].sum() == pytest.approx(summary.cost_usd)
    # With a cheap model right 60% of the time, agreement keeps flagship-level answers.
    joined = results.join(data.rename({"ticket_id": "id"}), on="id")
    assert (joined["output"] == joined["expected"]).mean() > 0.9  # type: ignore[operator]
    assert verify_job(summary.output).ok


def test_low_logprob_answers_escalate(tmp_path: Path, ray_local: None) -> None:
    # The simulator gives the cheap model's wrong answers (40% of prompts) low token
    # log-probabilities; `min_logprob` must send exactly those rows up to mid.
    tickets = ticket_frame(0, 60)
    (tmp_path / "in").mkdir()
    tickets.write_parquet(tmp_path / "in" / "a.parquet")
    spec = spec_for(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        providers={
            "sim": {
                "kind": "sim",
                "sim": {"latency_ms": 1, "models": {"gpt-4o-mini": {"accuracy": 0.6}}},
            }
        },
        routing={"policy": "cascade", "default": "cheap", "cascade": {"min_logprob": -0.5}},
    )
    summary = run_job(spec)
    out = Store.open(summary.output)
    results, costs = read_all(out, "results"), read_all(out, "costs")
    joined = results.join(tickets.rename({"ticket_id": "id"}), on="id")
    assert (joined["output"] == joined["expected"]).all()  # every wrong cheap answer caught
    escalated = results.filter(pl.col("tier") == "mid")
    kept = results.filter(pl.col("tier") == "cheap")
    assert escalated.height > 0 and kept.height > 0
    assert set(results["routed_tier"].to_list()) == {"cheap"}
    assert set(results["accepted_reason"].to_list()) == {"valid"}
    # Each escalated row paid for its rejected cheap answer, then its mid one.
    paid = costs.filter(pl.col("id").is_in(escalated["id"].to_list()))
    assert sorted(paid.group_by("tier", "call_status").len().rows()) == [
        ("cheap", "escalated", escalated.height),
        ("mid", "ok", escalated.height),
    ]
    assert verify_job(summary.output).ok


def _recorded_pair(folder: Path, n: int) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Two-file replay data: per prompt, a cheap, mid and flagship answer with verdict and
    cost. Returns the prompts and the (n, 3) correct and cost arrays (cheapest first)."""
    folder.mkdir()
    ids = [f"s{i:03d}" for i in range(n)]
    truth = ["A" if i % 4 else "C" for i in range(n)]
    answers = {
        "small": ["a." if i % 6 == 1 else ("A" if i % 3 else "B") for i in range(n)],
        "medium": ["A" if i % 5 else "(B)" for i in range(n)],
        "large": truth,
    }
    prompts = pl.DataFrame(
        {
            "sample_id": ids,
            "eval_name": ["quiz"] * n,
            "split": ["test"] * n,
            "prompt": [f"Question {i}: which letter?" for i in range(n)],
        }
    )
    correct = np.array(
        [
            [float(normalise(answers[m][i]) == normalise(truth[i])) for m in answers]
            for i in range(n)
        ]
    )
    cost = np.array([[0.001 + i * 1e-5, 0.002 + i * 2e-5, 0.02 + i * 1e-4] for i in range(n)])
    responses = pl.DataFrame(
        {
            "sample_id": ids * 3,
            "model": [m for m in answers for _ in range(n)],
            "response": [a for m in answers for a in answers[m]],
            "correct": correct.T.ravel(),
            "cost_usd": cost.T.ravel(),
        }
    )
    prompts.write_parquet(folder / "prompts.parquet")
    responses.write_parquet(folder / "responses.parquet")
    agree = [
        float(normalise(answers["small"][i]) == normalise(answers["medium"][i])) for i in range(n)
    ]
    return prompts.with_columns(agree=pl.Series(agree)), correct, cost


def test_agreement_cascade_in_the_engine_is_what_the_router_is_trained_for(
    tmp_path: Path, ray_local: None
) -> None:
    # The learned router's cascade option (calibrate.realise) and the engine must agree on
    # every row: which answer is kept, and which calls are billed.
    n = 40
    prompts, correct, cost = _recorded_pair(tmp_path / "recorded", n)
    choice = np.array([(0, 0, 1, 2)[i % 4] for i in range(n)])
    names = np.array(["cheap", "mid", "flagship"])
    (tmp_path / "in").mkdir()
    prompts.select(
        pl.col("sample_id").alias("id"),
        pl.col("prompt").alias("text"),
        pl.Series("tier_hint", names[choice].tolist()),
    ).write_parquet(tmp_path / "in" / "a.parquet")
    spec = spec_for(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        task={"kind": "generate"},
        input={"uri": str(tmp_path / "in"), "id_column": "id", "text_columns": ["text"]},
        providers={"sim": {"kind": "sim", "sim": {"replay": str(tmp_path / "recorded")}}},
        tiers={"cheap": ["sim/small"], "mid": ["sim/medium"], "flagship": ["sim/large"]},
        routing={
            "policy": "rules",
            "rules": [
                {"when": "tier_hint = 'mid'", "tier": "mid"},
                {"when": "tier_hint = 'flagship'", "tier": "flagship"},
            ],
            "default": "cheap",
            "cascade": {"agree": ["sim/small", "sim/medium"]},
        },
        prices={
            m: {
                "input_per_mtok": 1.0,
                "output_per_mtok": 2.0,
                "context_window": 16000,
                "max_output_tokens": 4096,
                "provider_family": "openai",
            }
            for m in ("small", "medium", "large")
        },
    )
    summary = run_job(spec)
    assert summary.status == "complete", summary.units_failed
    out = Store.open(summary.output)
    results, costs = read_all(out, "results"), read_all(out, "costs")
    column = {"small": 0, "medium": 1, "large": 2}
    row = {sid: i for i, sid in enumerate(prompts["sample_id"].to_list())}
    got_correct = np.full(n, np.nan)
    for sid, model in results.select("id", "model").iter_rows():
        got_correct[row[sid]] = correct[row[sid], column[model]]
    got_cost = np.zeros(n)
    for sid, model in costs.select("id", "model").iter_rows():
        got_cost[row[sid]] += cost[row[sid], column[model]]
    outcomes = Outcomes(correct=correct, cost=cost, agree=prompts["agree"].to_numpy())
    want_correct, want_cost, want_flagship = realise(choice, outcomes, correct, cost, cascade=True)
    assert results.height == n
    assert got_correct.tolist() == want_correct.tolist()
    assert got_cost == pytest.approx(want_cost)
    got_flagship = np.zeros(n)
    for sid, tier in results.select("id", "tier").iter_rows():
        got_flagship[row[sid]] = float(tier == "flagship")
    assert got_flagship.tolist() == want_flagship.tolist()
    # The rows that tested agreement: some kept the cheap answer, some went to flagship.
    assert 0 < int(want_flagship[choice == 0].sum()) < int((choice == 0).sum())
    assert verify_job(summary.output).ok
