"""What the simulator saw and sent, per model and per API key (`GET /stats`).

    stats.snapshot()["models"]["gpt-x"]["rate_limited"]   # 429s sent to gpt-x
    stats.snapshot()["repeated_prompts"]                   # requests seen before

`repeated_prompts` counts requests whose (model, messages) had been received before (a
retry counts); `repeated_answers` counts successful answers to a (model, messages) that
had already been answered successfully: a row paid for twice. API keys are masked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

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
        }


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

    def _targets(self, model: str, api_key: str) -> tuple[Counters, Counters, Counters]:
        name = model or NO_MODEL
        by_model = self.models.get(name)
        if by_model is None:
            by_model = self.models[name] = Counters()
        by_key = self.keys.get(api_key)
        if by_key is None:
            by_key = self.keys[api_key] = Counters()
        return self.total, by_model, by_key

    def received(self, model: str, api_key: str, prompt: int | None) -> int:
        """Count a request; returns how many times this prompt was received before."""
        for c in self._targets(model, api_key):
            c.requests += 1
        if prompt is None:
            return 0
        before = self._seen.get(prompt, 0)
        self._seen[prompt] = before + 1
        if before:
            self.repeated_prompts += 1
        return before

    def answered(
        self, model: str, api_key: str, prompt: int, tokens_in: int, tokens_out: int
    ) -> None:
        for c in self._targets(model, api_key):
            c.ok += 1
            c.tokens_in += tokens_in
            c.tokens_out += tokens_out
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

    def snapshot(self) -> dict[str, object]:
        """Everything as JSON-ready data."""
        return {
            "total": self.total.to_json(),
            "models": {name: c.to_json() for name, c in sorted(self.models.items())},
            "keys": {mask_key(key): c.to_json() for key, c in sorted(self.keys.items())},
            "distinct_prompts": len(self._seen),
            "repeated_prompts": self.repeated_prompts,
            "repeated_answers": self.repeated_answers,
        }
