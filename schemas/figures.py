"""A unit's figures, carried by its commit marker, and how two units' figures add up.

    marker.figures.calls, marker.figures.by_tier["cheap"].cost_usd
    job = UnitFigures.total(m.figures for m in markers)     # the job's, without its rows

Every figure is a sum, or a partial aggregate that merges exactly (latency counts on fixed
buckets, completions per time bucket, error samples), so the summary, the run's table,
the report and the metrics of a job of any size come from its markers alone, never from
all its rows in one process. One definition of each figure:

- a *call* is a paid call: a cost row whose `call_status` is not `cached` or `duplicate`;
- a *reused* row was answered without a call of its own: from the response cache
  (`cache_hits`) or by an identical row's call (`duplicates`); it is counted apart,
  never as a call;
- a row belongs to the tier that answered it (an error row: the tier of its last call,
  `none` when it never reached one); calls and cost belong to the tier that was called.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

FIGURES_VERSION = 1
NO_TIER = "none"  # the tier of an error row that never reached one (empty text, say)
# Latency buckets: 20 per decade from 1 ms (bucket i holds [10^(i/20), 10^((i+1)/20)) ms),
# so a percentile read from them is within 12% of the exact one, and two units' counts
# add up bucket by bucket.
LATENCY_PER_DECADE = 20
LATENCY_BUCKETS = 6 * LATENCY_PER_DECADE  # 1 ms .. 1,000 s
# Time-bucket widths of the completion timeline, seconds; a unit uses the smallest that
# gives it at most TIMELINE_UNIT_BUCKETS buckets.
TIMELINE_STEPS_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0,
                    600.0, 900.0, 1800.0, 3600.0, 21600.0, 86400.0)  # fmt: skip
TIMELINE_UNIT_BUCKETS = 240
# A sum of more units' timelines than this is merged into one, on the smallest step that
# gives at most TIMELINE_JOB_BUCKETS buckets: a job's figures stay the same size however
# many units it has (the report draws at most 60 buckets anyway).
TIMELINE_PARTS = 64
TIMELINE_JOB_BUCKETS = 600
ERROR_EXAMPLES = 5


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Tally(_Part):
    """One group's figures (a tier, a model, a mode, a call status)."""

    rows: int = Field(default=0, description="Rows answered (or finally failed) here.")
    errors: int = Field(default=0, description="Of those rows, error rows.")
    reused: int = Field(default=0, description="Of those rows, answered without a call.")
    calls: int = Field(default=0, description="Paid calls (by call status: cost rows).")
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0

    def plus(self, o: Tally) -> Tally:
        return Tally(
            rows=self.rows + o.rows,
            errors=self.errors + o.errors,
            reused=self.reused + o.reused,
            calls=self.calls + o.calls,
            cost_usd=self.cost_usd + o.cost_usd,
            input_tokens=self.input_tokens + o.input_tokens,
            output_tokens=self.output_tokens + o.output_tokens,
        )


class ErrorSample(_Part):
    count: int = 0
    ids: list[str] = Field(default_factory=list, description=f"Up to {ERROR_EXAMPLES} ids.")
    message: str = ""

    def plus(self, o: ErrorSample) -> ErrorSample:
        return ErrorSample(
            count=self.count + o.count,
            ids=(self.ids + o.ids)[:ERROR_EXAMPLES],
            message=self.message or o.message,
        )


class Latency(_Part):
    """Rows by latency bucket (sparse: bucket -> rows) of one provider."""

    counts: dict[int, int] = Field(default_factory=dict)
    n: int = 0
    sum_ms: float = 0.0

    def plus(self, o: Latency) -> Latency:
        counts = dict(self.counts)
        for b, c in o.counts.items():
            counts[b] = counts.get(b, 0) + c
        return Latency(counts=counts, n=self.n + o.n, sum_ms=self.sum_ms + o.sum_ms)

    def quantile(self, q: float) -> float:
        """Interpolated (log-linear) within its bucket; 0 when empty."""
        if self.n == 0:
            return 0.0
        target, seen = q * self.n, 0
        for b in sorted(self.counts):
            c = self.counts[b]
            if seen + c >= target:
                frac = (target - seen) / c if c else 0.0
                return float(10 ** ((b + frac) / LATENCY_PER_DECADE))
            seen += c
        return latency_edge(max(self.counts) + 1)


def latency_bucket(ms: float) -> int:
    if ms <= 1.0:
        return 0
    return min(LATENCY_BUCKETS - 1, int(math.log10(ms) * LATENCY_PER_DECADE))


def latency_edge(bucket: int) -> float:
    return float(10 ** (bucket / LATENCY_PER_DECADE))


class Deployment(_Part):
    """One deployment of a tier (a pool member): rows it answered, the 429s rows of the tier
    met on it, and the latency of the rows it answered."""

    rows: int = 0
    rate_limited: int = Field(default=0, description="429 answers rows met on it.")
    latency: Latency = Field(default_factory=Latency)

    def plus(self, o: Deployment) -> Deployment:
        return Deployment(
            rows=self.rows + o.rows,
            rate_limited=self.rate_limited + o.rate_limited,
            latency=self.latency.plus(o.latency),
        )


