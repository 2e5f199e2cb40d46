"""One job, four places its figures show (summary.json, the run's table, the report, the
metrics), and they agree with each other and with the files: a call is a paid call,
reused answers are counted apart, forecast errors are (actual - forecast) / forecast."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from rich.console import Console

from pipeline.cli.console import print_summary
from pipeline.cli.report import print_report_table
from pipeline.dryrun.forecast import forecast_job
from pipeline.engine.driver import run_job
from pipeline.engine.figures import forecast_error_pct
from pipeline.engine.verify import verify_job
from pipeline.metrics import metric_samples
from pipeline.report.data import build_report, fmt_delta
from pipeline.store import Store
from schemas.records import UnitCommit
from tests.integration.helpers import read_all, spec_for, ticket_frame

pytestmark = pytest.mark.integration
FREE = ["cached", "duplicate"]


def _table_rows(text: str) -> dict[str, list[str]]:
    """'tier cheap' -> its cells, from a rendered rich table."""
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if cells and cells[0]:
            out[cells[0]] = cells[1:]
    return out


def _n(cell: str) -> int:
    return int(cell.replace(",", ""))


def _spec(inp: Path, out: Path, name: str) -> Any:
    # The cheap model fails a third of its calls with 503: retried, and a row whose
    # attempts run out there escalates to mid (rules routing keeps answers reusable).
    return spec_for(
        str(inp),
        str(out),
        name=name,
        providers={
            "sim": {
                "kind": "sim",
                "sim": {
                    "latency_ms": 1,
                    "models": {"gpt-4o-mini": {"faults": {"error_rates": {503: 0.35}}}},
                },
            }
        },
        run={"workers": 2, "max_in_flight": 16, "max_attempts": 3},
    )


def test_summary_run_table_report_and_metrics_agree(tmp_path: Path, ray_local: None) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    df = ticket_frame(0, 150)
    # Six rows repeat the text of another row of their unit (50 rows): sent once.
    copies = df.slice(100, 6).with_columns(pl.format("DUP-{}", "ticket_id").alias("ticket_id"))
    parts = [df.slice(0, 106), copies, df.slice(106, 44)]
    pl.concat(parts).write_parquet(inp / "a.parquet")
    # An earlier job over some of the same texts fills the response cache (cache hits).
    (tmp_path / "warm").mkdir()
    df.head(40).write_parquet(tmp_path / "warm" / "a.parquet")
    run_job(_spec(tmp_path / "warm", out, "warm"))

    spec = _spec(inp, out, "figures")
    forecast = forecast_job(spec)
    s = run_job(spec)
    assert s.status == "complete" and verify_job(s.output).ok

    # --- the ground truth: the files --------------------------------------------------
    store = Store.open(s.output)
    results, costs, errors = (read_all(store, k) for k in ("results", "costs", "errors"))
    paid = costs.filter(~pl.col("call_status").is_in(FREE))
    reused = (
        costs.group_by("id")
        .agg(paid=(~pl.col("call_status").is_in(FREE)).sum(), how=pl.col("call_status").first())
        .filter(pl.col("paid") == 0)
    )
    cached = reused.filter(pl.col("how") == "cached").height
    dups = reused.filter(pl.col("how") == "duplicate").height
    # The job has every kind of row this is about.
    assert cached > 0 and dups > 0
    assert int(results["retries"].sum()) > 0
    assert results.filter(pl.col("tier") != pl.col("routed_tier")).height > 0
    assert errors.filter(pl.col("tier").is_null()).height > 0  # empty text: reached no tier

    # --- summary.json -------------------------------------------------------------------
    doc = json.loads((Path(s.output) / "summary.json").read_text())
    assert doc["calls"] == s.calls == paid.height
    assert (doc["cache_hits"], doc["duplicates"]) == (cached, dups)
    assert doc["rows_reused"] == cached + dups
    assert sum(t["calls"] for t in doc["by_tier"].values()) == paid.height
    assert sum(t["calls"] for t in doc["by_model"].values()) == paid.height
    assert sum(t["reused"] for t in doc["by_tier"].values()) == cached + dups
    assert sum(t["rows"] for t in doc["by_tier"].values()) == results.height + errors.height
    assert doc["cost_usd"] == pytest.approx(float(costs["cost_usd"].sum()))
    assert float(results["cost_usd"].sum()) == pytest.approx(
        float(costs.filter(pl.col("id").is_in(results["id"].implode()))["cost_usd"].sum())
    )
    tier_calls = {t: b["calls"] for t, b in doc["by_tier"].items() if b["calls"]}
    assert tier_calls == dict(paid.group_by("tier").len().iter_rows())

    # --- the run's table ------------------------------------------------------------------
    console = Console(record=True, width=200)
    print_summary(s, console)
    run_text = console.export_text()
    run_rows = _table_rows(run_text)
    for tier, b in doc["by_tier"].items():
        rows, reused_n, calls, _ = run_rows[f"tier {tier}"]
        assert (_n(rows), _n(reused_n), _n(calls)) == (b["rows"], b["reused"], b["calls"])
    total = run_rows["total"]
    assert (_n(total[1]), _n(total[2])) == (cached + dups, paid.height)
    assert sum(_n(v[2]) for k, v in run_rows.items() if k.startswith("tier ")) == paid.height

    # --- the report -----------------------------------------------------------------------
    data = build_report(s.output)
    assert data.calls == paid.height and (data.cache_hits, data.duplicates) == (cached, dups)
    assert {x.key: (x.rows, x.reused, x.calls) for x in data.by_tier} == {
        t: (b["rows"], b["reused"], b["calls"]) for t, b in doc["by_tier"].items()
    }
    assert {x.key: x.calls for x in data.by_model} == {
        m: b["calls"] for m, b in doc["by_model"].items()
    }
    assert data.cost_usd == pytest.approx(doc["cost_usd"])
    assert data.rows_escalated == round(doc["escalation_rate"] * (s.rows_ok + s.rows_error))
    console = Console(record=True, width=200)
    print_report_table(data, console)
    report_text = console.export_text()
    report_rows = _table_rows(report_text)
    for tier, b in doc["by_tier"].items():
        rows, reused_n, calls, *_ = report_rows[f"tier {tier}"]
        assert (_n(rows), _n(reused_n), _n(calls)) == (b["rows"], b["reused"], b["calls"])

    # --- the forecast: one sign convention ------------------------------------------------
    fva = doc["forecast_vs_actual"]
    assert fva["forecast_cost_usd"] == pytest.approx(forecast.cost_usd.p50)
    want = (s.cost_usd - fva["forecast_cost_usd"]) / fva["forecast_cost_usd"] * 100
    assert fva["cost_error_pct"] == pytest.approx(want)
    assert fva["duration_error_pct"] == pytest.approx(
        forecast_error_pct(fva["forecast_duration_s"], s.wall_s)
    )
    assert data.forecast is not None
    shown = fmt_delta(data.forecast.actual_cost, data.forecast.cost_p50)
    assert shown == f"{fva['cost_error_pct']:+.1f}%"
    assert f"({shown})" in run_text and f"({shown})" in report_text

    # --- the metrics: what the workers exported, from the same markers --------------------
    markers = [UnitCommit.model_validate_json(p.read_text())
               for p in sorted((Path(s.output) / "_commits").glob("*.json"))]  # fmt: skip
    sums: dict[tuple[str, str], float] = {}
    for m in markers:
        assert m.figures is not None
        for (name, tags), value in metric_samples(s.job_id, m.figures).items():
            key = (name, dict(tags).get("tier", ""))
            sums[key] = sums.get(key, 0.0) + value
    for tier, b in doc["by_tier"].items():
        assert sums.get(("rows", tier), 0) == b["rows"]
        assert sums.get(("calls", tier), 0) == b["calls"]
        assert sums.get(("reused", tier), 0) == b["reused"]
    spend = sum(v for (name, _), v in sums.items() if name == "spend")
    assert spend == pytest.approx(doc["cost_usd"])

    # --- a folder written before markers carried figures reads the same ------------------
    old = tmp_path / "old" / Path(s.output).name
    shutil.copytree(s.output, old)
    for p in (old / "_commits").glob("*.json"):
        marker = json.loads(p.read_text())
        marker.pop("figures")
        p.write_text(json.dumps(marker))
    again = build_report(str(old))
    assert (again.calls, again.cache_hits, again.duplicates) == (data.calls, cached, dups)
    assert again.by_tier == data.by_tier and again.by_model == data.by_model
    assert again.latency == data.latency and again.errors == data.errors
