"""The forecast's assumptions as plain arithmetic: answer lengths and how long a job takes.

    a = OutputAssumption.words(max_words=60, cap=136)
    p10, p50, p90 = a.exprs(pl.col("text_tokens"), pl.col("input_tokens"))

    load = ProviderLoad("openai", requests=10_000, tokens=4e6, latency_s=0.6,
                        limits=Limits(rpm=500), run_concurrency=128)
    provider_duration(load).binding          # 'openai rpm=500'

Output tokens are the uncertain part of a forecast (input tokens are counted exactly), so
every answer length comes as p10 / p50 / p90 per row:

- classify (`labels`): the labels' token lengths under the model's tokenizer; p10 the
  shortest label, p50 their mean (labels taken as equally likely), p90 the longest.
- summarise (`max_words`): p50 = max_words x 1.33 tokens, but never more than the text
  itself (a summary does not outgrow what it summarises); p10 = 0.5 x p50 and
  p90 = 1.5 x p50, the spread of answer lengths models show against a word limit.
- from earlier runs of the same job name, per model when it made 30 calls or more:
  classify `observed_mean` (output tokens per call); summarise whichever of
  `observed_ratio` (output per input token) and `observed_mean` varies less from call to
  call in those runs. p50 is the aggregate over every earlier billed call, p10/p90 the
  10th/90th percentile of the per-file aggregates, widened to at least +-10%.

- a model that thinks before answering (the price table's `reasoning_tokens`, an
  allowance R) adds hidden reasoning tokens, billed as output, to each of those
  assumptions (earlier runs' counts hold them already): R/4, R/2, R at p10/p50/p90,
  an assumption until an earlier run measures them.

Every estimate is clipped to the request's `max_tokens`. The job's cost interval prices
every row at its p10 (or p90) length together: answer length errs the same way for a
whole job (a model that is wordy is wordy on every row), so the interval is for that
systematic error, not for row-to-row noise, which averages out over a job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import polars as pl

from schemas.job import Limits

TOKENS_PER_WORD = 1.33
SUMMARY_SPREAD = (0.5, 1.5)
# Hidden reasoning tokens at p10, as a fraction of the allowance (p50 half, p90 all).
REASONING_SPREAD = (0.25, 1.0)
MIN_OBSERVED_SPREAD = 0.10

# Typical answer latency of real providers, by tier (the tier says what class of model
# it is): a cheap model answers a short prompt in about 0.6 s, a flagship in about
# 1.5 s. The simulator's latency is its configured mean.
TYPICAL_LATENCY_S = {"cheap": 0.6, "mid": 1.0, "flagship": 1.5}
# Spread of latency for the duration interval (p10, p90 multipliers of the typical).
LATENCY_SPREAD = (0.75, 1.5)
# What one worker process does per second when calls cost no time at all (parse, route,
# account, write): the floor under any job's duration on a fast provider.
CLIENT_ROWS_PER_S_PER_WORKER = 1500.0
# Starting Ray, the workers and the simulator, planning, and writing the summary.
STARTUP_S = 6.0


@dataclass(frozen=True, slots=True)
class Interval:
    p10: float
    p50: float
    p90: float


@dataclass(frozen=True, slots=True)
class OutputAssumption:
    """How a model's answer length is estimated for one row, at p10 / p50 / p90."""

    method: str  # labels | max_words | observed_mean | observed_ratio
    cap: int  # the request's max_tokens, bounded by the model's own limit
    fixed: Interval | None = None  # tokens per answer (labels, observed_mean)
    ratio: Interval | None = None  # output tokens per input token (observed_ratio)
    words_tokens: float = 0.0  # max_words x TOKENS_PER_WORD (max_words)
    thinking: float = 0.0  # hidden reasoning allowance per call, on top of `cap`

    def with_thinking(self, allowance: int) -> OutputAssumption:
        """The same answer plus up to `allowance` hidden reasoning tokens per call."""
        return replace(self, thinking=float(allowance)) if allowance else self

    @classmethod
    def labels(cls, label_tokens: list[int], cap: int) -> OutputAssumption:
        if not label_tokens:
            raise ValueError("a classify task needs at least one label")
        mean = sum(label_tokens) / len(label_tokens)
        spread = Interval(min(label_tokens), mean, max(label_tokens))
        return cls("labels", cap, fixed=spread)

    @classmethod
    def words(cls, max_words: int, cap: int) -> OutputAssumption:
        return cls("max_words", cap, words_tokens=max_words * TOKENS_PER_WORD)

    def exprs(self, text_tokens: pl.Expr, input_tokens: pl.Expr) -> tuple[pl.Expr, ...]:
        """(p10, p50, p90) billed output tokens per row as Float64 polars expressions."""
        answer = self._answer_exprs(text_tokens, input_tokens)
        if not self.thinking:
            return answer
        hidden = (self.thinking * REASONING_SPREAD[0], self.thinking / 2, self.thinking)
        return tuple(a + h for a, h in zip(answer, hidden, strict=True))

    def _answer_exprs(self, text_tokens: pl.Expr, input_tokens: pl.Expr) -> tuple[pl.Expr, ...]:
        cap = float(self.cap)
        if self.fixed is not None:
            f = self.fixed
            return tuple(pl.lit(min(v, cap), dtype=pl.Float64) for v in (f.p10, f.p50, f.p90))
        if self.ratio is not None:
            r = self.ratio
            tin = input_tokens.cast(pl.Float64)
            return tuple((tin * v).clip(upper_bound=cap) for v in (r.p10, r.p50, r.p90))
        p50 = pl.min_horizontal(text_tokens.cast(pl.Float64), pl.lit(self.words_tokens)).clip(
            upper_bound=cap
        )
        lo, hi = SUMMARY_SPREAD
        return (p50 * lo, p50, (p50 * hi).clip(upper_bound=cap))

    def describe(self) -> str:
        answer = self._describe_answer()
        if not self.thinking:
            return answer
        t = self.thinking
        return f"{answer} + reasoning {t / 4:.0f}/{t / 2:.0f}/{t:.0f} hidden tokens (allowance)"

    def _describe_answer(self) -> str:
        if self.method == "labels" and self.fixed:
            f = self.fixed
            return f"labels: {f.p10:g}/{f.p50:.2f}/{f.p90:g} tokens (shortest/mean/longest)"
        if self.method == "max_words":
            lo, hi = SUMMARY_SPREAD
            return (
                f"max_words: min(text, {self.words_tokens:.0f}) tokens, p10/p90 = {lo:g}x/{hi:g}x"
            )
        if self.ratio is not None:
            r = self.ratio
            return f"observed ratio out/in {r.p10:.3f}/{r.p50:.3f}/{r.p90:.3f} (earlier runs)"
        f = self.fixed or Interval(0, 0, 0)
        if self.method == "estimate":
            return f"the task's estimate {f.p10:.1f}/{f.p50:.1f}/{f.p90:.1f} tokens per answer"
        return f"observed {f.p10:.1f}/{f.p50:.1f}/{f.p90:.1f} tokens per answer (earlier runs)"


