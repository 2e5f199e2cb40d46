"""Prompt caching as the providers report it, on the simulator's clock.

    cache = PromptCache(clock)
    cache.openai(settings, ("sk-a", "gpt-x", None), messages, "gpt-x", total=1500)   # 1408
    cache.anthropic(settings, ("sk-a", "claude-x"), messages, "claude-x", marks, total=1500)
    # CacheUse(read=0, write_5m=1200, write_1h=0) on first sight, then read=1200

OpenAI caches automatically: a prompt that shares a prefix of at least `min_tokens` with a
recent prompt of the same key, model and `prompt_cache_key` reports that prefix, rounded
down to 128-token steps, as `cached_tokens`. Anthropic caches only up to the content blocks
marked `cache_control`: the prefix up to a mark is written on first sight (billed as a
cache write) and read while it lives; each read keeps it alive for another TTL.

Prefix lengths are counted the way the simulator counts prompt tokens
(`generate.input_tokens`: each message's text plus 3 per message), so a cached prefix is
never larger than the prompt it belongs to.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pipeline.sim.generate import MESSAGE_OVERHEAD_TOKENS, Msg
from pipeline.tokens import count_tokens
from schemas.sim import PromptCaching

Clock = Callable[[], float]
Ttl = Literal["5m", "1h"]
LONG_TTL_S = 3600.0  # Anthropic's "1h" cache_control ttl
_PURGE_EVERY = 4096  # Anthropic entries written between sweeps of expired ones


@dataclass(frozen=True, slots=True)
class Breakpoint:
    """An Anthropic `cache_control` mark: the prefix ends `end` characters into message
    `message` (the request's messages, system first)."""

    message: int
    end: int
    ttl: Ttl = "5m"


@dataclass(frozen=True, slots=True)
class CacheUse:
    """Anthropic usage of one request: tokens read from the cache and written to it."""

    read: int = 0
    write_5m: int = 0
    write_1h: int = 0

    @property
    def write(self) -> int:
        return self.write_5m + self.write_1h


NO_CACHE = CacheUse()


def prefix_tokens(messages: Sequence[Msg], model: str, message: int, chars: int) -> int:
    """Tokens of the first `message` messages and `chars` characters of the next one."""
    tokens = sum(count_tokens(c, model) + MESSAGE_OVERHEAD_TOKENS for _, c in messages[:message])
    if chars > 0 and message < len(messages):
        tokens += count_tokens(messages[message][1][:chars], model) + MESSAGE_OVERHEAD_TOKENS
    return tokens


def common_prefix_length(a: str, b: str) -> int:
    """Characters `a` and `b` share at their start (binary search over C-speed compares)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def shared_prefix(a: Sequence[Msg], b: Sequence[Msg]) -> tuple[int, int]:
    """(whole messages shared, characters shared of the next message's text)."""
    whole = 0
    for (role_a, text_a), (role_b, text_b) in zip(a, b, strict=False):
        if role_a != role_b:
            return whole, 0
        if text_a != text_b:
            return whole, common_prefix_length(text_a, text_b)
        whole += 1
    return whole, 0


@dataclass(slots=True)
class _Seen:
    messages: tuple[Msg, ...]
    used: float


class PromptCache:
    """The cache state of one simulator: OpenAI's recent prompts, Anthropic's entries."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._recent: dict[tuple[str, str, str | None], OrderedDict[int, _Seen]] = {}
        self._entries: dict[bytes, float] = {}  # Anthropic prefix digest -> expiry
        self._writes = 0

    def openai(
        self,
        settings: PromptCaching,
        scope: tuple[str, str, str | None],
        messages: tuple[Msg, ...],
        model: str,
        *,
        total: int,
    ) -> int:
        """`cached_tokens` of one request; remembers the prompt for the next ones."""
        if not settings.enabled or total < settings.min_tokens:
            return 0  # a short prompt can share no cacheable prefix with anything
        now = self._clock()
        recent = self._recent.setdefault(scope, OrderedDict())
        while recent:
            oldest = next(iter(recent.values()))
            if oldest.used + settings.openai_ttl_s > now:
                break
            recent.popitem(last=False)
        best, best_id = (0, 0), None
        for seen_id, seen in recent.items():
            shared = shared_prefix(messages, seen.messages)
            if shared > best:
                best, best_id = shared, seen_id
        shared_tokens = 0
        if best_id is not None:
            shared_tokens = min(total, prefix_tokens(messages, model, *best))
        cached = 0
        if shared_tokens >= settings.min_tokens:
            step = settings.increment_tokens
            cached = shared_tokens // step * step
            if best_id is not None:
                recent[best_id].used = now  # a hit keeps the prefix warm
                recent.move_to_end(best_id)
        key = hash(messages)
        recent[key] = _Seen(messages, now)
        recent.move_to_end(key)
        while len(recent) > settings.openai_recent_prompts:
            recent.popitem(last=False)
        return cached

    def anthropic(
        self,
        settings: PromptCaching,
        scope: tuple[str, str],
        messages: tuple[Msg, ...],
        model: str,
        marks: Sequence[Breakpoint],
        *,
        total: int,
    ) -> CacheUse:
        """Cache reads and writes of one request with `cache_control` marks."""
        if not settings.enabled or not marks:
            return NO_CACHE
        now = self._clock()
        points: list[tuple[int, bytes, float]] = []
        for mark in sorted(set(marks), key=lambda m: (m.message, m.end)):
            tokens = min(total, prefix_tokens(messages, model, mark.message, mark.end))
            if tokens >= settings.min_tokens:  # shorter prefixes are not cached at all
                ttl = LONG_TTL_S if mark.ttl == "1h" else settings.anthropic_ttl_s
                points.append((tokens, _digest(scope, messages, mark), ttl))
        hit = -1
        for i in range(len(points) - 1, -1, -1):  # the longest live prefix is read
            if self._entries.get(points[i][1], -1.0) > now:
                hit = i
                break
        read = points[hit][0] if hit >= 0 else 0
        write_5m = write_1h = 0
        done = read
        for tokens, _, ttl in points[hit + 1 :]:
            if ttl == LONG_TTL_S:
                write_1h += tokens - done
            else:
                write_5m += tokens - done
            done = tokens
        for _, digest, ttl in points:
            self._entries[digest] = max(self._entries.get(digest, 0.0), now + ttl)
        self._writes += len(points)
        if self._writes >= _PURGE_EVERY:
            self._writes = 0
            self._entries = {k: t for k, t in self._entries.items() if t > now}
        return CacheUse(read, write_5m, write_1h)


def _digest(scope: tuple[str, str], messages: Sequence[Msg], mark: Breakpoint) -> bytes:
    """Identity of the prefix up to `mark`, within one key and model."""
    h = hashlib.blake2b(digest_size=16)
    for part in scope:
        h.update(part.encode("utf-8", "surrogatepass") + b"\x1d")
    last_role, last_text = messages[mark.message]
    for role, text in [*messages[: mark.message], (last_role, last_text[: mark.end])]:
        h.update(b"\x1e" + role.encode() + b"\x1f")
        h.update(text.encode("utf-8", "surrogatepass"))
    return h.digest()
