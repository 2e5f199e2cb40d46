"""Per-request behaviour: which settings apply to a model, how long to wait, which fault.

    behaviour = Behaviour(config)
    plan = behaviour.plan("gpt-x", prompt=prompt_id(...), occurrence=0)
    plan.delay_s, plan.fault            # 0.051, 503 | "hang" | "reset" | None

Draws are stable hashes of (seed, prompt, occurrence): the n-th time a given prompt
arrives it meets the same fate whatever else is in flight, so fault counts do not depend
on arrival order, and a retry (the next occurrence) draws afresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from pipeline.sim.generate import stable_fraction
from schemas.sim import ExtractFaults, Faults, Latency, SimConfig

Fault = int | Literal["hang", "reset"]
_MODEL_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """The settings that apply to one model name, resolved once and cached."""

    latency: Latency
    faults: Faults
    accuracy: float
    thresholds: tuple[tuple[float, Fault], ...]
    extract: ExtractFaults


@dataclass(frozen=True, slots=True)
class ReplyPlan:
    """What to do with one request."""

    settings: ModelSettings
    delay_s: float
    fault: Fault | None


def _thresholds(faults: Faults) -> tuple[tuple[float, Fault], ...]:
    steps: list[tuple[float, Fault]] = []
    edge = 0.0
    outcomes: list[tuple[float, Fault]] = [(faults.hang_rate, "hang"), (faults.reset_rate, "reset")]
    outcomes += [(rate, status) for status, rate in sorted(faults.error_rates.items())]
    for rate, outcome in outcomes:
        if rate > 0:
            edge += rate
            steps.append((edge, outcome))
    return tuple(steps)


class Behaviour:
    """Model settings and per-request draws for one `SimConfig`."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self._cache: dict[str, ModelSettings] = {}
        self._globs = [p for p in config.models if any(ch in p for ch in "*?[")]

    def settings(self, model: str) -> ModelSettings:
        found = self._cache.get(model)
        if found is None:
            if len(self._cache) >= _MODEL_CACHE_SIZE:
                self._cache.clear()
            found = self._cache[model] = self._resolve(model)
        return found

    def _resolve(self, model: str) -> ModelSettings:
        config = self.config
        override = config.models.get(model)
        if override is None:
            pattern = next((p for p in self._globs if fnmatchcase(model, p)), None)
            override = config.models[pattern] if pattern is not None else None
        latency, faults, accuracy = config.latency, config.faults, config.accuracy
        extract = config.extract
        if override is not None:
            latency = override.latency or latency
            faults = override.faults or faults
            accuracy = override.accuracy if override.accuracy is not None else accuracy
            extract = override.extract or extract
        return ModelSettings(latency, faults, accuracy, _thresholds(faults), extract)

    def plan(self, model: str, *, prompt: int, occurrence: int) -> ReplyPlan:
        settings = self.settings(model)
        seed = self.config.seed
        latency = settings.latency
        delay_ms = latency.mean_ms
        if latency.jitter_ms:
            spread = stable_fraction(seed, prompt, occurrence, "latency") * 2.0 - 1.0
            delay_ms += spread * latency.jitter_ms
        if (
            latency.slow_rate
            and stable_fraction(seed, prompt, occurrence, "slow") < latency.slow_rate
        ):
            delay_ms = latency.slow_ms
        fault: Fault | None = None
        if settings.thresholds:
            draw = stable_fraction(seed, prompt, occurrence, "fault")
            fault = next((f for edge, f in settings.thresholds if draw < edge), None)
        return ReplyPlan(settings, max(0.0, delay_ms) / 1000.0, fault)
