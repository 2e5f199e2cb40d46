"""The dry run on a small generated input: no calls, its files, and close to a real run."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline.dryrun.estimates import STARTUP_S
from pipeline.dryrun.forecast import forecast_job
from pipeline.dryrun.plans import tier_plans
from pipeline.dryrun.pool import run_units
from pipeline.dryrun.units import UnitContext
from pipeline.engine.driver import run_job
from pipeline.engine.plan import make_plan
from pipeline.engine.summary import compare_forecast
from pipeline.jobfolder import JobFolder
from pipeline.sim import SimConfig, run_in_thread
from schemas.prices import load_prices
from tests.integration.helpers import spec_for, write_shards

pytestmark = pytest.mark.integration


def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any HTTP session or simulator started in this process fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the forecast must not open an HTTP session or start a simulator")

    monkeypatch.setattr("aiohttp.ClientSession.__init__", refuse)
    monkeypatch.setattr("pipeline.sim.server.SimServer.start", refuse)


def test_forecast_calls_no_provider_and_writes_its_files(
    tmp_path: Path, ray_local: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_shards(tmp_path / "in")
    base_url, stop = run_in_thread(SimConfig())
    try:
        spec = spec_for(
            str(tmp_path / "in"),
            str(tmp_path / "out"),
            providers={
                "sim": {"kind": "sim"},
                "openai": {"kind": "openai", "base_url": base_url, "limits": {"rpm": 60}},
            },
            tiers={
                "cheap": ["sim/gpt-4o-mini"],
                "mid": ["sim/claude-3-5-haiku"],
                "flagship": ["openai/gpt-4o"],
            },
        )
        with monkeypatch.context() as m:
            _no_network(m)
            fc = forecast_job(spec)
        root = base_url.removesuffix("/v1")
        with urllib.request.urlopen(f"{root}/stats", timeout=5) as resp:
            stats = json.load(resp)
    finally:
        stop()
    assert stats["total"]["requests"] == 0

    job = tmp_path / "out" / fc.job_id
    on_disk = json.loads((job / "forecast.json").read_text())
    assert on_disk["cost_usd"] == fc.cost_usd.model_dump()
    units = sorted((job / "forecast").glob("unit-*.parquet"))
    assert len(units) == fc.units_total == len(make_plan(spec).units)
    rows = pl.concat([pl.read_parquet(u) for u in units])
    assert rows.columns == [
        "id",
        "tier",
        "provider",
        "model",
        "input_tokens",
        "est_output_tokens",
        "est_cost_usd",
        "calls",
        "reuse",
    ]
    blank = data.filter(
        pl.concat_str([pl.col("subject").fill_null(""), pl.col("body").fill_null("")])
        .str.strip_chars()
        .eq("")
    )
    assert rows.height == fc.rows_callable == data.height - blank.height
    assert fc.rows_early_error == {"empty_text": blank.height}
    assert rows["est_cost_usd"].sum() == pytest.approx(fc.cost_usd.p50)
    flagship = rows.filter(pl.col("tier") == "flagship")
    high = data.filter(pl.col("priority") == "high").join(blank, on="ticket_id", how="anti")
    assert set(flagship["provider"]) == {"openai"} and flagship.height == high.height > 20
    # One call a second (rpm 60) to openai sets the pace; startup comes on top.
    assert fc.binding_limit == "openai rpm=60"
    assert fc.duration_s.p50 == pytest.approx(high.height + STARTUP_S)
    assert fc.rows_total == fc.rows_todo == data.height


def test_forecast_is_close_to_the_real_run_and_learns_from_it(
    tmp_path: Path, ray_local: None
) -> None:
    write_shards(tmp_path / "in", shards=2, rows=150)
    spec = spec_for(str(tmp_path / "in"), str(tmp_path / "out"))
    before = forecast_job(spec)
    summary = run_job(spec)
    assert summary.job_id == before.job_id

    fc_json = JobFolder.open(str(tmp_path / "out"), summary.job_id).read_forecast()
    assert fc_json is not None
    got = compare_forecast(fc_json, summary)
    assert got["actual_cost_usd"] == pytest.approx(summary.cost_usd)
    assert got["cost_error_pct"] is not None and abs(got["cost_error_pct"]) < 5.0
    assert fc_json["cost_usd"]["p10"] <= fc_json["cost_usd"]["p50"] <= fc_json["cost_usd"]["p90"]

    # Forecast again: every answer is in the response cache now, so running the input
    # again would cost (almost) nothing, and nothing is left to do.
    again = forecast_job(spec)
    assert again.rows_reused.get("cached", 0) > 0.9 * again.rows_callable
    assert again.cost_usd.p50 < 0.05 * summary.cost_usd
    assert again.rows_todo == 0 and again.cost_todo_usd.p50 == 0.0

    # Without the cache, the run's answers are history: their lengths are used.
    uncached = spec.model_copy(update={"cache": "off"})
    after = forecast_job(uncached)
    assert after.history_jobs == [summary.job_id] and not after.rows_reused.get("cached")
    assert any(m.startswith("earlier runs:") for m in after.method)
    err = (after.cost_usd.p50 - summary.cost_usd) / summary.cost_usd * 100
    assert abs(err) < 5.0


def test_worker_processes_count_the_same_as_one_process(tmp_path: Path) -> None:
    write_shards(tmp_path / "in", shards=2, rows=200)
    spec = spec_for(str(tmp_path / "in"), str(tmp_path / "out"))
    prices = load_prices()
    plan = make_plan(spec)
    ctx = UnitContext(spec, prices, tier_plans(spec, prices))

    def sums(backend: Any) -> list[tuple[Any, ...]]:
        results = run_units(ctx, plan.units, backend=backend, workers=2, task_rows=100)
        return sorted((r.unit, r.rows_callable, *sorted(r.groups)) for r in results)

    assert sums("process") == sums("inline")


def test_run_after_forecast_sets_forecast_against_actual_in_its_summary(
    tmp_path: Path, ray_local: None
) -> None:
    from tests.integration.helpers import spec_for, write_shards

    write_shards(tmp_path / "in", shards=2, rows=60)
    spec = spec_for(str(tmp_path / "in"), str(tmp_path / "out"))
    fc = forecast_job(spec)
    summary = run_job(spec)
    assert summary.job_id == fc.job_id
    f = summary.forecast_vs_actual
    assert f is not None and f["actual_cost_usd"] == pytest.approx(summary.cost_usd)
    assert abs(f["cost_error_pct"]) < 5  # type: ignore[arg-type]
    on_disk = json.loads((tmp_path / "out" / summary.job_id / "summary.json").read_text())
    assert on_disk["forecast_vs_actual"]["forecast_cost_usd"] == pytest.approx(fc.cost_usd.p50)
