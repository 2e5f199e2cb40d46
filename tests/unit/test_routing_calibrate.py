"""Threshold calibration on synthetic scores: targets are met, and met as cheaply as the
curve allows."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.routing.calibrate import (
    PRESETS,
    Outcomes,
    Target,
    area_under_curve,
    pick,
    realise,
    sweep,
)
from pipeline.routing.learned import choose

COST = np.array([1.0, 2.0, 20.0])


def synthetic(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, Outcomes]:
    """Scores that are informative: outcomes are drawn from the scores themselves."""
    rng = np.random.default_rng(seed)
    difficulty = rng.uniform(0, 1, n)
    quality = np.column_stack(
        [
            np.clip(1.0 - difficulty * 0.9, 0, 1),
            np.clip(1.0 - difficulty * 0.6, 0, 1),
            np.clip(1.0 - difficulty * 0.2, 0, 1),
        ]
    )
    correct = (rng.uniform(0, 1, quality.shape) < quality).astype(np.float64)
    cost = np.tile(COST, (n, 1))
    return quality, cost, Outcomes(correct=correct, cost=cost.copy())


def _realised(quality: np.ndarray, cost: np.ndarray, out: Outcomes, t: float, decision: str):
    choice = choose(quality, cost, t, decision)  # type: ignore[arg-type]
    correct, spent, flagship = realise(choice, out, quality, cost, cascade=False)
    return (
        correct.mean() / out.correct[:, 2].mean(),
        spent.mean() / out.cost[:, 2].mean(),
        flagship.mean(),
    )


@pytest.mark.parametrize("decision", ["threshold", "utility"])
@pytest.mark.parametrize("share", [0.05, 0.2, 0.5])
def test_max_flagship_share_is_met_with_the_best_quality(decision: str, share: float) -> None:
    quality, cost, out = synthetic()
    curve = sweep(quality, cost, out, decision=decision, cascade=False)  # type: ignore[arg-type]
    got = pick(curve, Target(max_flagship_share=share))
    assert got.met
    q, c, s = _realised(quality, cost, out, got.threshold, decision)
    assert s <= share and s == pytest.approx(got.flagship_share)
    assert q == pytest.approx(got.rel_quality) and c == pytest.approx(got.rel_cost)
    # Nothing on the curve within the cap is better.
    within = curve.flagship_share <= share
    assert got.rel_quality == pytest.approx(curve.rel_quality[within].max())
    # The cap binds: the share is close to it (the scores are continuous).
    assert s > share - 0.05


@pytest.mark.parametrize("decision", ["threshold", "utility"])
@pytest.mark.parametrize("floor", [0.8, 0.9, 0.97])
def test_min_quality_is_met_at_the_lowest_cost(decision: str, floor: float) -> None:
    quality, cost, out = synthetic()
    curve = sweep(quality, cost, out, decision=decision, cascade=False)  # type: ignore[arg-type]
    got = pick(curve, Target(min_quality=floor))
    assert got.met
    q, c, _ = _realised(quality, cost, out, got.threshold, decision)
    assert q >= floor and q == pytest.approx(got.rel_quality)
    meeting = curve.rel_quality >= floor
    assert c == pytest.approx(curve.rel_cost[meeting].min())
    assert c < 1.0  # cheaper than all-flagship


def test_unreachable_target_takes_the_closest_point() -> None:
    quality, cost, out = synthetic(n=500)
    curve = sweep(quality, cost, out, decision="threshold", cascade=False)
    got = pick(curve, Target(min_quality=1.4))
    assert not got.met and got.rel_quality == pytest.approx(curve.rel_quality.max())
    got = pick(curve, Target(max_flagship_share=-0.0))
    assert got.flagship_share == pytest.approx(curve.flagship_share.min())


def test_presets_order_cost_to_quality() -> None:
    quality, cost, out = synthetic()
    curve = sweep(quality, cost, out, decision="utility", cascade=False)
    picks = {name: pick(curve, target) for name, target in PRESETS.items()}
    assert picks["cost"].rel_cost <= picks["balanced"].rel_cost <= picks["quality"].rel_cost
    assert picks["balanced"].rel_quality >= 0.95 and picks["quality"].rel_quality >= 0.98


def test_cascade_realises_agreement_and_escalation() -> None:
    quality = np.array([[0.9, 0.8, 0.95]] * 3)
    cost = np.tile(COST, (3, 1))
    out = Outcomes(
        correct=np.array([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]),
        cost=cost.copy(),
        agree=np.array([1.0, 0.0, np.nan]),
    )
    correct, spent, flagship = realise(np.zeros(3, np.int64), out, quality, cost, cascade=True)
    # Row 0 agreed: cheap's answer, cheap + mid paid. Row 1 disagreed: flagship's answer,
    # all three paid. Row 2 unknown: the router's expectation for the option.
    assert correct.tolist() == [1.0, 1.0, 0.9]
    assert spent.tolist() == [3.0, 23.0, 1.0]
    assert flagship.tolist() == [0.0, 1.0, 0.0]


def test_unknown_outcomes_count_their_expectation() -> None:
    quality = np.array([[0.7, 0.8, 0.9]])
    out = Outcomes(correct=np.array([[np.nan, 1.0, 1.0]]), cost=np.array([[np.nan, 2.0, 20.0]]))
    correct, spent, _ = realise(np.array([0]), out, quality, np.array([COST]), cascade=False)
    assert correct.tolist() == [0.7] and spent.tolist() == [1.0]


def test_target_parsing() -> None:
    assert Target.parse({"min_quality": 0.95}) == Target(min_quality=0.95)
    assert Target.parse(Target(max_flagship_share=0.1)).max_flagship_share == 0.1
    with pytest.raises(ValueError, match="exactly one"):
        Target.parse({"min_quality": 0.9, "max_flagship_share": 0.1})
    with pytest.raises(ValueError, match="exactly one"):
        Target()
    with pytest.raises(ValueError, match="unknown target"):
        Target.parse({"max_quality": 0.9})
    with pytest.raises(ValueError, match="out of range"):
        Target(max_flagship_share=2.0)


def test_area_under_curve() -> None:
    assert area_under_curve(np.array([0.5, 1.0]), np.array([0.8, 0.9])) == pytest.approx(0.4)
    # A dearer, worse point adds nothing; costs past flagship's are clipped.
    assert area_under_curve(np.array([0.5, 0.7, 1.2]), np.array([0.8, 0.6, 0.9])) == (
        pytest.approx(0.4)
    )
    assert area_under_curve(np.array([0.0]), np.array([0.9])) == pytest.approx(0.9)
