"""Per-process admission: a concurrency bound per provider.

    limiter = LocalLimiter({"openai": Limits(max_concurrency=8)})
    async with limiter.slot(dep, tokens=120):
        ...

This is the floor every worker has; cluster-wide request and token rates are enforced by
the quota actors, which hand this limiter leased permits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from pipeline.errors import TierlineError
from pipeline.limits.headroom import UNLIMITED, Headroom
from pipeline.providers.base import ChatResponse
from schemas.job import Deployment, Limits


class LocalLimiter:
    def __init__(self, limits: Mapping[str, Limits]) -> None:
        self._sems = {
            name: asyncio.Semaphore(lim.max_concurrency)
            for name, lim in limits.items()
            if lim.max_concurrency
        }

    @asynccontextmanager
    async def slot(self, deployment: Deployment, tokens: int) -> AsyncIterator[None]:
        sem = self._sems.get(deployment.provider)
        if sem is None:
            yield
            return
        async with sem:
            yield

    def headroom(self, deployment: Deployment) -> Headroom:
        return UNLIMITED  # rates are the quota actors' to know; this bound is concurrency only

    def feedback(
        self,
        deployment: Deployment,
        error: TierlineError | None,
        response: ChatResponse | None,
        reserved_tokens: int = 0,
    ) -> None:
        return None
