"""The Ray actors a job starts: one per worker (a `UnitRunner`), one per simulator.

    worker = WorkerActor.options(num_cpus=0.5).remote(spec_json, job_id, output_uri, ...)
    report = ray.get(worker.process.remote(unit, previous))
    worker.stop.remote(grace_s=20.0)          # a stop: no new rows, calls in flight finish
    url = ray.get(SimActor.remote().start.remote(config_json))

Workers are never restarted by Ray: the driver replaces a dead one and hands its units
out again (a unit is redone whole; its marker comes last).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import ray

from pipeline.drift.canary import CanaryAnswer, CanaryTarget
from pipeline.engine.canary import GoldenRow, ask_canary
from pipeline.engine.plan import Unit
from pipeline.engine.worker import UnitReport, UnitRunner
from pipeline.ownpackages import ensure_own_packages
from schemas.job import JobSpec
from schemas.records import UnitCommit

GUARD_TIMEOUT_S = 10.0  # a busy actor answers in milliseconds; silence this long is loss


@ray.remote(num_cpus=0)
class SimActor:
    """The built-in simulator, hosted in its own process for the length of a job."""

    def __init__(self) -> None:
        self.server: Any = None

    async def start(self, config_json: str) -> str:
        from pipeline.sim import SimConfig, SimServer

        self.server = SimServer(SimConfig.model_validate_json(config_json))
        # The address Ray knows this node by: loopback for the private local Ray, the
        # node's own address on a cluster, so workers on every node can reach it.
        url: str = await self.server.start(ray.util.get_node_ip_address(), 0)
        return url

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()


@ray.remote(max_restarts=0, max_task_retries=0)
class WorkerActor:
    """A Ray home for one `UnitRunner` (one aiohttp session, many calls in flight)."""

    def __init__(
        self,
        spec_json: str,
        job_id: str,
        output_uri: str,
        endpoints: dict[str, str],
        quota_actors: dict[str, str],
        deadline_at: float | None = None,
        batch_turnaround_s: float | None = None,
        guards: dict[str, Any] | None = None,
    ) -> None:
        # A worker's sys.path starts with the job's working directory: say so plainly
        # when a folder there is named like one of our packages.
        ensure_own_packages()
        client_id = f"{job_id}-{uuid.uuid4().hex[:8]}"
        self.runner = UnitRunner(
            JobSpec.model_validate_json(spec_json),
            job_id,
            output_uri,
            endpoints,
            quota_actors=quota_actors,
            client_id=client_id,
            budget_actors=True,
            deadline_at=deadline_at,
            batch_turnaround_s=batch_turnaround_s,
            before_commit=self._guards_alive if guards else None,
        )
        self.guards = dict(guards or {})
        self.entered = False
        self.entering: asyncio.Lock | None = None

    async def process(self, unit: Unit, previous: UnitCommit | None) -> UnitReport:
        # Units arrive concurrently (UNITS_PER_WORKER): the session is opened once.
        self.entering = self.entering or asyncio.Lock()
        async with self.entering:
            if not self.entered:
                await self.runner.__aenter__()
                self.entered = True
        return await self.runner.process(unit, previous)

    async def _guards_alive(self) -> None:
        """Raises (`RayActorError`) when an actor the unit needed is gone: its rows may
        have failed for that reason alone (calls to a dead simulator), and must be redone
        by the next run instead of being committed as error rows."""
        refs = [actor.__ray_ready__.remote() for actor in self.guards.values()]
        # Not `asyncio.wait_for`, which on Python 3.11 can drop a cancel of the unit.
        async with asyncio.timeout(GUARD_TIMEOUT_S):
            await asyncio.gather(*refs)

    async def stop(self, grace_s: float) -> None:
        """The run is stopping: start no more rows; calls in flight get `grace_s`."""
        self.runner.stop(grace_s)

    async def canary(
        self, rows: list[GoldenRow], targets: list[CanaryTarget]
    ) -> tuple[list[CanaryAnswer], Any]:
        """The golden set asked of each deployment (before any unit is handed out)."""
        self.entering = self.entering or asyncio.Lock()
        async with self.entering:
            if not self.entered:
                await self.runner.__aenter__()
                self.entered = True
        return await ask_canary(self.runner, rows, targets)

    async def stats(self) -> dict[str, Any]:
        """Live figures for the driver's progress display (runs beside `process`)."""
        snap = self.runner.metrics.snapshot()
        snap["batch_waiting"] = sum(b.waiting for b in self.runner.batching.values())
        return snap

    async def close(self) -> None:
        if self.entered:
            await self.runner.__aexit__(None, None, None)
