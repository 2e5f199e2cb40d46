"""A job whose provider is Azure OpenAI (kind azure), against the simulator's Azure
routes: deployment URLs, the api-version query and the api-key header, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.engine.driver import run_job
from pipeline.sim import SimConfig, run_in_thread
from tests.conftest import CANARY_KEYS
from tests.integration.helpers import (
    every_row_once,
    ledger_by_model,
    sim_by_model,
    sim_stats,
    spec_for,
    tiers_on,
    write_shards,
)

pytestmark = pytest.mark.integration
KEY = CANARY_KEYS["TIERLINE_CANARY_GOOD"]


def test_a_job_on_azure_deployments_answers_every_row_once(tmp_path: Path, ray_local: None) -> None:
    # The simulator accepts only this key, in api-key, and knows only these deployments.
    config = SimConfig(
        require_api_key=True,
        api_keys=[KEY],
        azure_deployments={"mini-prod": "gpt-4o-mini", "big-prod": "gpt-4o"},
    )
    url, stop = run_in_thread(config)
    root = url.removesuffix("/v1")
    try:
        data = write_shards(tmp_path / "in", shards=2, rows=60)
        azure = {
            "kind": "azure",
            "base_url": root,
            "api_key_env": "TIERLINE_CANARY_GOOD",
            "limits": {"per_model": True},  # each Azure deployment has its own quota
            "azure": {
                "api_version": "2024-10-21",
                "deployments": {"gpt-4o-mini": "mini-prod", "gpt-4o": "big-prod"},
            },
        }
        spec = spec_for(
            str(tmp_path / "in"),
            str(tmp_path / "out"),
            providers={"azure": azure},
            tiers=tiers_on("azure"),
        )
        summary = run_job(spec)
        stats = sim_stats(root)
    finally:
        stop()
    results, _, costs = every_row_once(summary, data)
    assert set(results["provider"].to_list()) == {"azure"}
    # What the ledger says was bought is what the deployments answered, call for call.
    assert ledger_by_model(costs) == sim_by_model(stats)
    assert set(sim_by_model(stats)) == {"gpt-4o-mini", "gpt-4o"}
    assert stats["total"]["errors"] == {} and stats["total"]["requests"] == summary.calls
    assert KEY not in "".join(
        p.read_text(errors="replace") for p in Path(summary.output).rglob("*.json")
    )
