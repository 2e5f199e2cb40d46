"""What the simulator saw and sent, per model and per API key (`GET /stats`).

    stats.snapshot()["models"]["gpt-x"]["rate_limited"]   # 429s sent to gpt-x
    stats.snapshot()["repeated_prompts"]                   # requests seen before

`repeated_prompts` counts requests whose (model, messages) had been received before (a
retry counts); `repeated_answers` counts successful answers to a (model, messages) that
had already been answered successfully: a row paid for twice. API keys are masked.

Requests inside provider batches count like any other (`requests`, `ok`, `errors`,
tokens, and the repeats above), and also as `batched`. The `batches` section counts
batches and their requests by outcome, and custom_ids across batches:
`repeated_custom_ids` (a custom_id submitted again) and `custom_ids_answered_twice` (a
custom_id answered successfully a second time: paid twice).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from pipeline.sim.generate import Msg

NO_MODEL = "(none)"


def prompt_id(model: str, messages: Sequence[Msg]) -> int:
    """A 64-bit fingerprint of (model, messages)."""
    digest = hashlib.blake2b(model.encode("utf-8", "surrogatepass"), digest_size=8)
    for role, content in messages:
        digest.update(b"\x1e" + role.encode() + b"\x1f")
        digest.update(content.encode("utf-8", "surrogatepass"))
    return int.from_bytes(digest.digest(), "big")


def mask_key(api_key: str) -> str:
    """Long keys keep only their first 3 and last 4 characters; short test keys stay."""
    if len(api_key) < 12:
        return api_key
    return f"{api_key[:3]}...{api_key[-4:]}"


@dataclass(slots=True)
class Counters:
    """Counts for one model, one key, or everything."""

    requests: int = 0
    ok: int = 0
    rate_limited: int = 0
    errors: dict[int, int] = field(default_factory=dict)
    hangs: int = 0
    resets: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0  # part of tokens_in read from the prompt cache
    tokens_cache_write: int = 0  # part of tokens_in written to it (Anthropic)
    batched: int = 0  # requests that came inside a provider batch

    def to_json(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "ok": self.ok,
            "rate_limited": self.rate_limited,
            "errors": {str(status): n for status, n in sorted(self.errors.items())},
            "hangs": self.hangs,
            "resets": self.resets,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "tokens_cached": self.tokens_cached,
            "tokens_cache_write": self.tokens_cache_write,
            "batched": self.batched,
        }


@dataclass(slots=True)
class BatchCounters:
    """Batches and their requests, both formats together."""

    created: int = 0
    refused: int = 0  # creations answered with an error (limits, queue, bad input)
    failed: int = 0  # batches that ended failed as a whole
    cancelled: int = 0  # cancel requests accepted
    requests: int = 0  # requests inside created batches
    succeeded: int = 0
    errored: int = 0
    expired: int = 0
    canceled: int = 0

    def to_json(self) -> dict[str, int]:
        return asdict(self)


class SimStats:
    """Counters, updated on the event loop (no locking needed)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.total = Counters()
        self.models: dict[str, Counters] = {}
        self.keys: dict[str, Counters] = {}
        self._seen: dict[int, int] = {}
        self._answered: set[int] = set()
        self.repeated_prompts = 0
        self.repeated_answers = 0
        self.batches = BatchCounters()
        self._custom_ids: dict[str, list[int]] = {}  # custom_id -> [submitted, answered]
        self.repeated_custom_ids = 0
        self.custom_ids_answered_twice = 0

    def _targets(self, model: str, api_key: str) -> tuple[Counters, Counters, Counters]:
        name = model or NO_MODEL
        by_model = self.models.get(name)
        if by_model is None:
            by_model = self.models[name] = Counters()
        by_key = self.keys.get(api_key)
        if by_key is None:
            by_key = self.keys[api_key] = Counters()
        return self.total, by_model, by_key

    def received(
        self, model: str, api_key: str, prompt: int | None, *, batched: bool = False
    ) -> int:
        """Count a request; returns how many times this prompt was received before."""
        for c in self._targets(model, api_key):
            c.requests += 1
            c.batched += int(batched)
        if prompt is None:
            return 0
        before = self._seen.get(prompt, 0)
        self._seen[prompt] = before + 1
        if before:
            self.repeated_prompts += 1
        return before

    def answered(
        self,
        model: str,
        api_key: str,
        prompt: int,
        tokens_in: int,
        tokens_out: int,
        *,
        cached: int = 0,
        cache_write: int = 0,
    ) -> None:
        for c in self._targets(model, api_key):
            c.ok += 1
            c.tokens_in += tokens_in
            c.tokens_out += tokens_out
            c.tokens_cached += cached
            c.tokens_cache_write += cache_write
        if prompt in self._answered:
            self.repeated_answers += 1
        else:
            self._answered.add(prompt)

    def failed(self, model: str, api_key: str, status: int) -> None:
        """An error answer was sent (429 counts as rate_limited, others by status)."""
        for c in self._targets(model, api_key):
            if status == 429:
                c.rate_limited += 1
            else:
                c.errors[status] = c.errors.get(status, 0) + 1

    def hung(self, model: str, api_key: str) -> None:
        for c in self._targets(model, api_key):
            c.hangs += 1

    def dropped(self, model: str, api_key: str) -> None:
        """A connection was reset without a response."""
        for c in self._targets(model, api_key):
            c.resets += 1

    def batch_submitted(self, custom_ids: list[str]) -> None:
        """A batch was created with these requests."""
        self.batches.created += 1
        self.batches.requests += len(custom_ids)
        for custom_id in custom_ids:
            counts = self._custom_ids.setdefault(custom_id, [0, 0])
            if counts[0]:
                self.repeated_custom_ids += 1
            counts[0] += 1

    def batch_outcome(self, custom_id: str, kind: str) -> None:
        """One request of a batch ended: succeeded, errored, expired or canceled."""
        setattr(self.batches, kind, getattr(self.batches, kind) + 1)
        if kind == "succeeded":
            counts = self._custom_ids.setdefault(custom_id, [0, 0])
            if counts[1]:
                self.custom_ids_answered_twice += 1
            counts[1] += 1

    def custom_id(self, custom_id: str) -> tuple[int, int]:
        """(times submitted in a batch, times answered successfully) of one custom_id."""
        submitted, answered = self._custom_ids.get(custom_id, (0, 0))
        return submitted, answered

    def snapshot(self) -> dict[str, object]:
        """Everything as JSON-ready data."""
        return {
            "total": self.total.to_json(),
            "models": {name: c.to_json() for name, c in sorted(self.models.items())},
            "keys": {mask_key(key): c.to_json() for key, c in sorted(self.keys.items())},
            "distinct_prompts": len(self._seen),
            "repeated_prompts": self.repeated_prompts,
            "repeated_answers": self.repeated_answers,
            "batches": {
                **self.batches.to_json(),
                "distinct_custom_ids": len(self._custom_ids),
                "repeated_custom_ids": self.repeated_custom_ids,
                "custom_ids_answered_twice": self.custom_ids_answered_twice,
            },
        }
