"""One row's journey through the providers of its tier: request, retries, fallback,
circuit breakers, and what to do when a whole tier is down.

    executor = RowExecutor(kind, providers, spec.tiers, session, limiter, policy)
    outcome = await executor.run(row_id="T-1", text="...", tier="cheap")

The request is built once the deployment is chosen, with the prompt variant of its model
(`jobs.prompts`); each call's record names the prompt version it sent.

A row's failure is data: `run` never raises for provider trouble; it returns an outcome
that is either a result or an error, plus one `CallRecord` per billed call.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Any, Protocol

import aiohttp

from jobs.base import JobKind, Parsed
from jobs.prompts import FixedMessages, Messages, RowMessages
from pipeline.calls.breaker import Breaker
from pipeline.calls.hedge import CANCELLED, HEDGE_STEP, Hedges, first_answer
from pipeline.calls.outcome import CallRecord, RowOutcome
from pipeline.calls.pool import Pool
from pipeline.calls.retry import RetryPolicy
from pipeline.costs import call_cost_usd, worst_case_call_usd
from pipeline.errors import (
    AuthFailed,
    BadRequest,
    BudgetExhausted,
    ConfigError,
    RateLimited,
    TierlineError,
    TooLong,
)
from pipeline.limits.budget import Budgets
from pipeline.limits.headroom import Headroom
from pipeline.metrics import Metrics
from pipeline.providers.base import ChatRequest, ChatResponse, Message, Provider, StructuredMode
from pipeline.routing.cascade import same_answer, vote
from pipeline.tokens import count_tokens
from schemas.job import TIER_ORDER, CascadeSpec, Deployment, HedgeSpec, VoteSpec
from schemas.prices import PriceTable


class Limiter(Protocol):
    """Admission to a provider: concurrency, request and token rates."""

    def slot(self, deployment: Deployment, tokens: int) -> AbstractAsyncContextManager[None]: ...

    def headroom(self, deployment: Deployment) -> Headroom: ...

    def feedback(
        self,
        deployment: Deployment,
        error: TierlineError | None,
        response: ChatResponse | None,
        reserved_tokens: int = 0,
    ) -> None: ...


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
        cascade: CascadeSpec | None = None,
        vote: VoteSpec | None = None,
        metrics: Metrics | None = None,
        budgets: Budgets | None = None,
        prices: PriceTable | None = None,
        breaker_failures: int = 5,
        breaker_cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        cache_key: str | None = None,
        cache_prefix: int = 0,
        reasoning_effort: Mapping[str, str | None] | None = None,
        strategies: Mapping[str, str] | None = None,
        hedge: HedgeSpec | None = None,
        structured: Mapping[str, StructuredMode] | None = None,
        reasks: int = 0,
        compare_fields: Sequence[str] | None = None,
    ) -> None:
        self.kind = kind
        # Provider name -> the `reasoning_effort` its reasoning models are sent.
        self.reasoning_effort = reasoning_effort or {}
        # Extract tasks: how each provider is asked for JSON, how often a failing answer
        # is asked again on the same deployment, and the fields agreement and votes check.
        self.structured = structured or {}
        self.reasks = reasks
        self.compare_fields = list(compare_fields) if compare_fields is not None else None
        # Prompt caching: every request of the job names the same key (OpenAI keeps them
        # on warm machines); `cache_prefix` leading messages are the block rows share.
        self.cache_key, self.cache_prefix = cache_key, cache_prefix
        self.providers = providers
        self.tiers = tiers
        self.session = session
        self.limiter = limiter
        self.policy = policy
        self.on_tier_down = on_tier_down
        self.context_windows = context_windows or {}
        self.cascade = cascade
        self.vote = vote
        self.metrics = metrics or Metrics("local")
        self.budgets = budgets or Budgets()
        self.prices = prices
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        # Providers found unusable for this job (401/403, missing key): rows fall back.
        self.dead: dict[str, str] = {}
        self.breakers: dict[str, Breaker] = {}
        self._breaker_args = (breaker_failures, breaker_cooldown_s)
        # Which deployment of a tier a row goes to, per tier (unnamed tiers: list order).
        self.pool = Pool(
            limiter, strategies or {}, price_of=self.price_of, clock=clock, rng=self.rng
        )
        self.hedges = Hedges(hedge) if hedge is not None else None

    def price_of(self, dep: Deployment, tokens: int) -> float:
        """A row's worst-case cost on `dep` (`tokens`: input + answer cap); the pool's
        `cheapest` ranks by it. Unpriced: infinite, so it is never the cheapest."""
        if self.prices is None:
            return 0.0
        try:
            price = self.prices.for_deployment(dep.provider, dep.model)
        except KeyError:
            return float("inf")
        cap = self.kind.max_output_tokens()
        return worst_case_call_usd(price, max(0, tokens - cap), cap, caching=False)

    def usable(self, dep: Deployment) -> bool:
        """Could take a call now: its provider works for this job and its breaker is shut."""
        return dep.provider not in self.dead and self.breaker(dep).closed()

    def breaker(self, dep: Deployment) -> Breaker:
        b = self.breakers.get(dep.name)
        if b is None:
            b = self.breakers[dep.name] = Breaker(*self._breaker_args, self.clock)
        return b

    def tiers_from(self, tier: str) -> list[str]:
        if not (self.on_tier_down == "escalate" or self.cascade_on) or tier not in TIER_ORDER:
            return [tier]
        return [t for t in TIER_ORDER[TIER_ORDER.index(tier) :] if self.tiers.get(t)]

    async def run(
        self,
        row_id: str,
        text: str,
        tier: str,
        input_tokens: int = 0,
        allowed: frozenset[str] | None = None,
    ) -> RowOutcome:
        """`allowed`: the providers this row may be sent to (sensitive rows); None = any."""
        return await self.run_messages(
            row_id, RowMessages(self.kind, text), tier, input_tokens, allowed
        )

    async def run_messages(
        self,
        row_id: str,
        messages: Messages | tuple[Message, ...],
        tier: str,
        input_tokens: int = 0,
        allowed: frozenset[str] | None = None,
        max_tokens: int | None = None,
    ) -> RowOutcome:
        """`run` for prepared messages (a long document's map and reduce steps: a tuple,
        or `FixedMessages` naming the prompt version they carry)."""
        if isinstance(messages, tuple):
            messages = FixedMessages(messages)
        out = RowOutcome(id=row_id, tier=tier, ok=False, routed_tier=tier, max_tokens=max_tokens)
        started = self.clock()
        last: TierlineError | None = None
        chain = self.tiers_from(tier)
        if allowed is not None and not any(
            d.provider in allowed for t in chain for d in self._candidates(t, None)
        ):
            out.error_type = "no_allowed_provider"
            out.message = f"no deployment from tier {tier!r} up is on an allowed provider"
            return out
        skip_to = 0
        for i, t in enumerate(chain):
            if i < skip_to:
                continue  # that tier's model already answered this row (as agreement partner)
            try:
                ans = await self._answer(t, messages, input_tokens, out, started, allowed)
            except _TierDown as down:
                last = down.last or last
                continue
            except _Settled:
                break
            final = i == len(chain) - 1
            accepted, reason = await self._check(
                t, ans, messages, input_tokens, out, started, allowed
            )
            if accepted or (final and ans.parsed.ok):
                out.ok, out.output, out.error_type, out.message = (
                    True,
                    ans.parsed.output,
                    None,
                    None,
                )
                out.provider, out.model, out.tier = ans.dep.provider, ans.dep.model, t
                out.prompt_version = messages.version(ans.dep.model)
                out.accepted_attempt = ans.attempt
                out.accepted_reason = reason if accepted else f"final_tier ({reason})"
                break
            if final or not self.cascade_on:
                out.provider, out.model, out.tier = ans.dep.provider, ans.dep.model, t
                out.error_type = "invalid_output"
                out.message = ans.parsed.reason or reason
                break
            self._mark(out, t, "disagreed" if reason == "disagree" else "escalated")
            if reason == "disagree" and self.cascade is not None and self.cascade.agree:
                partner_tier = self._tier_of(self.cascade.agree[1])
                if partner_tier in chain and chain.index(partner_tier) < len(chain) - 1:
                    skip_to = chain.index(partner_tier) + 1
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

    @property
    def cascade_on(self) -> bool:
        return self.cascade is not None or self.vote is not None

    def _candidates(self, tier: str, allowed: frozenset[str] | None) -> list[Deployment]:
        if self.vote is not None and tier == self.vote.tier:
            deps = list(self.vote.deployments)
        else:
            deps = list(self.tiers.get(tier, ()))
        return deps if allowed is None else [d for d in deps if d.provider in allowed]

    @staticmethod
    def _mark(out: RowOutcome, tier: str, status: str) -> None:
        out.calls = [
            replace(c, call_status=status) if c.tier == tier and c.call_status == "ok" else c
            for c in out.calls
        ]

    async def _answer(
        self,
        tier: str,
        messages: Messages,
        input_tokens: int,
        out: RowOutcome,
        started: float,
        allowed: frozenset[str] | None,
    ) -> _Answer:
        """One parsed answer from the tier (its first deployment that works), or a vote."""
        if self.vote is not None and tier == self.vote.tier:
            return await self._vote(tier, messages, input_tokens, out, started, allowed)
        last: TierlineError | None = None
        cap = out.max_tokens if out.max_tokens is not None else self.kind.max_output_tokens()
        candidates = self._candidates(tier, allowed)
        await self.pool.room(tier, candidates, input_tokens + cap)
        deps = self.pool.order(tier, candidates, input_tokens + cap)
        pooled = self.pool.strategy(tier) != "ordered"
        for i, dep in enumerate(deps):
            # In a pool, a transient failure moves the row on while a later deployment can
            # take it; the last one (or any under `ordered`) retries in place as before.
            move_on = pooled and any(self.usable(d) for d in deps[i + 1 :])
            if i == 0 and pooled and self.hedges is not None:
                result = await self._hedged(deps, tier, messages, input_tokens, out, started)
            else:
                result = await self._ask(dep, tier, messages, input_tokens, out, started, move_on)
            if isinstance(result, _Answer):
                return result
            if isinstance(result, BadRequest | BudgetExhausted):
                out.error_type, out.message = result.error_type, result.message
                raise _Settled()  # this row will not work on any deployment as sent
            if result is not None:
                last = result
        raise _TierDown(last)

    async def _hedged(
        self,
        deps: list[Deployment],
        tier: str,
        messages: Messages,
        input_tokens: int,
        out: RowOutcome,
        started: float,
    ) -> _Answer | TierlineError | None:
        """The row's first choice, hedged on the next usable deployment of the pool when
        it has not answered after its p95 (see `pipeline.calls.hedge`)."""
        assert self.hedges is not None
        dep, partner = deps[0], next((d for d in deps[1:] if self.usable(d)), None)
        delay = self.hedges.delay(self.pool.of(dep).p95_s())
        primary = self._ask(dep, tier, messages, input_tokens, out, started, partner is not None)
        if partner is None or delay is None:
            return await primary
        hedges = self.hedges
        cap = out.max_tokens if out.max_tokens is not None else self.kind.max_output_tokens()

        def launch() -> Coroutine[Any, Any, _Answer | TierlineError | None] | None:
            if not self.usable(partner) or not hedges.take(
                self.price_of(partner, input_tokens + cap)
            ):
                return None
            return self._ask(partner, tier, messages, input_tokens, out, started, False, HEDGE_STEP)

        results, winner = await first_answer(
            primary, delay, launch, lambda r: isinstance(r, _Answer)
        )
        if winner == 1:
            hedges.won += 1
        if winner is not None:
            return results[winner]
        return next((r for r in results if isinstance(r, TierlineError)), results[0])

    async def _vote(
        self,
        tier: str,
        messages: Messages,
        input_tokens: int,
        out: RowOutcome,
        started: float,
        allowed: frozenset[str] | None,
    ) -> _Answer:
        deps = self._candidates(tier, allowed)
        results = await asyncio.gather(
            *(self._ask(d, tier, messages, input_tokens, out, started) for d in deps)
        )
        answers = [r for r in results if isinstance(r, _Answer) and r.parsed.ok]
        if not answers:
            errors = [r for r in results if isinstance(r, TierlineError)]
            raise _TierDown(errors[-1] if errors else None)
        fields = self.vote.fields if self.vote and self.vote.fields else self.compare_fields
        i, parsed, tie = vote([a.parsed for a in answers], fields)
        chosen = answers[i]
        chosen.parsed, chosen.vote_tie = parsed, tie
        return chosen

    async def _check(
        self,
        tier: str,
        ans: _Answer,
        messages: Messages,
        input_tokens: int,
        out: RowOutcome,
        started: float,
        allowed: frozenset[str] | None,
    ) -> tuple[bool, str]:
        """The cascade's validators: the task's own, agreement, log-probability, vote."""
        if not ans.parsed.ok:
            return False, "invalid_output"
        if not self.cascade_on:
            return True, "valid"
        if ans.vote_tie is not None:
            return (not ans.vote_tie), ("vote_tie" if ans.vote_tie else "vote")
        cascade = self.cascade
        floor = cascade.min_logprob if cascade is not None else None
        if floor is not None and ans.logprob is not None and ans.logprob < floor:
            return False, "low_logprob"
        if cascade is not None and cascade.agree:
            first, second = cascade.agree
            if tier == self._tier_of(first):
                partner = second if ans.dep.name == first.name else first
                if allowed is not None and partner.provider not in allowed:
                    return False, "disagree"  # cannot be checked here: escalate, never leak
                other = await self._ask(partner, tier, messages, input_tokens, out, started)
                if not isinstance(other, _Answer) or not other.parsed.ok:
                    return False, "disagree"
                fields = cascade.fields or self.compare_fields
                same = same_answer(ans.parsed, other.parsed, fields)
                return (True, "agree") if same else (False, "disagree")
        return True, "valid"

    def _tier_of(self, dep: Deployment) -> str | None:
        for t in TIER_ORDER:
            if any(d.name == dep.name for d in self.tiers.get(t, ())):
                return t
        return None

    async def _ask(
        self,
        dep: Deployment,
        tier: str,
        messages: Messages,
        input_tokens: int,
        out: RowOutcome,
        started: float,
        move_on: bool = False,
        step: str = "direct",
    ) -> _Answer | TierlineError | None:
        """One deployment, with retries: its parsed answer, or why it could not answer."""
        if dep.provider in self.dead:
            return AuthFailed(self.dead[dep.provider])
        if not self.breaker(dep).allow():
            return TierlineError(f"{dep.name}: circuit open after repeated failures")
        cap = out.max_tokens if out.max_tokens is not None else self.kind.max_output_tokens()
        wants_logprobs = self.cascade is not None and self.cascade.min_logprob is not None
        sent = messages.for_model(dep.model)
        # A model that thinks first spends hidden tokens inside the same cap: the price
        # table's allowance goes on top of the answer's, and the budget reserves it.
        price = (
            self.prices.for_deployment(dep.provider, dep.model) if self.prices is not None else None
        )
        reasoning = price is not None and price.reasoning
        schema = self.kind.output_schema()
        if schema is not None:
            schema = replace(schema, mode=self.structured.get(dep.provider, "native"))
        request = ChatRequest(
            model=dep.model,
            messages=sent,
            max_tokens=cap + (price.reasoning_tokens if price is not None else 0),
            logprobs=wants_logprobs,
            cache_key=self.cache_key,
            cache_prefix=min(self.cache_prefix, max(0, len(sent) - 1)),
            reasoning=reasoning,
            reasoning_effort=self.reasoning_effort.get(dep.provider) if reasoning else None,
            output_schema=schema,
        )
        window = self.context_windows.get(dep.model)
        if window is not None and input_tokens + request.max_tokens > window:
            return TooLong(
                f"{input_tokens} input tokens + {request.max_tokens} for the answer exceed "
                f"the {window}-token context window of {dep.model}"
            )
        version = messages.version(dep.model)
        # What a call cut off in flight is recorded as (at its worst case).
        call = CallRecord(
            dep.provider,
            dep.model,
            tier,
            input_tokens,
            request.max_tokens,
            "ok",
            0,
            step=step,
            prompt_version=version,
        )
        result = await self._try_deployment(dep, request, input_tokens, out, started, move_on, call)
        if isinstance(result, TierlineError):
            return result
        parsed = self.kind.parse(result.text)
        for _ in range(self.reasks if parsed.reask else 0):
            # Ask once more on the same deployment, quoting what failed validation; the
            # failed call stays a cost row (`reasked`). A re-ask that cannot be sent leaves
            # the invalid answer, which escalates like any other; one the budget refuses
            # ends the row as the budget's retryable error instead (below).
            mine = len(out.calls)
            self._record(out, dep, tier, result, "reasked", version, step)
            assert parsed.reask is not None
            extra = (
                Message("assistant", result.text[:_QUOTED_CHARS]),
                Message("user", parsed.reask),
            )
            request = replace(request, messages=(*request.messages, *extra))
            more = input_tokens + sum(count_tokens(m.content, dep.model) for m in extra)
            retried = await self._try_deployment(
                dep, request, more, out, started, call=replace(call, input_tokens=more)
            )
            if isinstance(retried, BudgetExhausted):
                # Nothing went out: the invalid answer is an ordinary `invalid_output`
                # cost row, paid once, and the row waits for a bigger budget. Escalating
                # would ask a dearer tier of the same budget, and an `invalid_output`
                # error row would never be asked again by a rerun.
                out.calls[mine] = replace(out.calls[mine], call_status="invalid_output")
                return retried
            if isinstance(retried, TierlineError):
                return _Answer(dep, parsed, out.attempts, None)
            result, parsed = retried, self.kind.parse(retried.text)
            if parsed.ok or not parsed.reask:
                break
        status = "ok" if parsed.ok else "invalid_output"
        self._record(out, dep, tier, result, status, version, step)
        return _Answer(dep, parsed, out.attempts, result.mean_logprob)

    @staticmethod
    def _record(
        out: RowOutcome,
        dep: Deployment,
        tier: str,
        result: ChatResponse,
        status: str,
        version: str | None,
        step: str,
    ) -> None:
        out.calls.append(
            CallRecord(
                dep.provider,
                dep.model,
                tier,
                result.usage.input_tokens,
                result.usage.output_tokens,
                status,
                out.attempts,
                cached_input_tokens=result.usage.cached_input_tokens,
                cache_write_tokens=result.usage.cache_write_tokens,
                mode=result.mode,
                prompt_version=version,
                step=step,
            )
        )

    async def _try_deployment(
        self,
        dep: Deployment,
        request: ChatRequest,
        input_tokens: int,
        out: RowOutcome,
        started: float,
        move_on: bool = False,
        call: CallRecord | None = None,
    ) -> ChatResponse | TierlineError:
        """Attempts on one deployment: the response, or the error that ended them
        (`move_on`: the first transient one, when another deployment can take the row)."""
        provider = self.providers[dep.provider]
        breaker = self.breaker(dep)
        tokens = input_tokens + request.max_tokens
        price = (
            self.prices.for_deployment(dep.provider, dep.model) if self.prices is not None else None
        )
        for attempt in range(1, self.policy.max_attempts + 1):
            # Reserve the worst case before the call goes out; settle the real cost after.
            # Sync prices: a batch answer costs less, and a batched request may end sync.
            worst = (
                worst_case_call_usd(
                    price, input_tokens, request.max_tokens, caching=request.cache_prefix > 0
                )
                if price
                else 0.0
            )
            hold = await self.budgets.reserve(dep.provider, worst)
            if not hold.granted:
                return BudgetExhausted(
                    f"the {hold.refused_by} budget cannot cover this call "
                    f"(worst case ${worst:.6f}); rerun with a larger budget to finish the row"
                )
            out.attempts += 1
            sent = False
            try:
                async with self.pool.admit(dep, tokens):
                    sent = True
                    with self.metrics.call(dep.provider, dep.model):
                        response = await provider.complete(self.session, request)
            except asyncio.CancelledError:
                # Cut off (the other call of a hedge answered, or the run stopped): a
                # request that went out may still be billed, so it counts at its worst case.
                self.budgets.settle(hold, worst if sent else 0.0)
                if sent:
                    self.limiter.feedback(dep, TierlineError("cancelled"), None, tokens)
                    if call is not None:
                        out.calls.append(
                            replace(
                                call,
                                call_status=CANCELLED,
                                attempt=out.attempts,
                                token_method="worst_case",
                            )
                        )
                raise
            except (AuthFailed, ConfigError) as exc:
                self.budgets.settle(hold, 0.0)
                self.dead[dep.provider] = exc.message
                self.limiter.feedback(dep, exc, None, tokens)
                return exc
            except TierlineError as exc:
                self.budgets.settle(hold, 0.0)  # not answered, not billed
                self.limiter.feedback(dep, exc, None, tokens)
                if not exc.transient:
                    return exc
                breaker.record(False)
                if isinstance(exc, RateLimited):
                    out.rate_limited += 1
                    out.limited_by[dep.name] = out.limited_by.get(dep.name, 0) + 1
                    self.metrics.limited(dep.provider)
                retry_after = exc.retry_after_s if isinstance(exc, RateLimited) else None
                delay = self.policy.delay(attempt, self.rng, retry_after)
                if (
                    move_on
                    or not breaker.allow()
                    or not self.policy.may_retry(attempt, self.clock() - started, delay)
                ):
                    return exc
                out.retries += 1
                self.metrics.retry(dep.provider, exc.error_type)
                await self.sleep(delay)
                continue
            breaker.record(True)
            u = response.usage
            # The function the cost rows are priced with (pipeline.costs): they agree.
            actual = (
                call_cost_usd(
                    price,
                    u.input_tokens,
                    u.output_tokens,
                    u.cached_input_tokens,
                    u.cache_write_tokens,
                    mode="batch" if response.mode == "batch" else "sync",
                )
                if price
                else 0.0
            )
            self.budgets.settle(hold, actual)
            if self.hedges is not None:
                self.hedges.paid(actual, call is not None and call.step == HEDGE_STEP)
            self.limiter.feedback(dep, None, response, tokens)
            return response
        raise AssertionError("unreachable")


@dataclass(slots=True)
class _Answer:
    dep: Deployment
    parsed: Parsed
    attempt: int
    logprob: float | None = None
    vote_tie: bool | None = None


# The longest invalid answer quoted back in a re-ask (an answer far past the schema's
# size is cut: the model needs to see what it did, not all of it again).
_QUOTED_CHARS = 4000


class _Settled(Exception):
    """The row is settled as an error (e.g. a bad request); stop trying tiers."""
