"""The budget actors: one per job (its hard cap), one per provider (a daily cap shared by
every job on the cluster), and the lease source that lets a worker's `BudgetClient`
talk to them.

    actor = start_budget(job_id, cap_usd=spec.budget_usd, already_spent_usd=spent)  # driver
    client = job_budget_client(job_id, client_id="worker-3")                         # worker
    daily = daily_budget_client("openai", cap_usd=200.0, client_id="worker-3")

The job's actor is named `tierline-budget-<job_id>` in namespace `tierline` and lives as
long as the driver that started it; a rerun starts it again from what the committed cost
rows say was spent (`spent_in_commits`). The daily actors are detached, so several jobs
(and drivers) share them; they start again at each UTC midnight.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from pipeline.limits.budget import BudgetClient, DailyLeaseBook, LeaseBook
from pipeline.limits.placement import configured, near_driver
from schemas.records import UnitCommit

NAMESPACE = "tierline"


def job_actor_name(job_id: str) -> str:
    return f"tierline-budget-{job_id}"


def daily_actor_name(provider: str) -> str:
    return f"tierline-daily-{provider}"


class JobBudget:
    """The lease book of one job's budget (see `pipeline.limits.budget.LeaseBook`); the body
    of `BudgetActor`."""

    def __init__(self, cap_usd: float, already_spent_usd: float = 0.0) -> None:
        self.book = self._new_book(cap_usd, already_spent_usd)

    def _new_book(self, cap_usd: float, already_spent_usd: float) -> LeaseBook:
        return LeaseBook(cap_usd, already_spent_usd)

    def configure(self, cap_usd: float, already_spent_usd: float = 0.0) -> dict[str, Any]:
        self.book.configure(cap_usd, already_spent_usd)
        return self.status()

    def lease(
        self,
        max_usd: float,
        min_usd: float = 0.0,
        *,
        client: str = "",
        returned_usd: float = 0.0,
        spent_usd: float = 0.0,
    ) -> float:
        """Up to `max_usd` of budget for `client` (0 when not even `min_usd` fits),
        after settling what it reports (`returned_usd` of its lease, `spent_usd` spent)."""
        return self.book.lease(client, max_usd, min_usd, returned_usd, spent_usd)

    def settle(self, leased: float, spent: float, *, client: str = "") -> None:
        self.book.settle(client, leased, spent)

    def forget(self, client: str) -> None:
        """A worker died holding a lease: count all of it as spent."""
        self.book.forget(client)

    def status(self) -> dict[str, Any]:
        return asdict(self.book.status())


class DailyBudget(JobBudget):
    """One provider's spend per UTC day, shared by every job on the cluster; the body of
    `DailyBudgetActor`. The day's spend lives in the actor: if the cluster restarts,
    the day's count starts again."""

    def __init__(self, cap_usd: float, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        super().__init__(cap_usd)

    def _new_book(self, cap_usd: float, already_spent_usd: float) -> LeaseBook:
        return DailyLeaseBook(cap_usd, self.clock)

    def configure(self, cap_usd: float, already_spent_usd: float = 0.0) -> dict[str, Any]:
        # The latest job's cap wins; spend is the cluster's own record for the day.
        self.book.ledger.cap = float(cap_usd)
        return self.status()


BudgetActor = ray.remote(num_cpus=0, max_restarts=0)(JobBudget)
DailyBudgetActor = ray.remote(num_cpus=0, max_restarts=0)(DailyBudget)


def start_budget(
    job_id: str, cap_usd: float, already_spent_usd: float, pending: list[Any] | None = None
) -> Any:
    """Start (or find) the job's budget actor and set its cap and the spend so far (with
    `pending`, the call that sets them is left there to be waited on)."""
    # On the driver's node: the job's ledger must not vanish with a worker node.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    actor: Any = BudgetActor.options(
        name=job_actor_name(job_id),
        namespace=NAMESPACE,
        get_if_exists=True,
        scheduling_strategy=here,
    ).remote(cap_usd, already_spent_usd)
    configured(actor.configure.remote(cap_usd, already_spent_usd), pending)
    return actor


def start_daily_budget(
    provider: str,
    cap_usd: float,
    clock: Callable[[], float] = time.time,
    pending: list[Any] | None = None,
) -> Any:
    """Start (or find) the provider's detached daily budget actor; the cap is updated."""
    actor: Any = DailyBudgetActor.options(
        name=daily_actor_name(provider),
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        **near_driver(),  # the day's spend lives in it: not on a node that may go
    ).remote(cap_usd, clock)
    configured(actor.configure.remote(cap_usd), pending)
    return actor


def spent_in_commits(commits: Iterable[UnitCommit]) -> float:
    """What the committed units of a job cost: the `already_spent_usd` of a rerun."""
    return sum(c.cost_usd for c in commits)


class ActorSource:
    """A `LeaseSource` over a budget actor handle (awaited from the worker's loop)."""

    def __init__(self, actor: Any, client: str) -> None:
        self.actor, self.client = actor, client

    async def lease(
        self, max_usd: float, min_usd: float, returned_usd: float, spent_usd: float
    ) -> float:
        granted: float = await self.actor.lease.remote(
            max_usd, min_usd, client=self.client, returned_usd=returned_usd, spent_usd=spent_usd
        )
        return granted

    async def settle(self, leased: float, spent: float) -> None:
        await self.actor.settle.remote(leased, spent, client=self.client)


def job_budget_client(job_id: str, client_id: str, **options: Any) -> BudgetClient:
    """A worker's client of the job's budget actor (started by the driver)."""
    actor = ray.get_actor(job_actor_name(job_id), namespace=NAMESPACE)
    return BudgetClient(ActorSource(actor, client_id), **options)


def daily_budget_client(
    provider: str, cap_usd: float, client_id: str, **options: Any
) -> BudgetClient:
    """A worker's client of the provider's daily budget (started here if absent)."""
    return BudgetClient(ActorSource(start_daily_budget(provider, cap_usd), client_id), **options)
