"""Adopt a retrained router only when it predicts better on rows it did not train on.

    train_rows, held = holdout_split(ts.frame.height, share=0.25, seed=0)
    candidate = fit_router(ts.subset(train_rows), options)
    verdict = compare(current, candidate, ts.subset(held), confidence=0.9)
    if verdict.adopt:
        candidate.save("s3://models/router.npz")

The nightly retrain (last night's cascade verdicts as labels) fits a candidate on part of
the rows and holds the rest back. Both routers predict, per held-back row, the chance that
each tier's answer is good enough; a row's score is the Brier score (squared error) of
those predictions against the labels the row carries, averaged over its labelled heads.
The candidate is adopted when the per-row improvement (current's score less the
candidate's, in [-1, 1]) has a mean above zero at the stated confidence, by the betting
bound of `pipeline.routing.bounds` (a one-sided finite-sample test; rows are shuffled
first, so their order says nothing of their values). The current router has not seen
last night's rows either, so neither side is scored on its own training data.

A better-calibrated probability is what the thresholds and presets rest on; a candidate
that is no better with confidence keeps the current router, whatever its point estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.routing.bounds import betting_lower, betting_rejects
from pipeline.routing.learned import RouterModel
from pipeline.routing.train import TEXT, TrainingDataError, TrainingSet, label_column

MIN_HELD_ROWS = 30


@dataclass(frozen=True, slots=True)
class Adoption:
    """What the comparison found, in words fit for a nightly log."""

    adopt: bool
    rows: int  # held-back rows with at least one label both routers predict
    heads: tuple[str, ...]
    brier_current: float
    brier_candidate: float
    improvement_lower: float  # (confidence) lower bound on the mean per-row improvement
    confidence: float
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {
            "adopt": self.adopt,
            "rows": self.rows,
            "heads": list(self.heads),
            "brier_current": round(self.brier_current, 6),
            "brier_candidate": round(self.brier_candidate, 6),
            "improvement_lower": round(self.improvement_lower, 6),
            "confidence": self.confidence,
            "reason": self.reason,
        }


def holdout_split(n: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices to train on and to hold back (a random `share` of them)."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"--holdout must be between 0 and 1, not {share}")
    order = np.random.default_rng(seed).permutation(n)
    held = max(1, round(share * n))
    return np.sort(order[held:]), np.sort(order[:held])


def compare(
    current: RouterModel,
    candidate: RouterModel,
    held: TrainingSet,
    *,
    confidence: float = 0.9,
    seed: int = 0,
) -> Adoption:
    """Score both routers on the held-back rows (see the module doc)."""
    if current.tiers != candidate.tiers:
        raise TrainingDataError(
            f"the current router is for {current.tiers}, the new one for {candidate.tiers}: "
            "they route to different models and cannot be compared; train with the same --tiers"
        )
    heads = tuple(h for h in candidate.heads if h in current.heads)
    frame = held.frame
    p_cur, p_new = current.predict(frame, TEXT), candidate.predict(frame, TEXT)
    labels = {h: frame[label_column(h)].cast(float).to_numpy() for h in heads}
    gain_sum, cur_sum, new_sum = (np.zeros(frame.height) for _ in range(3))
    count = np.zeros(frame.height)
    for h in heads:
        y = labels[h]
        known = ~np.isnan(y)
        cur = (p_cur[h] - np.nan_to_num(y)) ** 2
        new = (p_new[h] - np.nan_to_num(y)) ** 2
        cur_sum += np.where(known, cur, 0.0)
        new_sum += np.where(known, new, 0.0)
        gain_sum += np.where(known, cur - new, 0.0)
        count += known
    rows = count > 0
    n = int(rows.sum())
    if n < MIN_HELD_ROWS:
        return Adoption(
            False, n, heads, float("nan"), float("nan"), float("nan"), confidence,
            f"kept the current router: {n} held-back labelled rows, at least "
            f"{MIN_HELD_ROWS} are needed to compare",
        )  # fmt: skip
    gain = gain_sum[rows] / count[rows]  # per row, in [-1, 1]
    x = (gain[np.random.default_rng(seed).permutation(n)] + 1.0) / 2.0
    delta = 1.0 - confidence
    better = bool(betting_rejects(x, 0.5, delta)[0])
    lower = float(betting_lower(x, delta)[0]) * 2.0 - 1.0
    b_cur = float((cur_sum[rows] / count[rows]).mean())
    b_new = float((new_sum[rows] / count[rows]).mean())
    if better:
        reason = (
            f"adopted: Brier {b_new:.4f} against {b_cur:.4f} on {n} held-back rows; the "
            f"improvement is above 0 with confidence {confidence:g}"
        )
    else:
        reason = (
            f"kept the current router: Brier {b_new:.4f} against {b_cur:.4f} on {n} held-back "
            f"rows is not better with confidence {confidence:g}"
        )
    return Adoption(better, n, heads, b_cur, b_new, lower, confidence, reason)
