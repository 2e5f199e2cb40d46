"""The budget actors on a local Ray: clients in two workers share one job cap."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import pytest
import ray

from pipeline.limits.budget import BudgetClient
from pipeline.limits.budget_actor import (
    ActorSource,
    job_budget_client,
    start_budget,
    start_daily_budget,
)

pytestmark = pytest.mark.integration


@ray.remote(num_cpus=0)
class Worker:
    """A worker process spending from the job budget through its own client."""

    async def spend(self, job_id: str, name: str, calls: int, seed: int) -> dict[str, Any]:
        client = job_budget_client(job_id, name)
        rng = random.Random(seed)
        spent, refused = 0.0, 0

        async def call() -> None:
            nonlocal spent, refused
            worst = rng.uniform(0.001, 0.01)
            r = await client.reserve(worst)
            if r is None:
                refused += 1
                return
            await asyncio.sleep(rng.uniform(0, 0.002))
            actual = worst * rng.random()
            client.settle(r, actual)
            spent += actual

        await asyncio.gather(*(call() for _ in range(calls)))
        await client.close()
        return {"spent": spent, "refused": refused, "leases": client.leases}


def test_two_workers_on_one_actor_never_exceed_the_cap(ray_local: None) -> None:
    job_id = f"budget-{uuid.uuid4().hex[:8]}"
    actor = start_budget(job_id, cap_usd=1.0, already_spent_usd=0.2)
    workers = [Worker.remote() for _ in range(2)]  # type: ignore[attr-defined]
    results = ray.get([w.spend.remote(job_id, f"w{i}", 400, i) for i, w in enumerate(workers)])

    status = ray.get(actor.status.remote())
    spent = sum(r["spent"] for r in results)
    assert all(r["refused"] > 0 for r in results), "the cap should bind for both workers"
    assert status["spent_usd"] == pytest.approx(0.2 + spent)
    assert status["spent_usd"] <= 1.0 + 1e-9
    assert status["spent_usd"] > 0.9  # the last dollars were used, not stranded in a lease
    assert status["reserved_usd"] == pytest.approx(0.0, abs=1e-9) and status["clients"] == 0
    # Leased in chunks: far fewer actor calls than reservations.
    assert sum(r["leases"] for r in results) < 200

    # A rerun with a bigger budget starts from what was spent.
    again = start_budget(job_id, cap_usd=2.0, already_spent_usd=0.5)
    status = ray.get(again.status.remote())
    assert status["cap_usd"] == 2.0 and status["spent_usd"] == pytest.approx(0.2 + spent)
    for w in workers:
        ray.kill(w)
    ray.kill(actor)


def test_daily_budget_is_shared_by_name(ray_local: None) -> None:
    provider = f"prov-{uuid.uuid4().hex[:8]}"
    first = start_daily_budget(provider, cap_usd=0.05)
    second = start_daily_budget(provider, cap_usd=0.05)  # another job finds the same actor

    async def spend(actor: Any, name: str) -> int:
        client = BudgetClient(ActorSource(actor, name), chunk_calls=5)
        granted = 0
        for _ in range(40):
            r = await client.reserve(0.002)
            if r is None:
                break
            client.settle(r, 0.002)
            granted += 1
        await client.close()
        return granted

    async def main() -> list[int]:
        return list(await asyncio.gather(spend(first, "a"), spend(second, "b")))

    granted = asyncio.run(main())
    status = ray.get(first.status.remote())
    assert sum(granted) == 25 and status["spent_usd"] == pytest.approx(0.05)
    ray.kill(first)
