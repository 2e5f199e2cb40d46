"""Live counters of a worker, and the same figures as Prometheus metrics through Ray.

    m = Metrics(job_id="nightly-tickets-3f2a9c1b7e")   # no-op outside a Ray process
    with m.call("openai", "gpt-4o"):
        ...                                            # in flight, then latency observed
    m.snapshot()                                       # what the driver's progress shows

Exported names (Ray adds the `ray_` prefix on its metrics port; see infra/grafana):
tierline_rows_total{job,tier,status}, tierline_spend_usd_total{job,provider,model},
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
    names = ("rows", "spend", "in_flight", "retries", "rate_limited", "latency", "pauses",
             "canary_accuracy", "shift_delta", "shift_flagged")  # fmt: skip
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
        self.rows_done += 1
        self.unit_rows += 1
        self.m["rows"].inc(
            1.0, {"job": self.job, "tier": tier or "none", "status": "ok" if ok else "error"}
        )

    def spend(self, provider: str, model: str, usd: float) -> None:
        if usd > 0:
            self.m["spend"].inc(usd, {"job": self.job, "provider": provider, "model": model})

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
