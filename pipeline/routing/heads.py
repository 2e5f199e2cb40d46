"""Many router heads at once, cross-fitted: every training row gets a probability from a
model that never saw it, for every head the tuner may need (one per model, two per
agreement pair), and any head can be turned into a `Head` for a router model file.

    fit = fit_heads(x, labels, folds=5, seed=0)         # x: featurize(...); labels (n, H)
    fit.oof[:, h]                                       # out-of-fold P(label h) per row
    head = fit.final_head(h)                            # fitted on every row, Platt-scaled

Each head is a ridge regression on the router's features (the sparse tf-idf + length +
shape block, plus a constant), solved in its dual form: one n x n kernel serves every head
and fold, so a hundred heads cost about one (0.2-0.5 s on 1,300 rows, where liblinear
logistic regressions took about 0.1 s per head and fold). Scores become probabilities by
Platt scaling fitted on the out-of-fold scores; the deployed head is the same affine map
inside a sigmoid, so `Head.predict` gives what the tuner measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from pipeline.routing.decide import FloatArray
from pipeline.routing.learned import Head

RIDGE = 1.0  # L2 strength on the unit-norm tf-idf rows; 0.3-3 give the same AUC here


@dataclass(frozen=True)
class HeadFit:
    x: sp.csr_matrix  # (n, width) training features
    kernel: FloatArray  # (n, n) x x' + 1
    labels: FloatArray  # (n, H) 0/1
    oof: FloatArray  # (n, H) cross-fitted probabilities
    platt: FloatArray  # (H, 2) slope and intercept from score to log-odds
    ridge: float

    @cached_property
    def _factor(self) -> tuple[FloatArray, bool]:
        a = self.kernel + self.ridge * np.eye(self.kernel.shape[0])
        with _one_blas_thread():
            return la.cho_factor(a)

    def final_head(self, h: int) -> Head:
        """Head h fitted on every training row, in the model file's form."""
        alpha = la.cho_solve(self._factor, self.labels[:, h])
        coef = np.asarray(self.x.T @ alpha).ravel()
        slope, offset = self.platt[h]
        # The constant feature's weight is the sum of the dual coefficients.
        return Head(coef * slope, float(slope * alpha.sum() + offset))


def _kernel(x: sp.csr_matrix) -> FloatArray:
    """x x' + 1 (the 1: a constant feature, so every head has an intercept).

    Columns most rows share (n-grams of a prompt template, the shape block) go through a
    dense BLAS product, the rest stay sparse: 0.05 s instead of 0.7 s on 1,300 rows whose
    prompts share a few-shot prefix.
    """
    n = x.shape[0]
    doc_freq = np.bincount(x.indices, minlength=x.shape[1])
    common = doc_freq > max(0.01 * n, 2)
    xc = x.tocsc()
    dense = xc[:, np.flatnonzero(common)].toarray()
    rare = sp.csr_matrix(xc[:, np.flatnonzero(~common)])
    return np.asarray(dense @ dense.T + (rare @ rare.T).toarray(), dtype=np.float64) + 1.0


def _one_blas_thread() -> threadpool_limits:
    # One BLAS thread: these matrices are small (n below ~5,000), and on a busy machine
    # OpenBLAS threads spinning for a core made a tuning run 20x slower (7.8 s, not 0.35 s).
    return threadpool_limits(limits=1, user_api="blas")


def _solve(kernel: FloatArray, y: FloatArray, ridge: float) -> FloatArray:
    # Cholesky: kernel + ridge I is positive definite.
    a = kernel + ridge * np.eye(kernel.shape[0])
    return np.asarray(la.cho_solve(la.cho_factor(a), y), dtype=np.float64)


def fit_heads(
    x: sp.csr_matrix, labels: FloatArray, *, folds: int, seed: int, ridge: float = RIDGE
) -> HeadFit:
    """Cross-fitted probabilities for every label column (rows in `folds` random folds)."""
    with _one_blas_thread():
        return _fit_heads(x, labels, folds=folds, seed=seed, ridge=ridge)


def _fit_heads(
    x: sp.csr_matrix, labels: FloatArray, *, folds: int, seed: int, ridge: float
) -> HeadFit:
    n = x.shape[0]
    kernel = _kernel(x)
    scores = np.zeros(labels.shape)
    k = max(2, min(folds, n))
    fold_of = np.random.default_rng(seed).permutation(n) % k
    for f in range(k):
        val, tr = np.flatnonzero(fold_of == f), np.flatnonzero(fold_of != f)
        alpha = _solve(kernel[np.ix_(tr, tr)], labels[tr], ridge)
        scores[val] = kernel[np.ix_(val, tr)] @ alpha
    platt = platt_fit(scores, labels)
    oof = _sigmoid(scores * platt[:, 0] + platt[:, 1])
    return HeadFit(x, kernel, labels, oof, platt, ridge)


def _sigmoid(z: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0))), dtype=np.float64)


def platt_fit(scores: FloatArray, labels: FloatArray, iterations: int = 25) -> FloatArray:
    """Per column, (slope, intercept) of the logistic fit of labels on scores (Newton,
    vectorised over columns; a small ridge keeps separable columns finite)."""
    h = scores.shape[1]
    rate = np.clip(labels.mean(axis=0), 1e-3, 1 - 1e-3)
    params = np.column_stack([np.zeros(h), np.log(rate / (1 - rate))])
    for _ in range(iterations):
        p = _sigmoid(scores * params[:, 0] + params[:, 1])
        w = p * (1 - p)
        r = p - labels
        g0 = (r * scores).sum(axis=0) + 1e-3 * params[:, 0]
        g1 = r.sum(axis=0)
        h00 = (w * scores * scores).sum(axis=0) + 1e-3
        h01 = (w * scores).sum(axis=0)
        h11 = w.sum(axis=0) + 1e-9
        det = h00 * h11 - h01 * h01
        params[:, 0] -= (h11 * g0 - h01 * g1) / det
        params[:, 1] -= (h00 * g1 - h01 * g0) / det
    constant = labels.std(axis=0) == 0
    params[constant] = np.column_stack([np.zeros(h), np.log(rate / (1 - rate))])[constant]
    return params