class Completions(_Part):
    """Completions per time bucket: bucket -> [rows, rows retried, 429 answers]."""

    start_s: float = Field(description="Unix seconds at the start of bucket 0.")
    step_s: float
    buckets: dict[int, list[int]] = Field(default_factory=dict)
    per_call_429: bool = Field(
        default=True, description="False: files without per-row 429 counts (older writers)."
    )

    def events(self) -> Iterable[tuple[float, list[int]]]:
        for b, v in self.buckets.items():
            yield self.start_s + b * self.step_s, v

    @staticmethod
    def merged(parts: list[Completions]) -> Completions:
        """`parts` as one, each bucket counted in the new bucket holding its start (as the
        report bins them), on the smallest step no finer than any part's that gives at
        most TIMELINE_JOB_BUCKETS buckets.

            Completions.merged(unit_timelines).buckets    # {0: [rows, retried, 429s], ...}
        """
        events = [(t, v) for p in parts for t, v in p.events()]
        finest = max((p.step_s for p in parts), default=TIMELINE_STEPS_S[0])
        per_call = all(p.per_call_429 for p in parts)
        if not events:
            return Completions(start_s=0.0, step_s=finest, per_call_429=per_call)
        t0, t1 = min(t for t, _ in events), max(t for t, _ in events)
        step = next(
            (s for s in TIMELINE_STEPS_S if s >= finest and (t1 - t0) / s < TIMELINE_JOB_BUCKETS),
            TIMELINE_STEPS_S[-1],
        )
        first = math.floor(t0 / step)
        buckets: dict[int, list[int]] = {}
        for t, v in events:
            acc = buckets.setdefault(math.floor(t / step) - first, [0] * len(v))
            for i, x in enumerate(v):
                acc[i] += x
        return Completions(
            start_s=first * step, step_s=step, buckets=buckets, per_call_429=per_call
        )


class UnitFigures(_Part):
    """One unit's figures, or (summed) a job's. See the module docstring for definitions."""

    version: int = FIGURES_VERSION
    rows_ok: int = 0
    rows_error: int = 0
    rows_retryable: int = 0
    rows_escalated: int = Field(default=0, description="Rows sent above the tier routed to.")
    rows_disagreed: int = Field(default=0, description="Rows whose agreement check disagreed.")
    calls: int = Field(default=0, description="Paid calls.")
    cache_hits: int = Field(default=0, description="Rows answered from the response cache.")
    duplicates: int = Field(default=0, description="Rows answered by an identical row's call.")
    cost_usd: float = 0.0
    reused_saved_usd: float = Field(default=0.0, description="What reused rows would have cost.")
    input_tokens: int = Field(default=0, description="Of paid calls.")
    output_tokens: int = 0
    cached_input_tokens: int = 0
    prompt_cache_saved_usd: float = 0.0
    hedges_sent: int = Field(default=0, description="Hedged requests sent (run.hedge).")
    hedges_won: int = Field(default=0, description="Of those, hedges that answered first.")
    hedge_usd: float = Field(default=0.0, description="What the hedged requests cost.")
    cancelled_usd: float = Field(
        default=0.0, description="Calls cut off by their hedge's answer, at their worst case."
    )
    baseline_input_tokens: int = Field(
        default=0, description="Tokens of each row's last call: the all-flagship baseline."
    )
    baseline_output_tokens: int = 0
    by_tier: dict[str, Tally] = Field(default_factory=dict)
    by_model: dict[str, Tally] = Field(default_factory=dict, description="provider/model")
    by_deployment: dict[str, Tally] = Field(
        default_factory=dict, description="tier/provider/model: paid calls only"
    )
    by_mode: dict[str, Tally] = Field(default_factory=dict, description="sync or batch")
    by_call_status: dict[str, Tally] = Field(default_factory=dict)
    errors: dict[str, ErrorSample] = Field(default_factory=dict)
    latency: dict[str, Latency] = Field(default_factory=dict, description="by provider")
    pools: dict[str, Deployment] = Field(
        default_factory=dict, description="tier/provider/model of the deployment that answered"
    )
    timelines: list[Completions] = Field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.rows_ok + self.rows_error

    @property
    def reused(self) -> int:
        return self.cache_hits + self.duplicates

    def plus(self, o: UnitFigures) -> UnitFigures:
        sums = {
            name: getattr(self, name) + getattr(o, name)
            for name, f in UnitFigures.model_fields.items()
            if f.annotation in (int, float) and name != "version"
        }
        return UnitFigures(
            **sums,
            by_tier=_merge(self.by_tier, o.by_tier),
            by_model=_merge(self.by_model, o.by_model),
            by_deployment=_merge(self.by_deployment, o.by_deployment),
            by_mode=_merge(self.by_mode, o.by_mode),
            by_call_status=_merge(self.by_call_status, o.by_call_status),
            errors=_merge(self.errors, o.errors),
            latency=_merge(self.latency, o.latency),
            pools=_merge(self.pools, o.pools),
            timelines=_timelines(self.timelines + o.timelines),
        )

    @staticmethod
    def total(parts: Iterable[UnitFigures]) -> UnitFigures:
        out = UnitFigures()
        for p in parts:
            out = out.plus(p)
        return out


_P = TypeVar("_P", Tally, ErrorSample, Latency, Deployment)


def _timelines(parts: list[Completions]) -> list[Completions]:
    return [Completions.merged(parts)] if len(parts) > TIMELINE_PARTS else parts


def _merge(a: dict[str, _P], b: dict[str, _P]) -> dict[str, _P]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out[k].plus(v) if k in out else v
    return out
