"""The batch seam: a provider's batch API (half the price, answers within 24 hours) behind
one interface, beside the per-call `Provider` of `base.py`.

    batches = registry.create_batch("openai", name="openai", base_url=url, api_key_env=env,
                                    timeouts=Timeouts())
    for group in batches.split(items):                      # one model, within the limits
        status = await batches.submit(session, group)       # BatchStatus(state="submitted")
    status = await batches.retrieve(session, status.id)     # poll until status.ended
    outcomes = await batches.results(session, status.id, expected=ids)
    missing_ids(ids, outcomes)                              # never reported: resubmit

A `BatchItem` carries the same `ChatRequest` a direct call takes, and a succeeded
`BatchOutcome` the same `ChatResponse` (usage and cached tokens included), because the
adapters build and parse bodies with the functions their per-call adapters use. Failures
are mapped to `pipeline.errors` here too: a batch refused for its size or for mixing
models is terminal and names the limit; an errored request carries the error its status
would have raised on a direct call; expired and canceled requests carry a transient
error, since sending them again may well work.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from pipeline.errors import BadRequest, TierlineError
from pipeline.providers.base import ChatRequest, ChatResponse

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

BatchState = Literal["submitted", "in_progress", "ended", "cancelling"]
OutcomeKind = Literal["succeeded", "errored", "expired", "canceled"]


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One request of a batch; `custom_id` is how its outcome finds its way back."""

    custom_id: str
    request: ChatRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchLimits:
    """What one batch may hold at a provider."""

    max_requests: int
    max_bytes: int
    one_model_per_batch: bool


@dataclass(frozen=True, slots=True)
class BatchCounts:
    """Requests of a batch by outcome; `processing` have none yet."""

    total: int
    succeeded: int = 0
    errored: int = 0
    expired: int = 0
    canceled: int = 0
    processing: int = 0


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """Where a batch stands. `provider_status` is the provider's own word for it."""

    id: str
    state: BatchState
    provider_status: str
    counts: BatchCounts
    created_at: float | None = None  # unix seconds
    expires_at: float | None = None
    ended_at: float | None = None
    errors: tuple[str, ...] = ()  # why the provider failed the whole batch, if it did
    metadata: Mapping[str, str] | None = None  # what the submitter attached (OpenAI only)

    @property
    def ended(self) -> bool:
        return self.state == "ended"


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What became of one request: `response` when it succeeded, else `error`."""

    custom_id: str
    kind: OutcomeKind
    response: ChatResponse | None = None
    error: TierlineError | None = None


class BatchProvider(Protocol):
    """What every batch adapter provides."""

    name: str
    limits: BatchLimits

    def split(self, items: Sequence[BatchItem]) -> list[list[BatchItem]]:
        """Items in batches this provider accepts (`BadRequest` for an item too large)."""
        ...

    async def submit(
        self,
        session: aiohttp.ClientSession,
        items: Sequence[BatchItem],
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> BatchStatus:
        """Create one batch of `items` (already split)."""
        ...

    async def retrieve(self, session: aiohttp.ClientSession, batch_id: str) -> BatchStatus: ...

    async def recent(self, session: aiohttp.ClientSession, since: float) -> list[BatchStatus]:
        """Batches of this key created at or after `since` (unix seconds), newest first:
        how a batch submitted just before a crash, whose id was never written down, is
        found again."""
        ...

    async def cancel(self, session: aiohttp.ClientSession, batch_id: str) -> BatchStatus: ...

    async def results(
        self,
        session: aiohttp.ClientSession,
        batch_id: str,
        *,
        expected: Collection[str] | None = None,
    ) -> list[BatchOutcome]:
        """Outcomes of an ended batch, one per custom_id; with `expected`, outcomes for
        other custom_ids are dropped (and logged). Raises for a batch that failed whole
        or has not ended."""
        ...


def check_items(items: Sequence[BatchItem], where: str) -> None:
    """Refuse what no provider takes: an empty batch, or a custom_id used twice."""
    if not items:
        raise BadRequest(f"{where}: a batch needs at least one request")
    seen: set[str] = set()
    for item in items:
        if item.custom_id in seen:
            raise BadRequest(f"{where}: custom_id {item.custom_id!r} appears twice in a batch")
        seen.add(item.custom_id)


def split_items(
    items: Sequence[BatchItem],
    limits: BatchLimits,
    size_of: Callable[[BatchItem], int],
    *,
    overhead: int = 0,
    where: str = "batch",
) -> list[list[BatchItem]]:
    """Greedy split in input order: per model when the provider wants one model a batch,
    then at most `max_requests` items and `max_bytes` bytes (`overhead` is the envelope)."""
    groups: dict[str, list[BatchItem]] = {}
    for item in items:
        key = item.request.model if limits.one_model_per_batch else ""
        groups.setdefault(key, []).append(item)
    batches: list[list[BatchItem]] = []
    for group in groups.values():
        current: list[BatchItem] = []
        size = overhead
        for item in group:
            item_size = size_of(item)
            if overhead + item_size > limits.max_bytes:
                raise BadRequest(
                    f"{where}: request {item.custom_id!r} is {item_size} bytes; a batch "
                    f"holds at most {limits.max_bytes} bytes",
                    custom_id=item.custom_id,
                )
            full = len(current) >= limits.max_requests or size + item_size > limits.max_bytes
            if current and full:
                batches.append(current)
                current, size = [], overhead
            current.append(item)
            size += item_size
        if current:
            batches.append(current)
    return batches


def match_outcomes(
    outcomes: Iterable[BatchOutcome], expected: Collection[str] | None, where: str
) -> list[BatchOutcome]:
    """One outcome per custom_id: unknown ones (not in `expected`) and repeats are
    dropped and logged, never guessed at."""
    wanted = set(expected) if expected is not None else None
    kept: dict[str, BatchOutcome] = {}
    unknown: list[str] = []
    repeated: list[str] = []
    for outcome in outcomes:
        if wanted is not None and outcome.custom_id not in wanted:
            unknown.append(outcome.custom_id)
        elif outcome.custom_id in kept:
            repeated.append(outcome.custom_id)
        else:
            kept[outcome.custom_id] = outcome
    # One line each, not one per request: a rerun that needs a few rows of a large batch
    # would otherwise log thousands.
    if unknown:
        log.warning(
            "%s: dropped %d results for custom_ids not asked for here (first: %r)",
            where, len(unknown), unknown[0],
        )  # fmt: skip
    if repeated:
        log.warning(
            "%s: dropped %d second results for one custom_id (first: %r)",
            where, len(repeated), repeated[0],
        )  # fmt: skip
    return list(kept.values())


async def created_since(
    page: Callable[[str | None], Awaitable[tuple[list[BatchStatus], bool]]], since: float
) -> list[BatchStatus]:
    """Walk a newest-first batch listing (`page(after_id)` -> statuses, has_more) back to
    the first batch created before `since`."""
    found: list[BatchStatus] = []
    after: str | None = None
    while True:
        statuses, more = await page(after)
        for status in statuses:
            if status.created_at is not None and status.created_at < since:
                return found
            found.append(status)
        if not statuses or not more:
            return found
        after = statuses[-1].id


def missing_ids(expected: Iterable[str], outcomes: Iterable[BatchOutcome]) -> list[str]:
    """The expected custom_ids no outcome speaks for, in their order."""
    seen = {outcome.custom_id for outcome in outcomes}
    return [custom_id for custom_id in expected if custom_id not in seen]
