"""The simulator's completion handling and the state it shares with the admin routes.

One completion request: read -> check the key -> count it -> (replay: look it up, 404
when absent) -> rate limits (429) -> latency -> injected fault -> answer. The same path
serves both wire formats; `wire.py` owns everything format-specific.

A request inside a provider batch takes the same path from "count it" on, without rate
limits and latency (the batch's timeline stands for both): `answer_batched`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from functools import lru_cache
from pathlib import Path

from aiohttp import web

from pipeline.sim import extract, generate
from pipeline.sim.batches import BatchStore
from pipeline.sim.behaviour import Behaviour, ReplyPlan
from pipeline.sim.catalogue import Catalogue, Refusal
from pipeline.sim.limits import SimLimiter
from pipeline.sim.prompt_cache import NO_CACHE, CacheUse, PromptCache
from pipeline.sim.replay import Recorded, ReplayTable
from pipeline.sim.schema_refs import plain
from pipeline.sim.stats import SimStats, prompt_id
from pipeline.sim.wire import JSON, Reply, SimRequest, WireError, WireFormat
from pipeline.tokens import count_tokens
from schemas.sim import SimConfig

Clock = Callable[[], float]
ANONYMOUS = "anonymous"
RECORDED_COST_HEADER = "x-tierline-recorded-cost-usd"
_HANG_POLL_S = 0.05
_NOT_JSON = object()


class SimState:
    """Everything one simulator holds: config, limiter, stats, replay table, prompt cache,
    batches and their files."""

    def __init__(self, config: SimConfig, clock: Clock, wall_clock: Clock) -> None:
        self.clock = clock
        self.wall_clock = wall_clock
        self.stats = SimStats()
        self.limiter = SimLimiter(config, clock)
        self.prompt_cache = PromptCache(clock)
        self.batches = BatchStore()
        self.closing = asyncio.Event()
        self.replay: ReplayTable | None = None
        self._replay_dir: Path | None = None
        self.apply(config)

    def apply(self, config: SimConfig) -> None:
        """Switch to `config`; raises `ReplayDataError` (and keeps the old one) if unusable."""
        if config.replay_dir is None:
            self.replay = None
        elif self.replay is None or config.replay_dir != self._replay_dir:
            self.replay = ReplayTable.load(config.replay_dir)
        self._replay_dir = config.replay_dir
        self.config = config
        self.catalogue = Catalogue(config, self.replay)
        self.behaviour = Behaviour(config)
        self.limiter.reconfigure(config)


STATE: web.AppKey[SimState] = web.AppKey("tierline_sim_state", SimState)


def key_refused(config: SimConfig, raw_key: str | None) -> bool:
    """Whether a request with this key (None: without one) gets 401."""
    if not config.require_api_key:
        return False
    return raw_key is None or (config.api_keys is not None and raw_key not in config.api_keys)


def _error(
    wire: WireFormat,
    status: int,
    message: str,
    kind: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.json_response(wire.error(status, message, kind), status=status, headers=headers)


def _refusal_body(wire: WireFormat, refusal: Refusal) -> JSON:
    body = wire.error(refusal.status, refusal.message, refusal.kind)
    detail = body.get("error")
    if wire.name != "anthropic" and isinstance(detail, dict):  # OpenAI names code and param
        detail.update(code=refusal.code, param=refusal.param)
    return body


def _input_tokens(request: SimRequest) -> int:
    """Prompt tokens as the providers bill them: a structured-output schema sent beside
    the messages (response_format, a tool's input schema) counts as input too."""
    tokens = generate.input_tokens(request.messages, request.model)
    if request.schema is not None:
        tokens += _schema_tokens(json.dumps(request.schema, ensure_ascii=False), request.model)
    return tokens


@lru_cache(maxsize=256)
def _schema_tokens(schema: str, model: str) -> int:
    return count_tokens(schema, model)  # a job sends one schema with every request


class CompletionHandler:
    """Answers completion requests in any wire format."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    def route(self, wire: WireFormat) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.complete(request, wire)

        return handle

    async def complete(
        self, request: web.Request, wire: WireFormat, *, model: str | None = None
    ) -> web.StreamResponse:
        """Answer one request; `model` overrides the body's (Azure: the URL's deployment
        chooses it)."""
        state, config = self.state, self.state.config
        raw_key = wire.api_key(request.headers)
        key = raw_key or ANONYMOUS
        try:
            body: object = await request.json()
        except (ValueError, UnicodeDecodeError):
            body = _NOT_JSON
        if model is not None and isinstance(body, dict):
            body = {**body, "model": model}
        hint = body.get("model") if isinstance(body, dict) else None
        if key_refused(config, raw_key):
            return self.refuse(wire, hint, key, 401, "missing or unknown API key")
        try:
            sim_request = wire.parse(body, request.headers)
        except WireError as exc:
            message = "the request body is not valid JSON" if body is _NOT_JSON else str(exc)
            return self.refuse(wire, hint, key, 400, message)
        refusal = state.catalogue.refusal(sim_request, wire.name)
        if refusal is not None:
            self._refused(sim_request.model, key, refusal.status)
            return web.json_response(_refusal_body(wire, refusal), status=refusal.status)
        model = sim_request.model
        prompt = prompt_id(model, sim_request.messages)
        occurrence = state.stats.received(model, key, prompt)
        recorded = None
        if state.replay is not None:
            recorded = state.replay.lookup(model, generate.last_user_text(sim_request.messages))
            if recorded is None:
                state.stats.failed(model, key, 404)
                message = f"no recorded answer for model {model} and this prompt"
                return _error(wire, 404, message, "not_found")
        tokens_in = _input_tokens(sim_request)
        verdict = state.limiter.admit(key, model, tokens_in + (sim_request.max_tokens or 0))
        headers = wire.rate_headers(verdict.state, state.wall_clock())
        if not verdict.allowed:
            if verdict.denial == "too_large":
                state.stats.failed(model, key, 400)
                limit = verdict.state.tokens_limit
                message = f"request needs more tokens than the tokens-per-minute limit {limit}"
                return _error(wire, 400, message, headers=headers)
            state.stats.failed(model, key, 429)
            wait = verdict.retry_after_s
            headers |= wire.retry_headers(wait)
            message = f"rate limit reached on {verdict.denial}; retry after {wait}s"
            return _error(wire, 429, message, str(verdict.denial), headers)
        try:
            plan = state.behaviour.plan(model, prompt=prompt, occurrence=occurrence)
            if plan.delay_s > 0:
                await asyncio.sleep(plan.delay_s)
            if plan.fault is not None:
                return await self._fault(request, wire, sim_request, key, plan, headers)
            reply = self._reply(sim_request, key, tokens_in, plan, recorded)
            if sim_request.max_tokens is None:
                state.limiter.charge(key, model, reply.output_tokens)
            self._count_answer(sim_request, key, prompt, reply)
            if recorded is not None and recorded.cost_usd is not None:
                headers[RECORDED_COST_HEADER] = repr(recorded.cost_usd)
            answer_id = f"sim{prompt:016x}{occurrence}"
            created = int(state.wall_clock())
            payload = wire.answer(sim_request, reply, answer_id=answer_id, created=created)
            return web.json_response(payload, headers=headers)
        finally:
            state.limiter.release(key)

    def refuse(
        self,
        wire: WireFormat,
        model: object,
        key: str,
        status: int,
        message: str,
        kind: str | None = None,
    ) -> web.Response:
        """Answer (and count) a request that never got as far as having a model and
        messages."""
        self._refused(model if isinstance(model, str) else "", key, status)
        return _error(wire, status, message, kind)

    def _refused(self, model: str, key: str, status: int, *, batched: bool = False) -> None:
        self.state.stats.received(model, key, None, batched=batched)
        self.state.stats.failed(model, key, status)

    def answer_batched(
        self, wire: WireFormat, body: object, headers: Mapping[str, str], key: str
    ) -> tuple[int, JSON]:
        """One request of a batch: (HTTP status it would have had, answer or error body).

        Same parse, replay, fault draw, answer, prompt cache and stats as a direct call;
        a drawn hang or reset becomes the 504 or 500 the batch records instead.
        """
        state = self.state
        try:
            request = wire.parse(body, headers)
        except WireError as exc:
            hint = body.get("model") if isinstance(body, dict) else None
            self._refused(hint if isinstance(hint, str) else "", key, 400, batched=True)
            return 400, wire.error(400, str(exc))
        refusal = state.catalogue.refusal(request, wire.name)
        if refusal is not None:
            self._refused(request.model, key, refusal.status, batched=True)
            return refusal.status, _refusal_body(wire, refusal)
        model = request.model
        prompt = prompt_id(model, request.messages)
        occurrence = state.stats.received(model, key, prompt, batched=True)
        recorded = None
        if state.replay is not None:
            recorded = state.replay.lookup(model, generate.last_user_text(request.messages))
            if recorded is None:
                state.stats.failed(model, key, 404)
                message = f"no recorded answer for model {model} and this prompt"
                return 404, wire.error(404, message, "not_found")
        plan = state.behaviour.plan(model, prompt=prompt, occurrence=occurrence)
        if plan.fault is not None:
            status = {"hang": 504, "reset": 500}.get(str(plan.fault)) or int(plan.fault)
            state.stats.failed(model, key, status)
            return status, wire.error(status, f"simulated error {status}")
        tokens_in = _input_tokens(request)
        reply = self._reply(request, key, tokens_in, plan, recorded)
        self._count_answer(request, key, prompt, reply)
        answer_id = f"sim{prompt:016x}{occurrence}"
        created = int(state.wall_clock())
        return 200, wire.answer(request, reply, answer_id=answer_id, created=created, batch=True)

    def _count_answer(self, request: SimRequest, key: str, prompt: int, reply: Reply) -> None:
        cache = reply.cache
        self.state.stats.answered(
            request.model,
            key,
            prompt,
            reply.input_tokens,
            reply.output_tokens,
            cached=cache.read,
            cache_write=cache.write,
        )

    def _cache(self, request: SimRequest, key: str, tokens_in: int) -> CacheUse:
        """What the prompt cache gives this request: Anthropic marks, else OpenAI's rule."""
        settings, cache = self.state.config.prompt_cache, self.state.prompt_cache
        model, messages = request.model, request.messages
        if request.caching == "marked":
            scope = (key, model)
            return cache.anthropic(settings, scope, messages, model, request.marks, total=tokens_in)
        if tokens_in < settings.min_tokens:
            return NO_CACHE
        scope_key = (key, model, request.cache_key)
        read = cache.openai(settings, scope_key, messages, model, total=tokens_in)
        return CacheUse(read=read) if read else NO_CACHE

    def _reply(
        self,
        request: SimRequest,
        key: str,
        tokens_in: int,
        plan: ReplyPlan,
        recorded: Recorded | None,
    ) -> Reply:
        model, seed, accuracy = request.model, self.state.config.seed, plan.settings.accuracy
        schema = request.schema or extract.schema_in_prompt(request.messages)
        if schema is not None:  # the SDKs' schemas: $defs and $refs, nullable anyOf
            schema = plain(schema)
        if recorded is not None:
            text = recorded.response
        elif schema is not None:
            found = extract.extract_answer(schema, extract.row_text(request.messages))
            parts = (seed, model, request.messages)
            text = extract.spoil(found, schema, plan.settings.extract, *parts)
        else:
            text = generate.answer(request.messages, model=model, seed=seed, accuracy=accuracy)
        # A model that thinks spends its hidden tokens first, inside the same cap.
        hidden = self.state.catalogue.hidden_tokens(request)
        if request.max_tokens is not None and hidden >= request.max_tokens:
            text, tokens_out, cut, hidden = "", 0, True, request.max_tokens
        elif request.max_tokens is not None:
            left = request.max_tokens - hidden
            text, tokens_out, cut = generate.truncate_to_tokens(text, left, model)
        else:
            tokens_out, cut = count_tokens(text, model), False
        logprobs = None
        if request.logprobs and recorded is None:  # nothing recorded to replay them from
            wrong = generate.made_wrong(request.messages, model=model, seed=seed, accuracy=accuracy)
            logprobs = generate.token_logprobs(
                text, request.messages, model=model, seed=seed, sure=not wrong
            )
        cache = self._cache(request, key, tokens_in)
        return Reply(text, tokens_in, tokens_out + hidden, cut, recorded, logprobs, cache, hidden)

    async def _fault(
        self,
        request: web.Request,
        wire: WireFormat,
        sim_request: SimRequest,
        key: str,
        plan: ReplyPlan,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        stats, model, faults = self.state.stats, sim_request.model, plan.settings.faults
        fault = plan.fault
        if fault == "reset":
            stats.dropped(model, key)
            if request.transport is not None:
                request.transport.close()
            return web.Response()
        if fault == "hang":
            stats.hung(model, key)
            deadline = asyncio.get_running_loop().time() + faults.max_hang_s
            while not self.state.closing.is_set():
                transport = request.transport
                left = deadline - asyncio.get_running_loop().time()
                if transport is None or transport.is_closing() or left <= 0:
                    break
                await asyncio.sleep(min(_HANG_POLL_S, left))
            stats.failed(model, key, 504)
            return _error(wire, 504, "the request timed out (simulated hang)", headers=headers)
        status = int(fault or 500)
        stats.failed(model, key, status)
        if status in (429, 503, 529):
            headers |= wire.retry_headers(faults.retry_after_s)
        return _error(wire, status, f"simulated error {status}", headers=headers)
