"""Faults of a tier pool: two providers serving the flagship model, each its own simulator
(its own quota, its own faults). After every fault `tierline verify` must pass."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import polars as pl
import pytest

from pipeline.engine.driver import run_job
from pipeline.engine.summary import JobSummary
from pipeline.report.data import build_report
from pipeline.sim import SimConfig
from tests.faults.test_fault_matrix import Sim, assert_verified, run_while_refusing
from tests.integration.helpers import spec_for, write_shards

pytestmark = pytest.mark.faults


class PoolSim(Sim):
    def __init__(self, config: dict[str, Any]) -> None:
        from pipeline.sim import run_in_thread

        base = {"latency": {"mean_ms": 20, "jitter_ms": 5}}
        self.url, self._stop = run_in_thread(SimConfig.model_validate({**base, **config}))
        self.root = self.url.removesuffix("/v1")


@pytest.fixture
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[PoolSim, PoolSim]]:
    configs: tuple[dict[str, Any], dict[str, Any]] = getattr(request, "param", ({}, {}))
    sims = (PoolSim(configs[0]), PoolSim(configs[1]))
    yield sims
    for s in sims:
        s._stop()


def drain(sim: PoolSim, requests: int) -> None:
    """Spend a fresh key's first minute at once, as the simulator allows (like a provider),
    so the job meets the steady limit instead of hiding behind that burst."""

    async def go() -> None:
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
        async with aiohttp.ClientSession() as session:
            for _ in range(requests):
                async with session.post(sim.url + "/chat/completions", json=body) as r:
                    await r.read()

    asyncio.run(go())


def pool_spec(
    tmp: Path, a: PoolSim, b: PoolSim, rows: int, run: dict[str, Any] | None = None, **provider: Any
) -> Any:
    write_shards(tmp / "in", shards=2, rows=rows // 2, row_group=rows // 4)
    return spec_for(
        str(tmp / "in"),
        str(tmp / "out"),
        providers={
            "a": {"kind": "openai", "base_url": a.url, **provider},
            "b": {"kind": "openai", "base_url": b.url, **provider},
        },
        tiers={"flagship": ["a/gpt-4o", "b/gpt-4o"]},
        pools={"flagship": {"strategy": "spread"}},
        routing={"policy": "rules", "default": "flagship"},
        budget_usd=50.0,
        run={
            "workers": 2,
            "max_in_flight": 16,
            "max_attempts": 6,
            "row_deadline_s": 120,
            **(run or {}),
        },
    )


def answered_by(summary: JobSummary) -> dict[str, int]:
    results = pl.read_parquet(Path(summary.output) / "results" / "*.parquet")
    return dict(results.group_by("provider").len().iter_rows())


def test_one_deployment_answering_429_for_10_s_loses_its_share(
    tmp_path: Path, ray_local: None, pair: tuple[PoolSim, PoolSim]
) -> None:
    a, b = pair
    # 600 rpm each: 400 rows take about 20 s on both, so the 10 s outage is mid-job.
    spec = pool_spec(tmp_path, a, b, rows=400, limits={"rpm": 600})
    # The refusals start once the job is busy (20 requests in), whatever its start-up took.
    summary = run_while_refusing(a, 10.0, lambda: run_job(spec), once_requests=20)
    assert summary.status == "complete"
    assert set(summary.errors_by_type) <= {"empty_text"}  # only the rows with no text
    by = answered_by(summary)
    assert by["b"] > by.get("a", 0)  # a lost its share while it refused everything
    assert a.stats()["total"]["rate_limited"] > 0
    # The report shows it: each deployment's share of the pool's rows and its 429s.
    pools = {p.deployment: p for p in build_report(summary.output).pools}
    assert pools["a/gpt-4o"].share < pools["b/gpt-4o"].share
    assert pools["a/gpt-4o"].rate_limited > 0 and pools["b/gpt-4o"].rate_limited == 0
    assert_verified(summary.output)


@pytest.mark.parametrize(
    "pair", [({"faults": {"hang_rate": 1.0, "max_hang_s": 60}}, {})], indirect=True
)
def test_one_deployment_hanging_every_request_hedges_finish_the_rows(
    tmp_path: Path, ray_local: None, pair: tuple[PoolSim, PoolSim]
) -> None:
    a, b = pair
    hedge = {"hedge": {"after": 100, "max_extra_pct": 100}}
    # 600 rpm each: 400 rows take about 40 s on b alone.
    spec = pool_spec(
        tmp_path, a, b, rows=400, run=hedge, limits={"rpm": 600}, timeouts={"total_s": 5}
    )
    summary = run_job(spec)
    assert summary.status == "complete"
    assert set(summary.errors_by_type) <= {"empty_text"}
    assert answered_by(summary) == {"b": summary.rows_ok}  # nothing came back from a
    assert summary.hedges_won > 0  # rows stuck on a were answered by their hedge on b
    # Its breaker opened: a held a few dozen requests (its first 5 s, then probes), not
    # the half of the rows a healthy deployment of the pool would get.
    assert 0 < a.stats()["total"]["hangs"] < 0.25 * summary.rows_ok
    assert_verified(summary.output)


@pytest.mark.parametrize(
    "pair",
    [({"default_limits": {"rpm": 240}}, {"default_limits": {"rpm": 240}})],
    indirect=True,
)
def test_both_deployments_saturated_rows_wait_without_a_429_storm(
    tmp_path: Path, ray_local: None, pair: tuple[PoolSim, PoolSim]
) -> None:
    a, b = pair
    for s in pair:
        drain(s, 236)
    drained = sum(s.stats()["total"]["requests"] for s in pair)
    # The spec claims twice what the providers allow (480 rpm against 240): rows wait for
    # the quota, 429s halve the rate the quota actors hand out, and nothing hammers.
    spec = pool_spec(tmp_path, a, b, rows=200, limits={"rpm": 480})
    summary = run_job(spec)
    assert summary.status == "complete"
    by = answered_by(summary)
    assert by.get("a", 0) > 50 and by.get("b", 0) > 50  # both quotas used
    limited = sum(s.stats()["total"]["rate_limited"] for s in (a, b))
    requests = sum(s.stats()["total"]["requests"] for s in (a, b)) - drained
    assert limited <= 0.1 * requests, (limited, requests)
    assert_verified(summary.output)
