"""Answers already bought are not bought again: the response cache, identical rows of a
unit sent once, and identical rows of the units one worker runs at once sent once.

    reuse = AnswerReuse(spec, kind, cache)
    keys = reuse.keys(rows)                  # one request key per row (None: not reusable)
    hits = await reuse.lookup(keys)          # one batched lookup for the whole unit
    ...call the misses, one per distinct key...
    reuse.remember(keys, outcomes); await reuse.flush()

A key is the request the row's tier would send first (provider kind, model and full
body, `pipeline.calls.cache.cache_key`), built with that model's prompt variant: another
prompt text is another key, so no variant is answered from another's cache. Rows under
a cascade or vote always call (their acceptance depends on more than one answer), and
sensitive rows are never served from the cache. Reused answers are cost rows with
call_status `cached` or `duplicate`, $0.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from jobs.base import JobKind
from pipeline.calls.cache import (
    CACHED,
    DUPLICATE,
    CachedAnswer,
    ResponseCache,
    cache_key,
    chat_body,
)
from pipeline.calls.outcome import CallRecord, RowOutcome
from pipeline.providers.base import ChatRequest
from schemas.job import JobSpec

Row = tuple[str, str, str, bool]  # id, text, tier, sensitive


class AnswerReuse:
    def __init__(self, spec: JobSpec, kind: JobKind, cache: ResponseCache | None) -> None:
        self.spec = spec
        self.kind = kind
        self.cache = cache
        routing = spec.routing
        self.enabled = routing.policy != "cascade" and not routing.cascade and not routing.vote

    def key(self, text: str, tier: str, sensitive: bool) -> str | None:
        deps = self.spec.tiers.get(tier)  # type: ignore[call-overload]
        if not self.enabled or sensitive or not deps:
            return None
        dep = deps[0]
        provider = self.spec.providers[dep.provider]
        schema = self.kind.output_schema()
        request = ChatRequest(
            model=dep.model,
            messages=self.kind.build_messages(text, dep.model),
            max_tokens=self.kind.max_output_tokens(),
            output_schema=replace(schema, mode=provider.structured_output) if schema else None,
        )
        return cache_key(provider.kind, dep.model, chat_body(request))

    def keys(self, rows: Sequence[Row]) -> list[str | None]:
        return [self.key(text, tier, sens) for _, text, tier, sens in rows]

    async def lookup(self, keys: Sequence[str | None]) -> dict[str, CachedAnswer]:
        if self.cache is None or self.cache.mode == "off":
            return {}
        return await self.cache.get_many([k for k in keys if k is not None])

    def cached(self, row: Row, hit: CachedAnswer) -> RowOutcome:
        rid, _, tier, _ = row
        dep = self.spec.tiers[tier][0]  # type: ignore[index]
        parsed = self.kind.parse(hit.text)
        version = self.kind.prompt(dep.model).version
        call = CallRecord(
            dep.provider,
            hit.model,
            tier,
            hit.input_tokens,
            hit.output_tokens,
            CACHED,
            0,
            prompt_version=version,
        )
        out = RowOutcome(id=rid, tier=tier, ok=parsed.ok, routed_tier=tier, calls=[call])
        out.prompt_version = version
        out.provider, out.model = dep.provider, hit.model
        if parsed.ok:
            out.output, out.accepted_reason = parsed.output, "cached"
        else:
            out.error_type, out.message = "invalid_output", parsed.reason
        return out

    @staticmethod
    def duplicate(rid: str, leader: RowOutcome) -> RowOutcome:
        calls = [replace(c, call_status=DUPLICATE, attempt=0) for c in leader.calls]
        return replace(leader, id=rid, calls=calls, attempts=0, retries=0, rate_limited=0)

    def remember(self, keys: Sequence[str | None], outcomes: Sequence[RowOutcome]) -> None:
        """Keep answers that came from the request the key names (the tier's first
        deployment, no escalation)."""
        if self.cache is None or self.cache.mode != "read-write":
            return
        entries: dict[str, CachedAnswer] = {}
        for key, o in zip(keys, outcomes, strict=True):
            if key is None or not o.ok or o.output is None:
                continue
            paid = [c for c in o.calls if c.call_status == "ok"]
            if o.long_document and paid:
                # The document's summary, whatever its map and reduce calls were.
                tokens_in = sum(c.input_tokens for c in paid)
                tokens_out = sum(c.output_tokens for c in paid)
                entries[key] = CachedAnswer(o.output, tokens_in, tokens_out, o.model or "")
                continue
            dep = self.spec.tiers[o.tier][0]  # type: ignore[index]
            same = (o.provider, o.model) == (dep.provider, dep.model) and o.tier == o.routed_tier
            if not same or len(paid) != 1:
                continue
            c = paid[0]
            entries[key] = CachedAnswer(o.output, c.input_tokens, c.output_tokens, c.model)
        if entries:
            self.cache.put_many(entries)

    async def flush(self, *, due_only: bool = False) -> None:
        if self.cache is not None and self.cache.mode == "read-write":
            await self.cache.flush(due_only=due_only)


class InFlight:
    """Requests being asked right now by the units one runner overlaps, by key: an
    identical row of another of its units waits for that answer instead of paying.

        waiting = in_flight.asked(key)        # a future when another unit is asking it
        in_flight.claim(my_keys)              # before any await: this unit asks these
        outcome = await in_flight.lead(key, call)   # settles the waiters, then forgets it
        leading = await InFlight.follow(waiting)    # None when that call failed
    """

    def __init__(self) -> None:
        self._asking: dict[str, asyncio.Future[RowOutcome]] = {}

    def asked(self, key: str) -> asyncio.Future[RowOutcome] | None:
        return self._asking.get(key)

    def claim(self, keys: Iterable[str]) -> None:
        loop = asyncio.get_running_loop()
        for key in keys:
            self._asking[key] = loop.create_future()

    async def lead(self, key: str | None, call: Awaitable[RowOutcome]) -> RowOutcome:
        fut = self._asking.get(key) if key is not None else None
        try:
            outcome = await call
        except BaseException:
            if fut is not None and not fut.done():
                fut.set_exception(RuntimeError("the identical request failed"))
                fut.exception()  # the waiters see it; nobody else needs to be told
            raise
        finally:
            if key is not None and fut is not None and self._asking.get(key) is fut:
                del self._asking[key]
        if fut is not None and not fut.done():
            fut.set_result(outcome)
        return outcome

    @staticmethod
    async def follow(fut: asyncio.Future[RowOutcome]) -> RowOutcome | None:
        try:
            return await asyncio.shield(fut)
        except Exception:
            return None


@dataclass
class Split:
    """How the rows of a unit get their answers (indices into the unit's rows).

    split = split_rows(keys, hits, in_flight)   # claims `split.run`'s keys in flight
    split.run       # rows that call: the first row of each key, and rows without one
    split.cached    # rows answered from the response cache: index -> answer
    split.follow    # rows waiting for the same request another unit is asking now
    split.leader    # key -> the row of this unit that asks it (the rest copy it)
    """

    run: list[int] = field(default_factory=list)
    cached: dict[int, CachedAnswer] = field(default_factory=dict)
    follow: dict[int, asyncio.Future[RowOutcome]] = field(default_factory=dict)
    leader: dict[str, int] = field(default_factory=dict)


def split_rows(
    keys: Sequence[str | None], hits: dict[str, CachedAnswer], in_flight: InFlight
) -> Split:
    """Decide, before any await, which rows call, which reuse and which wait; the keys of
    the rows that call are claimed in `in_flight` at once, so a unit overlapping this one
    waits for them instead of asking again."""
    split = Split()
    for i, key in enumerate(keys):
        if key is not None and key in hits:
            split.cached[i] = hits[key]
        elif key is not None and key not in split.leader and (waiting := in_flight.asked(key)):
            split.follow[i] = waiting  # another unit here is asking it right now
        elif key is None or split.leader.setdefault(key, i) == i:
            split.run.append(i)
    in_flight.claim(k for k in (keys[i] for i in split.run) if k is not None)
    return split
