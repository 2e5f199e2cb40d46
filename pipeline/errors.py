"""One error tree for the whole engine. Every foreign exception is mapped into it at the
boundary where it enters (providers, storage), so the rest of the code only asks one
question: is this worth retrying?

    TierlineError
    ├── TransientError          retry with backoff
    │   ├── RateLimited         429 (carries retry_after_s)
    │   ├── ProviderUnavailable 5xx, 529 overloaded, 408
    │   ├── CallTimeout         connect or total timeout, a hang
    │   ├── ConnectionFailed    reset, refused, DNS
    │   └── StorageTransient    S3 5xx, throttling, dropped connection
    └── TerminalError           do not retry
        ├── BadRequest          400, 404, 422: this row will never work here
        ├── AuthFailed          401, 403: this provider is unusable for the job
        ├── TooLong             the row does not fit the context window
        ├── BudgetExhausted     the call's worst case does not fit the budget (rerun)
        ├── InputError          a shard or row that cannot be read (names the file)
        ├── ConfigError         the spec or environment cannot run (names the field)
        ├── CanaryFailed        a deployment scored below routing.canary.min_accuracy
        └── JobIncomplete       a job ended with units not done (raise_for_status)

An answer that fails the task's validation is not an exception: it is an error row
(`invalid_output`) or a reason to escalate, decided in the row executor.

Errors carry plain attributes only and define `__reduce__`, so they pickle across Ray
processes unchanged. Messages never contain secrets: `redact()` scrubs them first.
"""

from __future__ import annotations

import re
from typing import Any

_SECRET_PATTERNS = [
    re.compile(
        r"(?i)(authorization|x-api-key|api[_-]?key|token|secret|password)(\"?\s*[:=]\s*\"?)([^\s\",&]+)"
    ),
    re.compile(r"(?i)(bearer\s+)([A-Za-z0-9._\-]+)"),
    re.compile(r"(?i)(://[^:/\s]+:)([^@\s]+)(@)"),
    re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,})\b"),
]


def redact(text: str) -> str:
    """Mask credentials in a message, URL or header dump."""
    out = _SECRET_PATTERNS[0].sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    out = _SECRET_PATTERNS[1].sub(lambda m: f"{m.group(1)}***", out)
    out = _SECRET_PATTERNS[2].sub(lambda m: f"{m.group(1)}***{m.group(3)}", out)
    out = _SECRET_PATTERNS[3].sub("sk-***", out)
    return out


class TierlineError(Exception):
    """Base of the tree. `error_type` is the short name written to error rows."""

    error_type = "error"
    transient = False

    def __init__(self, message: str, **context: Any) -> None:
        self.message = redact(message)
        self.context = context
        super().__init__(self.message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.context))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[TierlineError], message: str, context: dict[str, Any]) -> TierlineError:
    return cls(message, **context)


class TransientError(TierlineError):
    error_type = "transient"
    transient = True


class RateLimited(TransientError):
    error_type = "rate_limited"

    @property
    def retry_after_s(self) -> float | None:
        value = self.context.get("retry_after_s")
        return float(value) if value is not None else None


class ProviderUnavailable(TransientError):
    error_type = "provider_unavailable"


class CallTimeout(TransientError):
    error_type = "timeout"


class ConnectionFailed(TransientError):
    error_type = "connection_failed"


class StorageTransient(TransientError):
    error_type = "storage_transient"


class TerminalError(TierlineError):
    error_type = "terminal"


class BadRequest(TerminalError):
    error_type = "bad_request"


class AuthFailed(TerminalError):
    error_type = "auth_failed"


class QuotaExhausted(AuthFailed):
    """The account cannot pay (OpenAI's 429 `insufficient_quota`, Anthropic's 402
    `billing_error`): retrying cannot help, so the provider stops for the job, as on 401."""

    error_type = "quota_exhausted"


class TooLong(TerminalError):
    """The row does not fit any deployment's context window it may use."""

    error_type = "too_long"


class BudgetExhausted(TerminalError):
    """The call's worst case does not fit the budget: the row waits for a bigger one."""

    error_type = "budget_exhausted"


class InputError(TerminalError):
    error_type = "input_error"


class ConfigError(TerminalError):
    error_type = "config_error"


class StorageUnusable(ConfigError):
    """The input cannot be listed or the output not written (`pipeline.storeprobe`),
    found before Ray starts. `problems` has one line per location: URI, what was tried,
    the fix."""

    @property
    def problems(self) -> list[str]:
        return list(self.context.get("problems") or [])


class CanaryFailed(TerminalError):
    """A routed deployment answered the golden set worse than `routing.canary.min_accuracy`;
    the job stopped before calling any of its rows. The message names each one."""

    error_type = "canary_failed"


class JobIncomplete(TerminalError):
    """A job ended with units not done (`JobSummary.raise_for_status()`); rerunning the
    same job resumes them. `context["units_failed"]` maps unit -> reason; `reasons` lists
    every reason, as summary.json's `reasons` does."""

    error_type = "job_incomplete"

    @property
    def reasons(self) -> list[str]:
        return list(self.context.get("reasons") or [])
