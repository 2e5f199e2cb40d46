"""One row's journey through the providers of its tier: request, retries, fallback,
circuit breakers, and what to do when a whole tier is down.

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
from pipeline.errors import (
    AuthFailed,
    BadRequest,
    ConfigError,
    RateLimited,
    TierlineError,
    TooLong,
)
from pipeline.providers.base import ChatRequest, ChatResponse, Provider
from pipeline.retry import RetryPolicy
from schemas.job import TIER_ORDER, Deployment


class Limiter(Protocol):
    """Admission to a provider: concurrency, request and token rates."""

    def slot(self, deployment: Deployment, tokens: int) -> AbstractAsyncContextManager[None]: ...

    def feedback(
        self,
        deployment: Deployment,
        error: TierlineError | None,
        response: ChatResponse | None,
        reserved_tokens: int = 0,
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
    retries: int = 0
    rate_limited: int = 0
    routed_tier: str = ""


class Breaker:
    """Per-deployment circuit breaker: open after `threshold` consecutive failed calls,
    skip the deployment for `cooldown_s`, then let one probe through (half-open)."""

    def __init__(self, threshold: int, cooldown_s: float, clock: Callable[[], float]) -> None:
        self.threshold, self.cooldown_s, self.clock = threshold, cooldown_s, clock
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        if self.clock() - self.opened_at >= self.cooldown_s and not self.probing:
            self.probing = True
            return True
        return False

    def record(self, ok: bool) -> None:
        if ok:
            self.failures, self.opened_at, self.probing = 0, None, False
            return
        self.failures += 1
        if self.probing or self.failures >= self.threshold:
            self.opened_at, self.probing = self.clock(), False


class _TierDown(Exception):
    """No deployment of the tier could serve the row; carries the last error."""

    def __init__(self, last: TierlineError | None) -> None:
        self.last = last


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
        on_tier_down: str = "escalate",
        context_windows: Mapping[str, int] | None = None,
        breaker_failures: int = 5,
        breaker_cooldown_s: float = 30.0,
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
        self.on_tier_down = on_tier_down
        self.context_windows = context_windows or {}
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        # Providers found unusable for this job (401/403, missing key): rows fall back.
        self.dead: dict[str, str] = {}
        self.breakers: dict[str, Breaker] = {}
        self._breaker_args = (breaker_failures, breaker_cooldown_s)

    def breaker(self, dep: Deployment) -> Breaker:
        b = self.breakers.get(dep.name)
        if b is None:
            b = self.breakers[dep.name] = Breaker(*self._breaker_args, self.clock)
        return b

    def tiers_from(self, tier: str) -> list[str]:
        if self.on_tier_down != "escalate" or tier not in TIER_ORDER:
            return [tier]
        return [t for t in TIER_ORDER[TIER_ORDER.index(tier) :] if self.tiers.get(t)]

    async def run(self, row_id: str, text: str, tier: str, input_tokens: int = 0) -> RowOutcome:
        messages = self.kind.build_messages(text)
        out = RowOutcome(id=row_id, tier=tier, ok=False, routed_tier=tier)
        started = self.clock()
        last: TierlineError | None = None
        for t in self.tiers_from(tier):
            try:
                await self._run_tier(t, messages, input_tokens, out, started)
                break  # settled: ok, invalid output or a row-level terminal error
            except _TierDown as down:
                last = down.last or last
        else:
            if isinstance(last, TooLong):
                out.error_type, out.message = last.error_type, last.message
            elif self.on_tier_down == "defer":
                why = f": {last.message}" if last else ""
                out.error_type, out.message = "deferred", f"tier {tier!r} is down{why}"
            else:
                err = last or TierlineError(f"no tier from {tier!r} up could serve the row")
                out.error_type, out.message = err.error_type, err.message
        out.latency_ms = (self.clock() - started) * 1000.0
        return out

    async def _run_tier(
        self, tier: str, messages: tuple, input_tokens: int, out: RowOutcome, started: float
    ) -> None:
        last: TierlineError | None = None
        for dep in self.tiers.get(tier, ()):
            if dep.provider in self.dead:
                last = last or AuthFailed(self.dead[dep.provider])
                continue
            if not self.breaker(dep).allow():
                last = last or TierlineError(f"{dep.name}: circuit open after repeated failures")
                continue
            request = ChatRequest(
                model=dep.model, messages=messages, max_tokens=self.kind.max_output_tokens()
            )
            window = self.context_windows.get(dep.model)
            if window is not None and input_tokens + request.max_tokens > window:
                last = TooLong(
                    f"{input_tokens} input tokens + {request.max_tokens} for the answer exceed "
                    f"the {window}-token context window of {dep.model}"
                )
                continue
            error = await self._try_deployment(dep, tier, request, input_tokens, out, started)
            if error is None:
                return
            if isinstance(error, BadRequest):
                out.error_type, out.message = error.error_type, error.message
                return  # this row will not work on any deployment as sent
            last = error
        raise _TierDown(last)

    async def _try_deployment(
        self,
        dep: Deployment,
        tier: str,
        request: ChatRequest,
        input_tokens: int,
        out: RowOutcome,
        started: float,
    ) -> TierlineError | None:
        """Attempts on one deployment. None when the row is settled (ok or invalid output)."""
        provider = self.providers[dep.provider]
        breaker = self.breaker(dep)
        tokens = input_tokens + request.max_tokens
        for attempt in range(1, self.policy.max_attempts + 1):
            out.attempts += 1
            try:
                async with self.limiter.slot(dep, tokens):
                    response = await provider.complete(self.session, request)
            except (AuthFailed, ConfigError) as exc:
                self.dead[dep.provider] = exc.message
                self.limiter.feedback(dep, exc, None, tokens)
                return exc
            except TierlineError as exc:
                self.limiter.feedback(dep, exc, None, tokens)
                if not exc.transient:
                    return exc
                breaker.record(False)
                if isinstance(exc, RateLimited):
                    out.rate_limited += 1
                retry_after = exc.retry_after_s if isinstance(exc, RateLimited) else None
                delay = self.policy.delay(attempt, self.rng, retry_after)
                if not breaker.allow() or not self.policy.may_retry(
                    attempt, self.clock() - started, delay
                ):
                    return exc
                out.retries += 1
                await self.sleep(delay)
                continue
            breaker.record(True)
            self.limiter.feedback(dep, None, response, tokens)
            parsed = self.kind.parse(response.text)
            status = "ok" if parsed.ok else "invalid_output"
            out.calls.append(
                CallRecord(
                    dep.provider,
                    dep.model,
                    tier,
                    response.usage.input_tokens,
                    response.usage.output_tokens,
                    status,
                    out.attempts,
                )
            )
            out.provider, out.model, out.tier = dep.provider, dep.model, tier
            if parsed.ok:
                out.ok, out.output, out.error_type, out.message = True, parsed.output, None, None
            else:
                out.error_type, out.message = "invalid_output", parsed.reason
            return None
        raise AssertionError("unreachable")
