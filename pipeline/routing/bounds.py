"""Finite-sample lower confidence bounds on a mean, and how many rows a bound would need.

    clopper_pearson_lower(successes=850, n=1000, delta=0.1)     # exact binomial, 0.8335...
    betting_lower(x, delta=0.1)                                 # x in [0, 1], one row per policy
    rows_needed_betting(x_row, null=0.487, delta=0.1)           # rows for `rejects` to hold

`clopper_pearson_lower` is for 0/1 outcomes (accuracy against an absolute target).
`betting_lower` is for any variable in [0, 1] (the tuner's per-row "policy minus target
share of flagship", rescaled), and keeps the power of a paired comparison: Waudby-Smith &
Ramdas (2024), "Estimating means of bounded random variables by betting", hedged capital
with predictable plug-in bets, one-sided. For a fixed mean m the capital
K_t(m) = prod_{i<=t} (1 + lambda_i (x_i - m)) is a non-negative supermartingale when the
true mean is at most m, so by Ville's inequality P(max_t K_t(m) >= 1/delta) <= delta:
every m the capital reaches 1/delta is ruled out. Rows must come in an order independent
of their values (the tuner shuffles them). Vectorised over many sequences at once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import beta

from pipeline.routing.decide import FloatArray

# Bets are capped at BET_CAP / m so a factor 1 + lambda (x - m) never falls below 1 - BET_CAP.
BET_CAP = 0.75
MAX_ROWS = 10_000_000


def clopper_pearson_lower(successes: FloatArray | int, n: int, delta: float) -> FloatArray:
    """Exact one-sided (1 - delta) lower bound on a binomial proportion; 0 for 0 successes."""
    k = np.asarray(successes, dtype=np.float64)
    if n <= 0:
        return np.zeros_like(k)
    with np.errstate(invalid="ignore"):
        low = beta.ppf(delta, k, n - k + 1.0)
    return np.where(k > 0, np.nan_to_num(low), 0.0)


def _base_bets(x: FloatArray, delta: float) -> FloatArray:
    """Predictable plug-in bets (before the cap), from the rows before each row."""
    n = x.shape[-1]
    t = np.arange(1, n + 1, dtype=np.float64)
    mu = (0.5 + np.cumsum(x, axis=-1)) / (t + 1.0)
    # Running variance around the running mean, regularised by 1/4 as in the paper.
    prev_mu = np.concatenate([np.full((*x.shape[:-1], 1), 0.5), mu[..., :-1]], axis=-1)
    var = (0.25 + np.cumsum((x - prev_mu) ** 2, axis=-1)) / (t + 1.0)
    prev_var = np.concatenate([np.full((*x.shape[:-1], 1), 0.25), var[..., :-1]], axis=-1)
    return np.sqrt(2.0 * np.log(1.0 / delta) / (n * prev_var))


def _log_capital_max(x: FloatArray, bets: FloatArray, m: FloatArray) -> FloatArray:
    lam = np.minimum(bets, BET_CAP / np.maximum(m, 1e-12)[..., None])
    log_k = np.cumsum(np.log1p(lam * (x - m[..., None])), axis=-1)
    return np.maximum(log_k.max(axis=-1), 0.0)


def betting_rejects(x: FloatArray, null: float | FloatArray, delta: float) -> FloatArray:
    """True where the data rule out "mean <= null" at level delta (x: (..., n) in [0, 1])."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    m = np.broadcast_to(np.asarray(null, dtype=np.float64), x.shape[:-1]).copy()
    if x.shape[-1] == 0:
        return np.zeros(x.shape[:-1], dtype=bool)
    return _log_capital_max(x, _base_bets(x, delta), m) >= np.log(1.0 / delta)


def betting_lower(x: FloatArray, delta: float, iterations: int = 40) -> FloatArray:
    """(1 - delta) lower confidence bound on the mean of each row of x (values in [0, 1]).

    The capital falls as m rises (every factor does), so the bound is found by bisection:
    the smallest m the capital does not rule out.
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if x.shape[-1] == 0:
        return np.zeros(x.shape[:-1])
    bets = _base_bets(x, delta)
    lo = np.zeros(x.shape[:-1])
    hi = x.mean(axis=-1)  # the bound is never above the sample mean's neighbourhood
    hi = np.minimum(hi + 1e-9, 1.0)
    target = np.log(1.0 / delta)
    for _ in range(iterations):
        mid = (lo + hi) / 2.0
        ruled_out = _log_capital_max(x, bets, mid) >= target
        lo = np.where(ruled_out, mid, lo)
        hi = np.where(ruled_out, hi, mid)
    return lo


def rows_needed_cp(rate: float, target: float, delta: float) -> int | None:
    """Fewest rows at which an observed accuracy `rate` would have a Clopper-Pearson lower
    bound of at least `target`; None when the rate does not exceed the target."""
    if rate <= target:
        return None

    def ok(n: int) -> bool:
        return bool(clopper_pearson_lower(np.floor(rate * n), n, delta) >= target)

    return _smallest(ok)


def rows_needed_betting(
    x: FloatArray, null: float, delta: float, seed: int = 0, draws: int = 15
) -> int | None:
    """About how many rows distributed like `x` (one sequence) the betting test needs to
    rule out "mean <= null": the fewest at which it does so in at least half of `draws`
    random samples (one lucky order proves nothing). None when x's mean is not above null.

    Longer samples are drawn by repeating x in fresh shuffles, so the answer is the rows
    this data's own spread needs, not a normal approximation's.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size == 0 or float(x.mean()) <= null:
        return None

    def ok(n: int) -> bool:
        rng = np.random.default_rng(seed)  # the same draws at every n: a smooth search
        reps = -(-n // x.size)
        seqs = np.stack(
            [np.concatenate([rng.permutation(x) for _ in range(reps)])[:n] for _ in range(draws)]
        )
        return bool(np.mean(betting_rejects(seqs, null, delta)) >= 0.5)

    return _smallest(ok)


def _smallest(ok: Callable[[int], bool]) -> int | None:
    """Smallest n in [1, MAX_ROWS] with ok(n), by doubling then bisection."""
    n = 8
    while not ok(n):
        n *= 2
        if n > MAX_ROWS:
            return None
    lo, hi = n // 2, n
    while hi - lo > max(1, lo // 100):  # 1% resolution is plenty for "label about N more"
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi
