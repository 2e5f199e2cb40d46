"""One row's journey through the providers of its tier: request, retries, fallback.

    executor = RowExecutor(kind, providers, spec.tiers, session, limiter, policy)
    outcome = await executor.run(row_id="T-1", text="...", tier="cheap")

A row's failure is data: `run` never raises for provider trouble; it returns an outcome
that is either a result or an error, plus one `CallRecord` per billed call.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from jobs.base import JobKind
from pipeline.errors import AuthFailed, BadRequest, ConfigError, RateLimited, TierlineError
from pipeline.providers.base import ChatRequest, ChatResponse, Provider
from pipeline.retry import RetryPolicy
from schemas.job import Deployment


class Limiter(Protocol):
    """Admission to a provider: concurrency, request and token rates."""

    def slot(self, deployment: Deployment, tokens: int) -> AbstractAsyncContextManager[None]: ...

    def feedback(
        self, deployment: Deployment, error: TierlineError | None, response: ChatResponse | None
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class CallRecord:
    provider: str
    model: str
    tier: str
    input_tokens: int
    output_tokens: int
    call_status: str  # 'ok' | 'invalid_output'
    attempt: int


@dataclass(slots=True)
class RowOutcome:
    id: str
    tier: str
    ok: bool
    output: str | None = None
    provider: str | None = None
    model: str | None = None
    attempts: int = 0
    latency_ms: float = 0.0
    error_type: str | None = None
    message: str | None = None
    calls: list[CallRecord] = field(default_factory=list)


class RowExecutor:
    def __init__(
        self,
        kind: JobKind,
        providers: Mapping[str, Provider],
        tiers: Mapping[str, Sequence[Deployment]],
        session: aiohttp.ClientSession,
        limiter: Limiter,
        policy: RetryPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.kind = kind
        self.providers = providers
        self.tiers = tiers
        self.session = session
        self.limiter = limiter
        self.policy = policy
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        # Providers found unusable for this job (401/403, missing key): rows fall back.
        self.dead: dict[str, str] = {}

    async def run(self, row_id: str, text: str, tier: str, input_tokens: int = 0) -> RowOutcome:
        messages = self.kind.build_messages(text)
        out = RowOutcome(id=row_id, tier=tier, ok=False)
        started = self.clock()
        last: TierlineError | None = None
        for dep in self.tiers.get(tier, ()):
            if dep.provider in self.dead:
                last = last or AuthFailed(self.dead[dep.provider])
                continue
            request = ChatRequest(
                model=dep.model, messages=messages, max_tokens=self.kind.max_output_tokens()
            )
            error = await self._try_deployment(dep, request, input_tokens, out, started)
            if out.ok or error is None:
                break
            last = error
            if isinstance(error, BadRequest):
                break  # this row will not work on any deployment as sent
        if not out.ok and out.error_type is None:
            err = last or TierlineError(f"tier {tier!r} has no usable deployment")
            out.error_type, out.message = err.error_type, err.message
        out.latency_ms = (self.clock() - started) * 1000.0
        return out

    async def _try_deployment(
        self,
        dep: Deployment,
        request: ChatRequest,
        input_tokens: int,
        out: RowOutcome,
        started: float,
    ) -> TierlineError | None:
        """Attempts on one deployment. None when the row is settled (ok or invalid output)."""
        provider = self.providers[dep.provider]
        tokens = input_tokens + request.max_tokens
        for attempt in range(1, self.policy.max_attempts + 1):
            out.attempts += 1
            try:
                async with self.limiter.slot(dep, tokens):
                    response = await provider.complete(self.session, request)
            except (AuthFailed, ConfigError) as exc:
                self.dead[dep.provider] = exc.message
                self.limiter.feedback(dep, exc, None)
                return exc
            except TierlineError as exc:
                self.limiter.feedback(dep, exc, None)
                if not exc.transient:
                    return exc
                retry_after = exc.retry_after_s if isinstance(exc, RateLimited) else None
                delay = self.policy.delay(attempt, self.rng, retry_after)
                if not self.policy.may_retry(attempt, self.clock() - started, delay):
                    return exc
                await self.sleep(delay)
                continue
            self.limiter.feedback(dep, None, response)
            parsed = self.kind.parse(response.text)
            status = "ok" if parsed.ok else "invalid_output"
            out.calls.append(
                CallRecord(
                    dep.provider,
                    dep.model,
                    out.tier,
                    response.usage.input_tokens,
                    response.usage.output_tokens,
                    status,
                    out.attempts,
                )
            )
            out.provider, out.model = dep.provider, dep.model
            if parsed.ok:
                out.ok, out.output = True, parsed.output
            else:
                out.error_type, out.message = "invalid_output", parsed.reason
            return None
        raise AssertionError("unreachable")
