"""Live counters of a worker, and the same figures as Prometheus metrics through Ray.

    m = Metrics(job_id="nightly-tickets-3f2a9c1b7e")   # no-op outside a Ray process
    with m.call("openai", "gpt-4o"):
        ...                                            # in flight, then latency observed
    m.snapshot()                                       # what the driver's progress shows

Exported names (Ray adds the `ray_` prefix on its metrics port; see infra/grafana), the
first four when a unit commits, from the figures its marker carries (so they add up to
summary.json: `metric_samples`): tierline_rows_total{job,tier,status},
tierline_spend_usd_total{job,provider,model}, tierline_calls_total{job,tier,provider,model}
(paid calls), tierline_reused_rows_total{job,tier} (answered without a call); live:
tierline_calls_in_flight{provider}, tierline_retries_total{provider,reason},
tierline_rate_limited_total{provider}, tierline_call_latency_seconds{provider,model},
tierline_quota_pauses_total{provider}; set by the driver after the drift checks:
tierline_canary_accuracy{job,deployment,tier}, tierline_shift_delta{job,metric} and
tierline_shift_flagged{job,metric} (1 when the change since the previous run is past
routing.shift_threshold).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from schemas.figures import UnitFigures

Tags = tuple[tuple[str, str], ...]
LATENCY_BUCKETS_S = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120]


class _Noop:
    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        return None

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        return None

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        return None


def _instruments() -> dict[str, Any]:
    noop = _Noop()
    names = ("rows", "spend", "calls", "reused", "in_flight", "retries", "rate_limited",
             "latency", "pauses", "canary_accuracy", "shift_delta", "shift_flagged")  # fmt: skip
    try:
        import ray
        from ray.util.metrics import Counter as RayCounter
        from ray.util.metrics import Gauge, Histogram

        if not ray.is_initialized():
            return dict.fromkeys(names, noop)
    except ImportError:  # pragma: no cover - ray is a dependency
        return dict.fromkeys(names, noop)
    return {
        "rows": RayCounter("tierline_rows_total", "Rows finished.", ("job", "tier", "status")),
        "spend": RayCounter(
            "tierline_spend_usd_total", "Spend in USD.", ("job", "provider", "model")
        ),
        "calls": RayCounter(
            "tierline_calls_total", "Paid calls.", ("job", "tier", "provider", "model")
        ),
        "reused": RayCounter(
            "tierline_reused_rows_total",
            "Rows answered without a call (cache, identical row).",
            ("job", "tier"),
        ),
        "in_flight": Gauge("tierline_calls_in_flight", "Provider calls in flight.", ("provider",)),
        "retries": RayCounter(
            "tierline_retries_total", "Calls retried, by reason.", ("provider", "reason")
        ),
        "rate_limited": RayCounter(
            "tierline_rate_limited_total", "Answers with HTTP 429.", ("provider",)
        ),
        "latency": Histogram(
            "tierline_call_latency_seconds",
            "Provider call latency.",
            boundaries=LATENCY_BUCKETS_S,
            tag_keys=("provider", "model"),
        ),
        "pauses": RayCounter(
            "tierline_quota_pauses_total", "Provider pauses after a 429.", ("provider",)
        ),
        "canary_accuracy": Gauge(
            "tierline_canary_accuracy",
            "Share of the golden set a deployment answered right.",
            ("job", "deployment", "tier"),
        ),
        "shift_delta": Gauge(
            "tierline_shift_delta",
            "Change of a routing share since the previous run.",
            ("job", "metric"),
        ),
        "shift_flagged": Gauge(
            "tierline_shift_flagged",
            "1 when a routing share moved past the threshold since the previous run.",
            ("job", "metric"),
        ),
    }


class Metrics:
    def __init__(self, job_id: str) -> None:
        self.job = job_id
        self.m = _instruments()
        self.in_flight: Counter[str] = Counter()
        self.rate_limited: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self.rows_done = 0
        self.unit_rows = 0  # rows finished in the units in progress

    @contextmanager
    def call(self, provider: str, model: str) -> Iterator[None]:
        self.in_flight[provider] += 1
        self.m["in_flight"].set(self.in_flight[provider], {"provider": provider})
        started = time.monotonic()
        try:
            yield
        finally:
            self.in_flight[provider] -= 1
            self.m["in_flight"].set(self.in_flight[provider], {"provider": provider})
            self.m["latency"].observe(
                time.monotonic() - started, {"provider": provider, "model": model}
            )

    def retry(self, provider: str, reason: str) -> None:
        self.retries[provider] += 1
        self.m["retries"].inc(1.0, {"provider": provider, "reason": reason})

    def limited(self, provider: str) -> None:
        self.rate_limited[provider] += 1
        self.m["rate_limited"].inc(1.0, {"provider": provider})

    def pause(self, provider: str) -> None:
        self.m["pauses"].inc(1.0, {"provider": provider})

    def row(self, tier: str, ok: bool) -> None:
        """A row finished (for the live progress; exported when its unit commits)."""
        self.rows_done += 1
        self.unit_rows += 1

    def committed(self, figures: UnitFigures) -> None:
        """Export a committed unit's figures: the ones its marker carries, so the metrics
        add up to the summary (a unit redone after a crash is counted once)."""
        for (name, tags), value in metric_samples(self.job, figures).items():
            if value:
                self.m[name].inc(value, dict(tags))

    def canary(self, deployment: str, tier: str, accuracy: float) -> None:
        tags = {"job": self.job, "deployment": deployment, "tier": tier}
        self.m["canary_accuracy"].set(accuracy, tags)

    def shift(self, metric: str, delta: float, flagged: bool) -> None:
        self.m["shift_delta"].set(delta, {"job": self.job, "metric": metric})
        self.m["shift_flagged"].set(1.0 if flagged else 0.0, {"job": self.job, "metric": metric})

    def snapshot(self) -> dict[str, Any]:
        return {
            "rows_done": self.rows_done,
            "unit_rows": self.unit_rows,
            "in_flight": dict(self.in_flight),
            "rate_limited": dict(self.rate_limited),
            "retries": dict(self.retries),
        }


def metric_samples(job: str, figures: UnitFigures) -> dict[tuple[str, Tags], float]:
    """The counters one unit's figures add: rows by tier and status, paid calls and
    spend by deployment, reused rows by tier. (instrument, tags) -> increment."""
    out: dict[tuple[str, Tags], float] = {}

    def add(name: str, value: float, **tags: str) -> None:
        key = (name, (("job", job), *sorted(tags.items())))
        out[key] = out.get(key, 0.0) + value

    for tier, t in figures.by_tier.items():
        add("rows", t.rows - t.errors, tier=tier, status="ok")
        add("rows", t.errors, tier=tier, status="error")
        add("reused", t.reused, tier=tier)
    for key, t in figures.by_deployment.items():
        tier, provider, model = ([*key.split("/", 2), "", ""])[:3]
        add("calls", t.calls, tier=tier, provider=provider, model=model)
        add("spend", t.cost_usd, provider=provider, model=model)
    return out
