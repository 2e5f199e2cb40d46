"""The learned side of the tuner: every head a learned policy may use, cross-fitted on the
training rows, and the router model file of a learned pick.

    heads = cross_fitted(data, models, "gpt-4", features=(), folds=5, seed=0)
    probs = heads.oof_probs()                        # head name -> out-of-fold P per row
    model = heads.router(policy, tier_cost)          # RouterModel, refitted on all rows
    probs = router_probs(model, policy, test_rows)   # the same heads on other rows

Head names: a model's name (its answer is right), `agree:a|b` (a and b give the same
answer) and `agree_ok:a|b` (they agree and a is right), as pipeline.routing.policies reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from pipeline.routing.decide import AGREE, AGREE_OK, FloatArray
from pipeline.routing.features import FeatureSpec, featurize, fit_features
from pipeline.routing.heads import HeadFit, fit_heads
from pipeline.routing.learned import RouterModel
from pipeline.routing.policies import Policy, agree_head, agree_ok_head, learned_tier_sets
from pipeline.routing.recorded import RecordedAnswers

N_TEXT = 2**18
NGRAM_MAX = 2


@dataclass(frozen=True)
class TunerHeads:
    names: list[str]
    fit: HeadFit
    spec: FeatureSpec
    source: str

    def oof_probs(self) -> dict[str, FloatArray]:
        return {h: self.fit.oof[:, i] for i, h in enumerate(self.names)}

    def router(self, policy: Policy, tier_cost: Mapping[str, float]) -> RouterModel:
        """A learned policy as a router model: its heads refitted on all training rows,
        with the Platt scaling their cross-fitted scores were given."""
        tiers = policy.tiers()
        wanted = dict(tiers)
        cascade = policy.kind == "learned+agree"
        if cascade:
            wanted[AGREE] = agree_head(*policy.models[:2])
            wanted[AGREE_OK] = agree_ok_head(*policy.models[:2])
        return RouterModel(
            tiers=tiers,
            features=self.spec,
            heads={k: self.fit.final_head(self.names.index(h)) for k, h in wanted.items()},
            tier_cost=dict(tier_cost),
            decision="utility",
            cascade=cascade,
            threshold=policy.threshold,
            info={"source": self.source, "rows": int(self.fit.x.shape[0]), "tuned": policy.name},
        )


def _features(data: RecordedAnswers, features: Sequence[str]) -> tuple[FeatureSpec, sp.csr_matrix]:
    with_parts = data.with_text_parts(N_TEXT, NGRAM_MAX)
    meta = with_parts.meta_frame(features) if features else pl.DataFrame()
    parts = with_parts.parts
    spec = fit_features(meta, "", list(features), n_text=N_TEXT, shape=True, parts=parts)
    return spec, featurize(meta, "", spec, parts=parts)


def cross_fitted(
    data: RecordedAnswers,
    models: Sequence[str],
    flagship: str,
    *,
    features: Sequence[str],
    folds: int,
    seed: int,
) -> TunerHeads | None:
    """Every head a learned policy over `models` may use; None without text or rows."""
    if data.texts is None or data.n < 4 * folds:
        return None
    cols = {m: data.model_index(m) for m in models}
    cost = {m: float(data.cost[:, cols[m]].mean()) for m in models}
    labels: dict[str, FloatArray] = {}
    for tiers in learned_tier_sets(list(models), flagship, cost):
        for m in tiers:
            labels[m] = data.correct[:, cols[m]]
        if len(tiers) == 3:
            a, b = tiers[:2]
            ans_a, ans_b = data.answers[:, cols[a]], data.answers[:, cols[b]]
            same = ((ans_a == ans_b) & (ans_a >= 0)).astype(np.float64)
            labels[agree_head(a, b)] = same
            labels[agree_ok_head(a, b)] = same * data.correct[:, cols[a]]
    if not labels:
        return None
    spec, x = _features(data, features)
    names = list(labels)
    fit = fit_heads(x, np.column_stack([labels[h] for h in names]), folds=folds, seed=seed)
    return TunerHeads(names, fit, spec, data.source)


def router_probs(
    router: RouterModel, policy: Policy, data: RecordedAnswers, features: Sequence[str] = ()
) -> dict[str, FloatArray]:
    """The router's heads on other rows, named as the tuner names them."""
    spec = router.features
    parts = data.with_text_parts(spec.n_text, spec.ngram_max).parts
    meta = data.meta_frame(features) if features else pl.DataFrame()
    x = featurize(meta, "", spec, parts=parts)
    probs = {model: router.heads[tier].predict(x) for tier, model in router.tiers.items()}
    if router.cascade:
        probs[agree_head(*policy.models[:2])] = router.heads[AGREE].predict(x)
        probs[agree_ok_head(*policy.models[:2])] = router.heads[AGREE_OK].predict(x)
    return probs
