"""Cluster-wide quotas: one named Ray actor per provider account, and the worker-side
client that leases permits from it in batches.

    name = account_key(spec, "openai", endpoint)              # driver: the account's name
    ensure_quota_actor(name, spec.providers["openai"].limits)  # driver: find or create
    limiter = ClusterLimiter(spec, {"openai": name}, client_id="w1")   # worker
    async with limiter.slot(dep, tokens=420):
        ...call...
    limiter.feedback(dep, error, response, reserved_tokens=420)

The actor is found by a name derived from the account (kind, endpoint, key variable), in
one namespace, detached: every worker of every job on the cluster shares it, so ten
replicas never send ten times the limit. Workers call it about once per batch of calls
and once a second to settle, never once per row.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import ray

from pipeline.errors import RateLimited, TierlineError
from pipeline.limits.headroom import UNLIMITED, Headroom
from pipeline.limits.placement import configured, near_driver
from pipeline.limits.quota import QuotaState
from pipeline.providers.base import ChatResponse
from schemas.job import Deployment, JobSpec, Limits

NAMESPACE = "tierline"
MAX_BATCH = 64
SYNC_EVERY_S = 0.5


def account_key(
    spec: JobSpec, provider: str, endpoint: str | None, model: str | None = None
) -> str:
    p = spec.providers[provider]
    raw = f"{p.kind}|{endpoint or p.base_url}|{p.api_key_env}|{model or ''}"
    digest = hashlib.sha256(raw.encode()).hexdigest()[:12]
    return f"tierline-quota-{provider}-{digest}"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class QuotaActor:
    """The lease book of one provider account (see `pipeline.limits.quota.QuotaState`)."""

    def __init__(self, limits_json: str) -> None:
        self.state = QuotaState(Limits.model_validate_json(limits_json), clock=time.monotonic)
        self.sync_at = time.monotonic()

    def configure(self, limits_json: str) -> None:
        self.state.configure(Limits.model_validate_json(limits_json))

    def lease(
        self,
        client: str,
        requests: int,
        tokens: int,
        slots: int,
        largest: int,
        waiting: tuple[int, int] = (0, 0),
    ) -> dict[str, Any]:
        self.state.report_waiting(client, *waiting)
        g = self.state.lease(
            client, requests=requests, tokens=tokens, slots=slots, largest_request_tokens=largest
        )
        now = time.monotonic()
        return {
            "requests": g.requests,
            "tokens": g.tokens,
            "slots": g.slots,
            "wait_s": g.wait_s,
            "pause_s": max(0.0, g.paused_until - now),
            "unlimited_requests": g.unlimited_requests,
            "unlimited_tokens": g.unlimited_tokens,
            "exhausted": g.exhausted,
            "view": self.state.view(client),
        }

    def sync(
        self,
        client: str,
        requests: int,
        tokens: int,
        slots: int,
        successes: int,
        seconds: float,
        waiting: tuple[int, int] = (0, 0),
    ) -> dict[str, Any]:
        self.state.report_waiting(client, *waiting)
        self.state.give_back(client, requests=requests, tokens=tokens, slots=slots)
        self.state.on_success(successes, seconds)
        now = time.monotonic()
        return {
            "pause_s": max(0.0, self.state.paused_until - now),
            "unlimited_requests": self.state.requests is None,
            "unlimited_tokens": self.state.tokens is None,
            "view": self.state.view(client),
        }

    def rate_limited(self, retry_after_s: float | None, headers: dict[str, str]) -> float:
        self.state.on_rate_limited(retry_after_s, headers)
        return max(0.0, self.state.paused_until - time.monotonic())

    def learn(self, headers: dict[str, str]) -> None:
        self.state.learn(headers)

    def status(self) -> dict[str, Any]:
        return self.state.status()


def ensure_quota_actor(name: str, limits: Limits, pending: list[Any] | None = None) -> Any:
    """Find or create the account's actor and set its limits; with `pending`, the call
    that sets them is added there for the caller to wait on (with the others it starts)
    instead of being waited for here."""
    # On the driver's node (see `placement`); if that node is lost the actor restarts
    # elsewhere with a fresh lease book.
    actor = QuotaActor.options(  # type: ignore[attr-defined]
        name=name,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        **near_driver(),
    ).remote(limits.model_dump_json())
    # A second job may bring other limits for the same account: the latest spec wins.
    configured(actor.configure.remote(limits.model_dump_json()), pending)
    return actor


class QuotaClient:
    """Holds leased permits for one account inside one worker process."""

    def __init__(
        self,
        actor: Any,
        client_id: str,
        limits: Limits,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.actor = actor
        self.id = client_id
        self.clock = clock
        self.unlimited_req = limits.rpm is None
        self.unlimited_tok = limits.tpm is None
        self.conc_limited = limits.max_concurrency is not None
        self.req = 0
        self.tok = 0
        self.slots_free = 0
        self.slots_held = 0
        self.pause_until = 0.0
        self.waiting = 0
        self.waiting_tok = 0
        self.largest = 0
        self.to_return_tok = 0
        self.successes = 0
        self.last_sync = clock()
        self.lock = asyncio.Lock()
        self.exhausted: str | None = None
        self.sync_task: asyncio.Task[None] | None = None
        # The account as the actor last described it (every lease and sync brings it).
        rate = None if limits.rpm is None else limits.rpm / 60.0
        self.view: dict[str, Any] = {"requests_per_s": rate, "requests_ready": rate or 0.0}

    def _waiting(self) -> tuple[int, int]:
        return (max(0, self.waiting - self.req), max(0, self.waiting_tok - self.tok))

    def headroom(self) -> Headroom:
        """What this account can take now, without asking the actor (see `Headroom`)."""
        v = self.view
        return Headroom(
            pause_s=max(0.0, self.pause_until - self.clock()),
            requests_per_s=None if self.unlimited_req else v.get("requests_per_s"),
            requests_ready=self.req + float(v.get("requests_ready") or 0.0),
            requests_queued=float(v.get("requests_queued") or 0.0),
            tokens_per_s=None if self.unlimited_tok else v.get("tokens_per_s"),
            tokens_ready=self.tok + float(v.get("tokens_ready") or 0.0),
            tokens_queued=float(v.get("tokens_queued") or 0.0),
            exhausted=self.exhausted is not None,
        )

    @property
    def needs_actor(self) -> bool:
        return not (self.unlimited_req and self.unlimited_tok and not self.conc_limited)

    def _can_take(self, tokens: int) -> bool:
        return (
            (self.unlimited_req or self.req >= 1)
            and (self.unlimited_tok or self.tok >= tokens)
            and (not self.conc_limited or self.slots_free >= 1)
        )

    async def acquire(self, tokens: int) -> None:
        if self.sync_task is None and self.needs_actor:
            self.sync_task = asyncio.create_task(self._sync_loop())
        self.waiting += 1
        self.waiting_tok += tokens
        self.largest = max(self.largest, tokens)
        try:
            while True:
                if self.exhausted:
                    raise QuotaExhausted(self.exhausted)
                now = self.clock()
                if now < self.pause_until:
                    await asyncio.sleep(self.pause_until - now)
                    continue
                if self._can_take(tokens):
                    self.req -= 0 if self.unlimited_req else 1
                    self.tok -= 0 if self.unlimited_tok else tokens
                    self.slots_free -= 1 if self.conc_limited else 0
                    return
                await self._lease(tokens)
        finally:
            self.waiting -= 1
            self.waiting_tok -= tokens

    async def _lease(self, tokens: int) -> None:
        async with self.lock:
            if self._can_take(tokens) or self.clock() < self.pause_until:
                return
            want_req = 0 if self.unlimited_req else max(1, min(MAX_BATCH, self.waiting - self.req))
            want_tok = 0 if self.unlimited_tok else max(tokens, self.waiting_tok - self.tok)
            want_slots = max(1, self.waiting - self.slots_free) if self.conc_limited else 0
            g = await self.actor.lease.remote(
                self.id, want_req, want_tok, want_slots, self.largest, self._waiting()
            )
            self.view = g["view"]
            self.req += g["requests"]
            self.tok += g["tokens"]
            self.slots_free += g["slots"]
            self.slots_held += g["slots"]
            self.unlimited_req, self.unlimited_tok = g["unlimited_requests"], g["unlimited_tokens"]
            self.exhausted = g["exhausted"]
            if g["pause_s"] > 0:
                self.pause_until = self.clock() + g["pause_s"]
            elif not self._can_take(tokens):
                await asyncio.sleep(g["wait_s"])

    def release(self, reserved_tokens: int, used_tokens: int | None, success: bool) -> None:
        if self.conc_limited:
            self.slots_free += 1
        if not self.unlimited_tok:
            # Settle: a failed call that was not billed gives all its tokens back.
            used = used_tokens if used_tokens is not None else 0
            self.to_return_tok += max(0, reserved_tokens - used)
        if success:
            self.successes += 1

    def rate_limited(self, retry_after_s: float | None, headers: dict[str, str]) -> bool:
        """Pause this client; True when this starts a new pause (reported to the actor)."""
        now = self.clock()
        if now < self.pause_until:
            return False  # this pause is known; report a storm once
        self.pause_until = now + (retry_after_s or 1.0)
        # Permits held now would be spent into the pause: hand them back.
        self.req = self.tok = 0
        self.actor.rate_limited.remote(retry_after_s, headers)
        if self.sync_task is None:
            # Limits were unknown: from now on, learn what the account allows.
            self.sync_task = asyncio.create_task(self._sync_loop())
        return True

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(SYNC_EVERY_S)
            await self.sync()

    async def sync(self) -> None:
        now = self.clock()
        idle = self.waiting == 0
        give_slots = self.slots_free if idle else 0
        give_req = self.req if idle and not self.unlimited_req else 0
        give_tok = self.to_return_tok + (self.tok if idle and not self.unlimited_tok else 0)
        self.slots_free -= give_slots
        self.slots_held -= give_slots
        self.req -= give_req
        self.tok -= give_tok - self.to_return_tok
        self.to_return_tok = 0
        ok, self.successes = self.successes, 0
        seconds, self.last_sync = now - self.last_sync, now
        r = await self.actor.sync.remote(
            self.id, give_req, give_tok, give_slots, ok, seconds, self._waiting()
        )
        self.view = r["view"]
        if r["pause_s"] > 0:
            self.pause_until = max(self.pause_until, self.clock() + r["pause_s"])
        self.unlimited_req, self.unlimited_tok = r["unlimited_requests"], r["unlimited_tokens"]

    async def close(self) -> None:
        started = self.sync_task is not None
        if self.sync_task is not None:
            self.sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.sync_task
        self.waiting = 0
        if started:
            with contextlib.suppress(Exception):
                await self.sync()


class QuotaExhausted(TierlineError):
    """A daily allowance is used up: rows wait for a later run."""

    error_type = "quota_exhausted"


class ClusterLimiter:
    """The worker's `Limiter`: per-account quota clients, plus the per-worker bound."""

    def __init__(
        self,
        spec: JobSpec,
        actors: Mapping[str, str],
        client_id: str,
        on_pause: Callable[[str], None] | None = None,
    ) -> None:
        self.spec = spec
        self.on_pause = on_pause
        self.clients: dict[str, QuotaClient] = {}
        for key, name in actors.items():
            provider = key.split("::", 1)[0]
            actor = ray.get_actor(name, namespace=NAMESPACE)
            self.clients[key] = QuotaClient(actor, client_id, spec.providers[provider].limits)

    def _client(self, dep: Deployment) -> QuotaClient | None:
        return self.clients.get(f"{dep.provider}::{dep.model}") or self.clients.get(dep.provider)

    @asynccontextmanager
    async def slot(self, deployment: Deployment, tokens: int) -> AsyncIterator[None]:
        client = self._client(deployment)
        if client is not None:
            await client.acquire(tokens)
        yield

    def headroom(self, deployment: Deployment) -> Headroom:
        client = self._client(deployment)
        return UNLIMITED if client is None else client.headroom()

    def feedback(
        self,
        deployment: Deployment,
        error: TierlineError | None,
        response: ChatResponse | None,
        reserved_tokens: int = 0,
    ) -> None:
        client = self._client(deployment)
        if client is None:
            return
        if isinstance(error, QuotaExhausted):
            return  # never acquired
        used = None
        if response is not None:
            used = response.usage.input_tokens + response.usage.output_tokens
        client.release(reserved_tokens, used, success=error is None)
        if isinstance(error, RateLimited):
            headers = dict(error.context.get("headers") or {})
            if client.rate_limited(error.retry_after_s, headers) and self.on_pause:
                self.on_pause(deployment.provider)

    async def close(self) -> None:
        for c in self.clients.values():
            await c.close()
