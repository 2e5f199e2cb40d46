"""How a learned router turns per-tier expectations into one tier per row, and how a target
picks a threshold on a validation curve. Shared by the policy, calibration and the tuner.

    quality, cost = expected_options(probs, tier_cost, ["cheap", "mid", "flagship"])
    choice = choose(quality, cost, threshold=0.3, decision="utility")   # tier index per row
    pick(curve, Target(min_quality=0.95)).threshold

Plain numpy, no state: every caller (the engine's `learned` policy, `calibrate.sweep`,
`tune`) decides exactly the same way for the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Decision = Literal["threshold", "utility"]
FloatArray = np.ndarray[Any, np.dtype[np.float64]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]
TIERS: tuple[str, ...] = ("cheap", "mid", "flagship")
AGREE, AGREE_OK = "agree", "agree_correct"


def expected_options(
    probs: Mapping[str, FloatArray],
    tier_cost: Mapping[str, float],
    names: Sequence[str],
    *,
    cascade: bool = False,
) -> tuple[FloatArray, FloatArray]:
    """Expected quality and cost (USD) per row and tier, columns in `names` order.

    With `cascade`, the cheapest column is "ask cheap and mid; keep cheap's answer when
    they agree, else flagship's", which is what the engine's `cascade.agree` does.
    """
    quality = np.column_stack([probs[t] for t in names])
    cost = np.tile(np.array([tier_cost[t] for t in names]), (quality.shape[0], 1))
    if cascade:
        agree, agree_ok = probs[AGREE], probs[AGREE_OK]
        quality[:, 0] = agree_ok + (1.0 - agree) * probs["flagship"]
        cost[:, 0] = tier_cost["cheap"] + tier_cost["mid"] + (1.0 - agree) * tier_cost["flagship"]
    return quality, cost


def choose(quality: FloatArray, cost: FloatArray, threshold: float, decision: Decision) -> IntArray:
    """Index of the chosen tier per row (columns cheapest first; ties go to the cheaper).

    >>> q = np.array([[0.9, 0.95, 0.97], [0.5, 0.6, 0.8]])
    >>> choose(q, np.array([[1.0, 2.0, 10.0]] * 2), 0.85, "threshold").tolist()
    [0, 2]
    """
    if decision == "threshold":
        clears = quality >= threshold
        first = np.argmax(clears, axis=1)
        return np.where(clears.any(axis=1), first, np.argmax(quality, axis=1)).astype(np.int64)
    if decision == "utility":
        scale = float(np.mean(cost[:, -1])) or 1.0
        return np.argmax(quality - threshold * cost / scale, axis=1).astype(np.int64)
    raise ValueError(f"unknown decision rule {decision!r}; known: threshold, utility")


@dataclass(frozen=True)
class Curve:
    """Validation outcomes of a sweep of thresholds (what targets are resolved against)."""

    thresholds: FloatArray
    rel_quality: FloatArray  # accuracy / all-flagship accuracy on the same rows
    rel_cost: FloatArray  # cost / all-flagship cost
    flagship_share: FloatArray  # rows whose answer needed a flagship call


@dataclass(frozen=True)
class Target:
    """Exactly one of: a cap on the share of rows that reach flagship, or a quality floor."""

    max_flagship_share: float | None = None
    min_quality: float | None = None

    def __post_init__(self) -> None:
        if (self.max_flagship_share is None) == (self.min_quality is None):
            raise ValueError("a target is exactly one of max_flagship_share or min_quality")
        value = self.max_flagship_share if self.min_quality is None else self.min_quality
        if value is None or not 0.0 <= value <= 1.5:
            raise ValueError(f"target value {value!r} is out of range")

    @classmethod
    def parse(cls, obj: object) -> Target:
        """From a mapping (`{min_quality: 0.95}`) or any object with those attributes."""
        if isinstance(obj, Target):
            return obj
        if isinstance(obj, dict):
            unknown = set(obj) - {"max_flagship_share", "min_quality"}
            if unknown:
                raise ValueError(f"unknown target field(s): {', '.join(sorted(unknown))}")
            return cls(**obj)
        return cls(
            max_flagship_share=getattr(obj, "max_flagship_share", None),
            min_quality=getattr(obj, "min_quality", None),
        )


# What `optimize: cost | balanced | quality` means, as targets on the validation curve.
PRESETS: dict[str, Target] = {
    "cost": Target(min_quality=0.90),
    "balanced": Target(min_quality=0.95),
    "quality": Target(min_quality=0.98),
}


@dataclass(frozen=True)
class Pick:
    threshold: float
    rel_quality: float
    rel_cost: float
    flagship_share: float
    met: bool  # False: no point reached the target; the closest one was taken

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "rel_quality": self.rel_quality,
            "rel_cost": self.rel_cost,
            "flagship_share": self.flagship_share,
            "target_met": self.met,
        }


def pick(curve: Curve, target: Target) -> Pick:
    """The curve point that meets `target` most cheaply (or the closest, `met=False`).

    max_flagship_share: the best quality among points within the share cap.
    min_quality: the lowest cost among points at or above the quality floor.
    """
    q, c, s = curve.rel_quality, curve.rel_cost, curve.flagship_share
    if target.max_flagship_share is not None:
        ok = s <= target.max_flagship_share + 1e-12
        # Best quality first, then lower cost: lexsort keys are last-major.
        order = np.lexsort((c, -q)) if ok.any() else np.lexsort((c, s))
        best = next(int(i) for i in order if ok[i] or not ok.any())
    else:
        floor = float(target.min_quality)  # type: ignore[arg-type]
        ok = q >= floor - 1e-12
        order = np.lexsort((-q, c)) if ok.any() else np.lexsort((c, -q))
        best = next(int(i) for i in order if ok[i] or not ok.any())
    return Pick(
        threshold=float(curve.thresholds[best]),
        rel_quality=float(q[best]),
        rel_cost=float(c[best]),
        flagship_share=float(s[best]),
        met=bool(ok.any()),
    )
