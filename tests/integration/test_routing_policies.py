"""Routing policies end to end on the simulator: sensitive rows and a cascade."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline.driver import run_job
from pipeline.sim import SimConfig, run_in_thread
from pipeline.store import Store
from pipeline.verify import verify_job
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