def observed_interval(per_unit: list[float], overall: float) -> Interval:
    """p50 = `overall`; p10/p90 from the per-unit values, at least +-10% around it."""
    if per_unit:
        ordered = sorted(per_unit)
        lo = _quantile(ordered, 0.10)
        hi = _quantile(ordered, 0.90)
    else:
        lo = hi = overall
    lo = min(lo, overall * (1 - MIN_OBSERVED_SPREAD))
    hi = max(hi, overall * (1 + MIN_OBSERVED_SPREAD))
    return Interval(max(0.0, lo), overall, hi)


def _quantile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    i = math.floor(pos)
    j = min(i + 1, len(ordered) - 1)
    return ordered[i] + (ordered[j] - ordered[i]) * (pos - i)


# --- duration -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderLoad:
    """What a job asks of one provider: requests, rate-limited tokens, typical latency."""

    provider: str
    requests: float
    tokens: float  # input + max_tokens per request: what rate limiters count
    latency_s: float  # request-weighted typical latency of the models routed here
    limits: Limits
    run_concurrency: int  # workers x max_in_flight


@dataclass(frozen=True, slots=True)
class ProviderDuration:
    provider: str
    requests: float
    tokens: float
    seconds: Interval
    binding: str  # the limit that takes longest at p50
    limits: dict[str, float]  # every limit's time at p50, seconds


