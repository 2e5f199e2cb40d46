"""A job through LiteLLM's proxy, an OpenAI-compatible gateway written elsewhere, in front
of the simulator: tierline speaks to it as `kind: openai`, and what tierline's ledger says
was bought is what the upstream answered. LiteLLM runs from its own venv (`make gateway`)
and never in tierline's."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.engine.driver import run_job
from pipeline.sim import SimConfig, run_in_thread
from tests.conftest import CANARY_KEYS
from tests.integration.gateway import LITELLM, LiteLLMProxy
from tests.integration.helpers import (
    every_row_once,
    ledger_by_model,
    sim_by_model,
    sim_stats,
    spec_for,
    tiers_on,
    write_shards,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not LITELLM.exists(),
        reason=f"LiteLLM's proxy is not installed ({LITELLM} is missing; `make gateway` "
        "builds .venv-gateway)",
    ),
]
GATEWAY_KEY_ENV = "TIERLINE_CANARY_GOOD"  # tierline's key for the gateway, its master key
UPSTREAM_KEY = "sim-upstream-key-0123"  # the gateway's key for the simulator, never tierline's


def test_a_job_through_litellms_proxy_is_paid_once_per_answer(
    tmp_path: Path, ray_local: None
) -> None:
    # The upstream takes only the gateway's key, and fails a tenth of the cheap model's
    # calls with 503, which the gateway passes on and tierline retries.
    config = SimConfig(
        require_api_key=True,
        api_keys=[UPSTREAM_KEY],
        latency={"mean_ms": 2, "jitter_ms": 1},
        models={"gpt-4o-mini": {"faults": {"error_rates": {503: 0.1}}}},
    )
    url, stop = run_in_thread(config)
    try:
        with LiteLLMProxy(
            upstream=url,
            upstream_key=UPSTREAM_KEY,
            models=["gpt-4o-mini", "gpt-4o"],
            master_key=CANARY_KEYS[GATEWAY_KEY_ENV],
            folder=tmp_path,
        ) as proxy:
            data = write_shards(tmp_path / "in", shards=2, rows=50)
            gateway = {"kind": "openai", "base_url": proxy.base_url, "api_key_env": GATEWAY_KEY_ENV}
            spec = spec_for(
                str(tmp_path / "in"),
                str(tmp_path / "out"),
                providers={"gateway": gateway},
                tiers=tiers_on("gateway"),
                run={"workers": 2, "max_in_flight": 16, "max_attempts": 5},
            )
            summary = run_job(spec)
        stats = sim_stats(url)
    finally:
        stop()
    assert summary.status == "complete", proxy.tail()
    results, _, costs = every_row_once(summary, data)
    # The ledger against the upstream's own counts: calls and tokens, model by model.
    assert ledger_by_model(costs) == sim_by_model(stats)
    assert summary.calls == stats["total"]["ok"]
    # The 503s went through the gateway and were retried, never billed.
    assert stats["total"]["errors"].get("503", 0) > 0
    assert stats["total"]["requests"] == stats["total"]["ok"] + stats["total"]["errors"]["503"]
    assert int(results["retries"].sum()) == stats["total"]["errors"]["503"]
