"""Documents longer than a model's context window still get one summary: map-reduce."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.dryrun.forecast import forecast_job
from pipeline.engine.driver import run_job
from pipeline.engine.verify import verify_job
from pipeline.store import Store
from tests.integration.helpers import read_all, spec_for

pytestmark = pytest.mark.integration

PARAGRAPH = (
    "The incident review covered the outage of the billing service on Tuesday. "
    "Engineers traced the failure to an expired certificate on the payment gateway. "
    "Customers saw failed renewals for forty minutes before the rollback finished. "
    "The team agreed to automate certificate rotation and to add an alert on expiry.\n\n"
)


def test_long_documents_are_chunked_and_every_call_is_attributed(
    tmp_path: Path, ray_local: None
) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    docs = pl.DataFrame(
        {
            "doc_id": ["short-1", "short-2", "long-1"],
            "text": [PARAGRAPH * 3, PARAGRAPH * 5, PARAGRAPH * 700],  # long-1: ~40k tokens
        }
    )
    docs.write_parquet(inp / "docs.parquet")
    spec = spec_for(
        str(inp),
        str(tmp_path / "out"),
        task={"kind": "summarise", "max_words": 40},
        input={"uri": str(inp), "id_column": "doc_id", "text_columns": ["text"]},
        providers={"sim": {"kind": "sim", "sim": {"latency_ms": 1}}},
        # 16k-token windows below flagship: chunking on cheap beats one flagship call.
        tiers={
            "cheap": ["sim/gpt-3.5-turbo"],
            "mid": ["sim/gpt-3.5-turbo-1106"],
            "flagship": ["sim/gpt-4-1106-preview"],
        },
        routing={"policy": "rules", "default": "cheap"},
    )
    fc = forecast_job(spec)
    summary = run_job(spec)
    out = Store.open(summary.output)
    results, costs = read_all(out, "results"), read_all(out, "costs")
    # The dry run planned the long document as the run did: its map and reduce calls
    # are in the forecast, and so its cost is close to what the run paid.
    forecast_calls = sum(b.calls for b in fc.by_model.values())
    assert forecast_calls > 3
    assert abs(forecast_calls - costs.height) <= 1
    assert abs(fc.cost_usd.p50 - summary.cost_usd) / summary.cost_usd < 0.15
    assert sorted(results["id"].to_list()) == ["long-1", "short-1", "short-2"]
    long_costs = costs.filter(pl.col("id") == "long-1")
    steps = long_costs.group_by("step").len()
    assert set(steps["step"].to_list()) == {"map", "reduce"}
    n_map = int(steps.filter(pl.col("step") == "map")["len"][0])
    assert n_map >= 3 and sorted(
        long_costs.filter(pl.col("step") == "map")["chunk"].to_list()
    ) == list(range(n_map))
    # Each map call fits the model's real window: no call was truncated to get through.
    assert long_costs["input_tokens"].max() < 16_385  # type: ignore[operator]
    assert set(costs.filter(pl.col("id") != "long-1")["step"].to_list()) == {"direct"}
    long = results.filter(pl.col("id") == "long-1").row(0, named=True)
    assert long["tier"] == "cheap" and 0 < len(long["output"].split()) <= 48
    assert costs["cost_usd"].sum() == pytest.approx(summary.cost_usd)
    assert verify_job(summary.output).ok


def test_another_job_over_the_same_long_documents_pays_nothing(
    tmp_path: Path, ray_local: None
) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    pl.DataFrame(
        {"doc_id": ["long-1", "short-1"], "text": [PARAGRAPH * 700, PARAGRAPH]}
    ).write_parquet(inp / "docs.parquet")
    common = {
        "task": {"kind": "summarise", "max_words": 40},
        "input": {"uri": str(inp), "id_column": "doc_id", "text_columns": ["text"]},
        "providers": {"sim": {"kind": "sim", "sim": {"latency_ms": 1}}},
        "tiers": {
            "cheap": ["sim/gpt-3.5-turbo"],
            "mid": ["sim/gpt-3.5-turbo-1106"],
            "flagship": ["sim/gpt-4-1106-preview"],
        },
        "routing": {"policy": "rules", "default": "cheap"},
    }
    first = run_job(spec_for(str(inp), str(tmp_path / "out"), **common))
    second = run_job(spec_for(str(inp), str(tmp_path / "out"), name="again", **common))
    assert first.calls > 2 and second.calls == 0 and second.cost_usd == 0.0
    assert second.cache_hits == 2 and second.rows_ok == 2