def provider_duration(load: ProviderLoad) -> ProviderDuration:
    """How long one provider's share of a job takes: the slowest of its limits.

    Requests per minute: requests / rpm. Tokens per minute: tokens / tpm. Tokens per
    day: tokens / tokens_per_day days. In flight: requests x latency / concurrency, where
    concurrency is the provider's max_concurrency or the run's workers x max_in_flight,
    whichever is smaller. Rate limits are fixed; latency brings the p10/p90 spread.
    """
    lim = load.limits
    p = load.provider
    fixed: dict[str, float] = {}
    if lim.rpm:
        fixed[f"{p} rpm={lim.rpm}"] = load.requests / lim.rpm * 60.0
    if lim.tpm:
        fixed[f"{p} tpm={lim.tpm}"] = load.tokens / lim.tpm * 60.0
    if lim.tokens_per_day:
        fixed[f"{p} tokens_per_day={lim.tokens_per_day}"] = (
            load.tokens / lim.tokens_per_day * 86_400.0
        )
    if lim.max_concurrency and lim.max_concurrency < load.run_concurrency:
        conc, conc_name = lim.max_concurrency, f"{p} max_concurrency={lim.max_concurrency}"
    else:
        conc, conc_name = load.run_concurrency, f"concurrency={load.run_concurrency}"
    in_flight = load.requests * load.latency_s / max(1, conc)
    times = {**fixed, conc_name: in_flight}
    binding = max(times, key=lambda k: times[k])
    floor = max(fixed.values(), default=0.0)
    lo, hi = LATENCY_SPREAD
    seconds = Interval(
        max(floor, in_flight * lo), max(floor, in_flight), max(floor, in_flight * hi)
    )
    return ProviderDuration(p, load.requests, load.tokens, seconds, binding, times)


@dataclass(frozen=True, slots=True)
class JobDuration:
    seconds: Interval
    binding: str
    providers: list[ProviderDuration]
    shared: dict[str, float]  # job-wide limits' times at p50 (shared concurrency, client)


def job_duration(
    loads: list[ProviderLoad], workers: int, *, startup_s: float = STARTUP_S
) -> JobDuration:
    """The job's duration: providers run side by side, so the slowest one sets it, but
    the run's in-flight slots are one pool for all providers and each worker process
    handles a bounded number of rows a second; both are job-wide floors. Startup is added.
    """
    providers = [provider_duration(load) for load in loads]
    run_conc = max((load.run_concurrency for load in loads), default=1)
    rows = sum(load.requests for load in loads)
    busy = sum(load.requests * load.latency_s for load in loads)
    shared_conc = busy / max(1, run_conc)
    client = rows / (max(1, workers) * CLIENT_ROWS_PER_S_PER_WORKER)
    shared = {
        f"concurrency={run_conc} (all providers)": shared_conc,
        f"client workers={workers}": client,
    }
    lo, hi = LATENCY_SPREAD
    candidates: list[tuple[Interval, str]] = [(pd.seconds, pd.binding) for pd in providers]
    candidates.append(
        (Interval(shared_conc * lo, shared_conc, shared_conc * hi), next(iter(shared)))
    )
    candidates.append((Interval(client, client, client), f"client workers={workers}"))
    binding = max(candidates, key=lambda c: c[0].p50)[1]
    seconds = Interval(
        startup_s + max(c[0].p10 for c in candidates),
        startup_s + max(c[0].p50 for c in candidates),
        startup_s + max(c[0].p90 for c in candidates),
    )
    return JobDuration(seconds, binding, providers, shared)
