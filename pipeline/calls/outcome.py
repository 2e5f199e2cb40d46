"""What a row's journey leaves behind: one `CallRecord` per billed call (a cost row once
priced) and the row's `RowOutcome` (a result row or an error row).

    out = RowOutcome(id="T-1", tier="cheap", ok=False)
    out.calls.append(CallRecord("sim", "gpt-4o-mini", "cheap", 120, 4, "ok", 1))
    out.calls[0].cost_row("T-1", unit=3)           # schemas.records.COSTS, before pricing
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class CallRecord:
    provider: str
    model: str
    tier: str
    input_tokens: int
    output_tokens: int
    # ok | invalid_output | reasked | escalated | disagreed | cached | duplicate
    call_status: str
    attempt: int
    step: str = "direct"  # direct | map | reduce (long documents)
    chunk: int | None = None
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    mode: str = "sync"  # sync | batch: which price the call is billed at
    prompt_version: str | None = None  # the prompt variant's version the call sent
    token_method: str = "provider_usage"  # worst_case: a cancelled call, counted at its cap

    def cost_row(self, row_id: str, unit: int | None, step: str | None = None) -> dict[str, object]:
        """The call as a row of the costs table, before pricing (schemas.records.COSTS)."""
        return {
            "id": row_id,
            "provider": self.provider,
            "model": self.model,
            "tier": self.tier,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "mode": self.mode,
            "call_status": self.call_status,
            "prompt_version": self.prompt_version,
            "attempt": self.attempt,
            "token_method": self.token_method,
            "step": step or self.step,
            "chunk": self.chunk if step is None else None,
            "unit": unit,
        }


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
    accepted_attempt: int | None = None
    accepted_reason: str | None = None
    max_tokens: int | None = None  # answer cap when not the task's (long-document steps)
    long_document: bool = False  # answered by map-reduce or a longer-context tier
    prompt_version: str | None = None  # of the answer kept
    completed_at: float | None = None  # unix seconds its answer (or final failure) arrived
    limited_by: dict[str, int] = field(default_factory=dict)  # 429s met, by deployment
