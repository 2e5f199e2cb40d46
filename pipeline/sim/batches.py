"""Provider batches in the simulator: one state machine for both wire formats, driven by
the simulator's clock, and the store that holds batches and uploaded files.

    job = store.create("openai", "sk-a", entries, settings=config.batches, now=clock(),
                       wall=wall_clock(), seed=config.seed)
    store.advance(job, clock(), run, stats)      # answers the requests now due
    job.phase, job.answered, job.results         # "in_progress", 12, [Result, ..., None]

Time is provider time: sim-clock seconds since creation times `time_scale`. A batch
validates for `validate_s`, then answers its requests in input order, evenly spread over
`turnaround_s`, then finalizes for `finalize_s` and is completed. If it cannot finish
before `expire_after_s` (or `complete_fraction_before_expiry` < 1), it expires then with
what it answered; a cancel keeps what was answered before it and ends `cancel_s` later.
Requests are answered lazily, when someone looks at the batch, by the `run` function
handed in (the same generator direct calls use), so a test moves the clock instead of
waiting. Phases are OpenAI's status names; the Anthropic routes map them to theirs.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pipeline.sim.generate import stable_fraction
from pipeline.sim.request import JSON
from pipeline.sim.stats import SimStats
from schemas.sim import BatchBehaviour

Phase = Literal[
    "validating",
    "in_progress",
    "finalizing",
    "completed",
    "failed",
    "expired",
    "cancelling",
    "cancelled",
]
Kind = Literal["succeeded", "errored", "expired", "canceled"]
ENDED: frozenset[Phase] = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass(frozen=True, slots=True)
class Entry:
    """One request of a batch: OpenAI's `body` or Anthropic's `params`, as sent."""

    custom_id: str
    body: object
    line: int  # 1-based position in the input


@dataclass(frozen=True, slots=True)
class Result:
    """What became of one request: an answer (200), an error body, or nothing."""

    kind: Kind
    status: int = 0
    body: JSON | None = None


Run = Callable[["BatchJob", Entry], Result]


@dataclass(frozen=True, slots=True)
class BatchTimeline:
    """When things happen to a batch of `total` requests, in provider seconds."""

    validate_s: float
    turnaround_s: float
    finalize_s: float
    cancel_s: float
    expire_after_s: float
    total: int
    reachable: int  # requests answered before expiry at most
    time_scale: float

    @classmethod
    def of(cls, settings: BatchBehaviour, total: int) -> BatchTimeline:
        reachable = math.floor(settings.complete_fraction_before_expiry * total + 1e-9)
        return cls(
            settings.validate_s,
            settings.turnaround_s,
            settings.finalize_s,
            settings.cancel_s,
            settings.expire_after_s,
            total,
            reachable,
            settings.time_scale,
        )

    @property
    def expires(self) -> bool:
        late = self.validate_s + self.turnaround_s > self.expire_after_s
        return self.reachable < self.total or late

    @property
    def work_end(self) -> float:
        """When answering stops: the last answer, or the expiry."""
        return self.expire_after_s if self.expires else self.validate_s + self.turnaround_s

    def answered_by(self, t: float) -> int:
        """Requests answered by provider time `t` (ignoring cancels)."""
        if t < self.validate_s or self.total == 0:
            return 0
        done = math.floor((t - self.validate_s) / self.turnaround_s * self.total + 1e-9)
        return min(done, self.reachable, self.total)


@dataclass(slots=True)
class BatchJob:
    """One batch; `results[i]` is set once request i has an outcome."""

    id: str
    wire: str  # "openai" | "anthropic"
    api_key: str
    headers: dict[str, str]  # of the creation request (Anthropic's version header)
    entries: list[Entry]
    timeline: BatchTimeline
    started: float  # sim clock at creation
    created_at: float  # wall clock (unix seconds) at creation
    failure: list[JSON] | None = None  # OpenAI validation errors: the batch fails
    all_errored: bool = False  # an injected Anthropic failure: every request errors
    cancel_at: float | None = None  # provider seconds after creation
    phase: Phase = "validating"
    ended_at: float | None = None  # provider seconds after creation
    answered: int = 0
    results: list[Result | None] = field(default_factory=list)
    # OpenAI's own fields (the Anthropic routes leave them unset).
    input_file_id: str = ""
    endpoint: str = ""
    model: str | None = None
    metadata: dict[str, str] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None

    def at(self, provider_s: float) -> int:
        """Unix seconds of a moment given in provider seconds after creation."""
        return int(self.created_at + provider_s)

    def elapsed(self, now: float) -> float:
        return max(0.0, (now - self.started) * self.timeline.time_scale)

    def output_order(self) -> list[int]:
        """Result order for output files: stable but not the input order, as providers
        warn (clients must match by custom_id)."""
        return sorted(range(len(self.entries)), key=lambda i: stable_fraction(self.id, i))


def phase_at(job: BatchJob, t: float) -> tuple[Phase, float | None, int]:
    """(phase, provider time it ended or None, requests answered) at provider time `t`."""
    tl = job.timeline
    if job.failure is not None:
        return ("failed", tl.validate_s, 0) if t >= tl.validate_s else ("validating", None, 0)
    if job.cancel_at is not None:
        done = tl.answered_by(min(job.cancel_at, tl.work_end))
        end = job.cancel_at + tl.cancel_s
        return ("cancelled", end, done) if t >= end else ("cancelling", None, done)
    if t < tl.validate_s:
        return "validating", None, 0
    if tl.expires:
        if t >= tl.expire_after_s:
            return "expired", tl.expire_after_s, tl.answered_by(tl.expire_after_s)
        return "in_progress", None, tl.answered_by(t)
    if t >= tl.work_end + tl.finalize_s:
        return "completed", tl.work_end + tl.finalize_s, tl.total
    if t >= tl.work_end:
        return "finalizing", None, tl.total
    return "in_progress", None, tl.answered_by(t)


@dataclass(frozen=True, slots=True)
class FileRecord:
    """An OpenAI file: a batch input, output or error file."""

    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int


class BatchStore:
    """Every batch and file of one simulator (kept for its lifetime, as a provider does)."""

    def __init__(self) -> None:
        self.jobs: dict[str, BatchJob] = {}
        self.files: dict[str, FileRecord] = {}
        self._serial = 0

    def new_id(self, prefix: str) -> str:
        self._serial += 1
        digest = hashlib.blake2b(f"{prefix}{self._serial}".encode(), digest_size=12).hexdigest()
        return f"{prefix}{digest}"

    def add_file(self, filename: str, purpose: str, data: bytes, created_at: int) -> FileRecord:
        record = FileRecord(self.new_id("file-"), filename, purpose, data, created_at)
        self.files[record.id] = record
        return record

    def unfinished(self, api_key: str, now: float) -> int:
        """Batches of `api_key` that have not ended (for the queue limit)."""
        return sum(
            1
            for job in self.jobs.values()
            if job.api_key == api_key and phase_at(job, job.elapsed(now))[1] is None
        )

    def create(
        self,
        wire: str,
        api_key: str,
        entries: list[Entry],
        *,
        settings: BatchBehaviour,
        now: float,
        wall: float,
        seed: int,
        headers: dict[str, str] | None = None,
        failure: list[JSON] | None = None,
    ) -> BatchJob:
        """A new batch; `failure` makes it fail after validating (OpenAI)."""
        prefix = "batch_" if wire == "openai" else "msgbatch_"
        job_id = self.new_id(prefix)
        job = BatchJob(
            job_id,
            wire,
            api_key,
            headers or {},
            entries,
            BatchTimeline.of(settings, len(entries)),
            now,
            wall,
            failure=failure,
            results=[None] * len(entries),
        )
        unlucky = stable_fraction(seed, job_id, "batch-fail") < settings.fail_rate
        if failure is None and unlucky:
            if wire == "openai":
                job.failure = [{"code": "batch_failed", "message": "simulated batch failure"}]
            else:
                job.all_errored = True
        self.jobs[job_id] = job
        return job

    def advance(self, job: BatchJob, now: float, run: Run, stats: SimStats) -> BatchJob:
        """Bring `job` to `now`: answer what is due, close it if it has ended."""
        if job.ended_at is not None:
            return job
        phase, ended, target = phase_at(job, job.elapsed(now))
        while job.answered < target:
            entry = job.entries[job.answered]
            result = run(job, entry)
            job.results[job.answered] = result
            job.answered += 1
            stats.batch_outcome(entry.custom_id, result.kind)
        job.phase = phase
        if ended is not None:
            job.ended_at = ended
            if phase in ("expired", "cancelled"):  # the requests never run
                left: Kind = "expired" if phase == "expired" else "canceled"
                for i in range(job.answered, len(job.entries)):
                    job.results[i] = Result(left)
                    stats.batch_outcome(job.entries[i].custom_id, left)
            if phase == "failed":
                stats.batches.failed += 1
        return job
