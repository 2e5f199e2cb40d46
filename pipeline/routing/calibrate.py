"""Thresholds from targets: sweep the threshold over validation rows, keep the curve, pick.

    curve = sweep(quality, cost, outcomes, decision="utility", cascade=False)
    pick(curve, Target(min_quality=0.95)).threshold      # cheapest point at 95% quality
    pick(curve, Target(max_flagship_share=0.2)).threshold

`quality` and `cost` are the router's expectations per row and tier (`RouterModel.options`);
`outcomes` are what each tier really did on those rows. The curve is scored on the real
outcomes (a row whose outcome for the chosen tier is unknown counts its expectation), and
it is stored in the model file, so a run can resolve any target without the data.
Quality is relative: accuracy over the accuracy of sending every row to flagship.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.routing.decide import (
    PRESETS,
    Curve,
    Decision,
    FloatArray,
    IntArray,
    Pick,
    Target,
    choose,
    pick,
)

# Targets, presets and picking live in pipeline.routing.decide (the learned policy needs
# them too); they stay importable from here.
__all__ = [
    "MAX_POINTS",
    "PRESETS",
    "Outcomes",
    "Pick",
    "Target",
    "area_under_curve",
    "candidates",
    "pick",
    "realise",
    "sweep",
]

MAX_POINTS = 400


@dataclass(frozen=True)
class Outcomes:
    """What each tier really did on validation rows (columns cheapest tier first)."""

    correct: FloatArray  # (n, k) 1.0 / 0.0, NaN when unknown
    cost: FloatArray  # (n, k) USD, NaN when unknown
    agree: FloatArray | None = None  # (n,) cheap and mid answers agreed, NaN when unknown


def realise(
    choice: IntArray,
    outcomes: Outcomes,
    quality: FloatArray,
    cost: FloatArray,
    *,
    cascade: bool,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per row: correct (0..1), cost (USD), and whether flagship answered it."""
    rows = np.arange(choice.shape[0])
    flag = outcomes.correct.shape[1] - 1
    correct = _known(outcomes.correct, quality)[rows, choice]
    spent = _known(outcomes.cost, cost)[rows, choice]
    flagship = (choice == flag).astype(np.float64)
    if cascade:
        known_correct = _known(outcomes.correct, quality)
        known_cost = _known(outcomes.cost, cost)
        agree = outcomes.agree if outcomes.agree is not None else np.full(choice.shape, np.nan)
        cheap = choice == 0
        both = known_cost[:, 0] + known_cost[:, 1]
        ok = cheap & (agree == 1.0)
        bad = cheap & (agree == 0.0)
        unknown = cheap & np.isnan(agree)
        correct = np.where(ok, known_correct[:, 0], correct)
        spent = np.where(ok, both, spent)
        correct = np.where(bad, known_correct[:, flag], correct)
        spent = np.where(bad, both + known_cost[:, flag], spent)
        flagship = np.where(bad, 1.0, flagship)
        # Unknown agreement: the router's own expectation for the cascade option.
        correct = np.where(unknown, quality[:, 0], correct)
        spent = np.where(unknown, cost[:, 0], spent)
    return correct, spent, flagship


def _known(values: FloatArray, fallback: FloatArray) -> FloatArray:
    return np.where(np.isnan(values), fallback, values)


def candidates(quality: FloatArray, cost: FloatArray, decision: Decision) -> FloatArray:
    """Thresholds worth trying: every point where some row's choice can change (thinned)."""
    if decision == "threshold":
        points = np.concatenate([quality.ravel(), [0.0, 1.0 + 1e-9]])
    else:
        scale = float(np.mean(cost[:, -1])) or 1.0
        breaks = [np.zeros(1)]
        k = quality.shape[1]
        for a in range(k):
            for b in range(a + 1, k):
                dc = (cost[:, b] - cost[:, a]) / scale
                dq = quality[:, b] - quality[:, a]
                with np.errstate(divide="ignore", invalid="ignore"):
                    lam = np.where(dc > 0, dq / dc, np.nan)
                breaks.append(lam[np.isfinite(lam) & (lam > 0)])
        points = np.concatenate(breaks)
        points = np.concatenate([points, [points.max() * 1.01 + 1e-6]])
    points = np.unique(points)
    if points.size > MAX_POINTS:
        points = np.unique(np.quantile(points, np.linspace(0.0, 1.0, MAX_POINTS)))
    return points


def sweep(
    quality: FloatArray,
    cost: FloatArray,
    outcomes: Outcomes,
    *,
    decision: Decision,
    cascade: bool,
    thresholds: FloatArray | None = None,
) -> Curve:
    """Validation quality, cost and flagship share at each threshold (ascending)."""
    ts = candidates(quality, cost, decision) if thresholds is None else np.sort(thresholds)
    flag = quality.shape[1] - 1
    base_acc = float(np.mean(_known(outcomes.correct, quality)[:, flag])) or 1.0
    base_cost = float(np.mean(_known(outcomes.cost, cost)[:, flag])) or 1.0
    rq, rc, share = [], [], []
    for t in ts:
        choice = choose(quality, cost, float(t), decision)
        correct, spent, flagship = realise(choice, outcomes, quality, cost, cascade=cascade)
        rq.append(float(np.mean(correct)) / base_acc)
        rc.append(float(np.mean(spent)) / base_cost)
        share.append(float(np.mean(flagship)))
    return Curve(
        thresholds=ts.astype(np.float64),
        rel_quality=np.array(rq),
        rel_cost=np.array(rc),
        flagship_share=np.array(share),
    )


def area_under_curve(rel_cost: FloatArray, accuracy: FloatArray) -> float:
    """Area under "best accuracy reachable at normalised cost <= x" for x in 0..1.

    A step function: 0 left of the cheapest point, then the best accuracy of any point at
    or below x (no interpolation between points, so no claim a policy did not make).

    >>> area_under_curve(np.array([0.5, 1.0]), np.array([0.8, 0.9]))
    0.4
    """
    order = np.argsort(rel_cost, kind="stable")
    x = np.clip(np.asarray(rel_cost, dtype=np.float64)[order], 0.0, 1.0)
    y = np.maximum.accumulate(np.asarray(accuracy, dtype=np.float64)[order])
    widths = np.diff(np.concatenate([x, [1.0]]))
    return float(np.sum(widths * y))
