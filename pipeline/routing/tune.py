"""The policy tuner: the cheapest routing policy that meets a quality target with a stated
confidence, chosen on training rows only.

    result = tune(load_recorded(Path("recorded/")), target=0.95, confidence=0.9)
    result.pick.policy.name, result.pick.cost_share    # e.g. 'agree(mixtral, gpt-3.5) else gpt-4'
    print(render_fragment(result))                     # pipeline.routing.tune_report

Method (also in `TuneResult.method`):

1. Rows: the training split only (`split`, default 'train'; all rows when the data has no
   split). Learned routers get cross-fitted probabilities: every row is scored by heads
   fitted in `folds` folds that did not contain it (pipeline.routing.heads); no feature
   says which benchmark a row came from unless the caller names metadata `features`.
2. Every policy of every family (pipeline.routing.policies) is scored on every row.
3. Select on one part, certify on the other (Learn-then-Test, Angelopoulos et al. 2021):
   the rows are split at random, `select_share` to select and the rest to certify. On the
   select part the policies on the cost-quality Pareto front (quality taken pessimistically:
   mean less a margin for its spread) are ordered from dearest to cheapest; for a relative
   target below 1, flagship alone goes first. On the certify part they are tested in that
   fixed sequence, stopping at the first that fails (fixed-sequence testing, as in Jung et
   al. 2024, "Trust or Escalate"): no Bonferroni split over the policies is needed, because
   the order was fixed before the certify rows were looked at. This is done on `splits`
   independent random splits, each at level delta = (1 - confidence) / splits (Bonferroni
   over the splits), so the family-wise error stays at most 1 - confidence; several splits
   make the pick depend less on one lucky or unlucky split (on RouterBench resplits, 3-8
   splits gave a lower mean cost and a higher coverage than one).
4. The test: absolute target t, Clopper-Pearson lower bound of the policy's accuracy >= t.
   Relative target s (a share of flagship accuracy): the per-row difference
   correct(policy) - s * correct(flagship) must have a mean > 0, by the betting bound of
   pipeline.routing.bounds (paired, so it pays only for the rows where the two differ).
5. The pick is the policy certified by any split with the lowest cost on all training rows (within
   `max_cost_share` of flagship's cost when given). None certified: CannotPromise, with the
   labelled rows that the most promising policy would need.

What is promised: with probability >= confidence over the draw of the training rows, the
pick's accuracy on rows from the same distribution meets the target. Cross-fitting makes
this approximate for learned policies (the deployed router is refitted on all rows);
tests/benchmarks/router.py measures how often it holds on held-out rows. Nothing is
promised for rows of another task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.routing.bounds import (
    betting_lower,
    betting_rejects,
    clopper_pearson_lower,
    rows_needed_betting,
    rows_needed_cp,
)
from pipeline.routing.decide import FloatArray, IntArray
from pipeline.routing.learned import RouterModel
from pipeline.routing.policies import (
    Block,
    BoolArray,
    Outcome,
    Policy,
    PolicyInputs,
    evaluate_all,
    evaluate_policy,
)
from pipeline.routing.recorded import RecordedAnswers, TuneDataError
from pipeline.routing.tune_router import cross_fitted, router_probs

METHOD = " ".join((__doc__ or "").split("`TuneResult.method`):")[1].split("What is")[0].split())


@dataclass(frozen=True)
class PolicyRow:
    """One policy as measured on the training rows (cross-fitted for learned ones)."""

    policy: Policy
    accuracy: float
    cost_usd: float  # mean per row
    cost_share: float  # of all-flagship cost
    flagship_share: float  # rows that reached the policy's top model
    lower_bound: float  # the best split's, at level (1 - confidence) / splits, in the
    # target's unit: accuracy, or share of flagship accuracy
    certified: bool  # in some split's fixed sequence, before its first failure


@dataclass(frozen=True)
class TuneResult:
    """What was searched, what was promised (`pick`, `message`) and what backs it (`table`,
    `frontier`); `router` is the file a learned pick's spec fragment names."""

    target: float
    absolute: bool
    confidence: float
    source: str
    rows: int
    rows_select: int  # per split
    rows_certify: int
    splits: int
    models: tuple[str, ...]
    flagship: str
    flagship_accuracy: float
    flagship_cost_usd: float
    pick: PolicyRow | None
    table: list[PolicyRow]  # every policy some split tested, dearest first
    frontier: dict[str, list[tuple[float, float]]]  # family -> Pareto (cost share, accuracy)
    router: RouterModel | None  # the learned pick's model file, refitted on all rows
    features: tuple[str, ...] = ()
    rows_needed: int | None = None  # labelled rows the best candidate would need (no pick)
    message: str = ""
    method: str = METHOD
    excluded: dict[str, int] = field(default_factory=dict)

    def target_text(self) -> str:
        if self.absolute:
            return f"accuracy >= {self.target:.3f}"
        return f">= {self.target:.1%} of flagship accuracy"


class CannotPromise(TuneDataError):
    """No policy could be certified; `result` still holds the table and the rows needed."""

    def __init__(self, message: str, result: TuneResult | None = None) -> None:
        super().__init__(message)
        self.result = result

    def __reduce__(self) -> tuple[type[CannotPromise], tuple[str, TuneResult | None]]:
        return (CannotPromise, (str(self), self.result))


def tune(
    data: RecordedAnswers,
    *,
    target: float = 0.95,
    confidence: float = 0.9,
    folds: int = 5,
    seed: int = 0,
    deployments: Sequence[str] | None = None,
    flagship: str | None = None,
    absolute: bool = False,
    max_cost_share: float | None = None,
    features: Sequence[str] = (),
    split: str | None = "train",
    select_share: float = 0.3,
    splits: int = 4,
    thresholds: int = 32,
) -> TuneResult:
    """Search the policy space on the training rows; certify; pick (see the module doc)."""
    src = data.source
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")
    if not 0.0 < target <= (1.0 if absolute else 1.5):
        raise ValueError(f"target {target} is out of range ({'0..1' if absolute else '0..1.5'})")
    if not 0.0 < select_share < 1.0:
        raise ValueError(f"select_share must be between 0 and 1, not {select_share}")
    if splits < 1:
        raise ValueError(f"splits must be at least 1, not {splits}")
    if split is not None and data.split is not None:
        rows = data.split_rows(split)
        if rows.size == 0:
            raise TuneDataError(
                f"{src}: no rows with split == {split!r}: label some, or pass split"
            )
        data = data.rows(rows)
    models = tuple(deployments) if deployments else data.models
    for m in models:
        data.model_index(m)  # TuneDataError naming the source and the recorded models
    cols = [data.model_index(m) for m in models]
    correct, cost, answers = data.correct[:, cols], data.cost[:, cols], data.answers[:, cols]
    n = data.n
    acc = correct.mean(axis=0)
    if flagship is None:  # the most accurate model, the cheaper on a tie
        flagship = models[int(np.lexsort((cost.mean(axis=0), -acc))[0])]
    elif flagship not in models:
        raise TuneDataError(f"{src}: flagship {flagship!r} is not among {', '.join(models)}")
    f_col = models.index(flagship)
    heads = cross_fitted(data, models, flagship, features=features, folds=folds, seed=seed)
    probs = {} if heads is None else heads.oof_probs()
    inputs = PolicyInputs(correct, cost, answers, models, probs)
    block = evaluate_all(inputs, flagship=flagship, thresholds=thresholds)
    c_flag, f_acc, f_cost = correct[:, f_col], float(acc[f_col]), float(cost[:, f_col].mean())
    score = block.correct - target * c_flag if not absolute else block.correct.astype(np.float64)
    null = 0.0 if not absolute else target

    n_sel = min(max(round(select_share * n), 1), n - 1) if n > 1 else 0
    delta = (1.0 - confidence) / splits  # Bonferroni across the select/certify splits
    f_policy = block.policies.index(Policy("single", (flagship,)))
    tested: dict[int, tuple[bool, float]] = {}  # policy -> (certified, best bound)
    for b in range(splits):
        order = np.random.default_rng(seed + 1 + b).permutation(n)
        sel, cert = order[:n_sel], order[n_sel:]
        path = _sequence(block, score, sel, target, absolute, delta, f_policy)
        passes, bound = _certify(
            score[path][:, cert], block.correct[path][:, cert], target, absolute, delta
        )
        n_ok = int(np.argmin(passes)) if not passes.all() else len(path)
        for i, p in enumerate(path.tolist()):
            tested[p] = max(tested.get(p, (False, -np.inf)), (i < n_ok, float(bound[i])))

    def row(p: int, lb: float, ok: bool) -> PolicyRow:
        lower = lb if absolute else target + lb / (f_acc or 1.0)
        mean_cost = float(block.cost[p].mean())
        return PolicyRow(
            block.policies[p],
            float(block.correct[p].mean()),
            mean_cost,
            mean_cost / (f_cost or 1.0),
            float(block.top[p].mean()),
            float(lower),
            ok,
        )

    table = sorted((row(p, lb, ok) for p, (ok, lb) in tested.items()), key=lambda r: -r.cost_usd)
    affordable = [
        r
        for r in table
        if r.certified and (max_cost_share is None or r.cost_share <= max_cost_share)
    ]
    pick = min(affordable, key=lambda r: (r.cost_usd, -r.accuracy)) if affordable else None
    result = TuneResult(
        target=target,
        absolute=absolute,
        confidence=confidence,
        source=src,
        rows=n,
        rows_select=n_sel,
        rows_certify=n - n_sel,
        splits=splits,
        models=models,
        flagship=flagship,
        flagship_accuracy=f_acc,
        flagship_cost_usd=f_cost,
        pick=pick,
        table=table,
        frontier=_frontiers(block, f_cost),
        router=None,
        features=tuple(features),
        excluded=dict(data.excluded),
    )
    if pick is None:
        raise _cannot_promise(result, block, score, null, max_cost_share, delta, select_share)
    router = None
    if heads is not None and pick.policy.kind.startswith("learned"):
        tiers = pick.policy.tiers()
        router = heads.router(pick.policy, {t: inputs.mean_cost(m) for t, m in tiers.items()})
    cap = "" if max_cost_share is None else f" within {max_cost_share:.0%} of its cost"
    message = (
        f"{pick.policy.name}: {pick.accuracy:.3f} accuracy at {pick.cost_share:.1%} of flagship "
        f"cost on {n} training rows; promised {result.target_text()}{cap} with confidence "
        f"{confidence:g} (bound {pick.lower_bound:.3f} on {n - n_sel} held-back rows)"
    )
    return _replace(result, router=router, message=message)


def apply_pick(result: TuneResult, data: RecordedAnswers) -> Outcome:
    """The pick on other rows (a held-out split, another task): per row correct, cost and
    whether it reached the top model. A learned pick runs its refitted router."""
    if result.pick is None:
        raise ValueError("the tuning result has no pick to apply")
    policy, router = result.pick.policy, result.router
    probs: dict[str, FloatArray] = {}
    tier_cost = None
    if policy.kind.startswith("learned"):
        if router is None:
            raise ValueError(f"{policy.name}: the result carries no router model")
        probs, tier_cost = router_probs(router, policy, data, result.features), router.tier_cost
    cols = [data.model_index(m) for m in result.models]
    inputs = PolicyInputs(
        data.correct[:, cols], data.cost[:, cols], data.answers[:, cols], result.models, probs
    )
    return evaluate_policy(inputs, policy, tier_cost)


def _replace(result: TuneResult, **changes: object) -> TuneResult:
    from dataclasses import replace

    return replace(result, **changes)  # type: ignore[arg-type]


def pareto(cost: FloatArray, score: FloatArray) -> IntArray:
    """Indices of the points no cheaper-or-equal point beats, cheapest first."""
    order = np.lexsort((-score, cost))
    best = np.maximum.accumulate(score[order])
    keep = np.concatenate([[True], score[order][1:] > best[:-1]])
    return order[keep].astype(np.int64)


def _sequence(
    block: Block,
    score: FloatArray,
    sel: IntArray,
    target: float,
    absolute: bool,
    delta: float,
    f_policy: int,
) -> IntArray:
    """The order of the tests, decided on the select rows only (dearest first)."""
    cost_s, score_s = block.cost[:, sel].mean(axis=1), score[:, sel].mean(axis=1)
    # Rank by a pessimistic estimate (mean less the betting bound's usual margin): a policy
    # that differs from flagship on many rows is noisier, and the certify rows would likely
    # stop the sequence at it. Measured on RouterBench resplits: mean cost 35% of flagship
    # instead of 39%, and the dearest tenth of picks at 53% instead of 65%.
    margin = np.sqrt(2.0 * np.log(1.0 / delta) / max(sel.size, 1))
    score_s = score_s - margin * score[:, sel].std(axis=1)
    flag_cost = cost_s[f_policy]
    front = pareto(cost_s, score_s)[::-1]
    if absolute or target >= 1.0:
        return front
    # Relative targets below 1: flagship alone first. Its per-row difference is never
    # negative, so it passes whenever the rows can certify anything, and one unlucky
    # dearer policy at the head of the sequence can no longer stop every test after it.
    front = front[cost_s[front] < flag_cost]
    return np.concatenate([[f_policy], front]).astype(np.int64)


def _certify(
    score: FloatArray, correct: BoolArray, target: float, absolute: bool, delta: float
) -> tuple[BoolArray, FloatArray]:
    """Per policy (rows of the matrices, certify rows in random order): passes, bound."""
    if absolute:
        k = correct.sum(axis=1)
        lower = clopper_pearson_lower(k, correct.shape[1], delta)
        return np.asarray(lower >= target, dtype=bool), lower
    x = (score + target) / (1.0 + target)  # into [0, 1]
    m0 = target / (1.0 + target)
    passes = np.asarray(betting_rejects(x, m0, delta), dtype=bool)
    lower = betting_lower(x, delta) * (1.0 + target) - target
    return passes, lower


def _frontiers(block: Block, f_cost: float) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    kinds = np.array([p.kind for p in block.policies])
    cost, acc = block.cost.mean(axis=1) / (f_cost or 1.0), block.correct.mean(axis=1)
    for kind in dict.fromkeys(kinds.tolist()):
        idx = np.flatnonzero(kinds == kind)
        front = idx[pareto(cost[idx], acc[idx])]
        out[kind] = [(float(cost[i]), float(acc[i])) for i in front]
    return out


def _cannot_promise(
    result: TuneResult,
    block: Block,
    score: FloatArray,
    null: float,
    max_cost_share: float | None,
    delta: float,
    select_share: float,
) -> TuneDataError:
    """Why nothing was certified, and the labelled rows the best candidate would need."""
    share = block.cost.mean(axis=1) / (result.flagship_cost_usd or 1.0)
    means = score.mean(axis=1)
    within = (
        np.ones(len(block.policies), bool) if max_cost_share is None else share <= max_cost_share
    )
    cap = "" if max_cost_share is None else f" within {max_cost_share:.0%} of flagship cost"
    src, what = result.source, result.target_text()
    hopeful = np.flatnonzero(within & (means > null))
    if hopeful.size == 0:
        best = int(np.argmax(block.correct.mean(axis=1)))
        reach = (
            f"flagship {result.flagship} reaches {result.flagship_accuracy:.3f}, the best policy "
            f"({block.policies[best].name}) {float(block.correct[best].mean()):.3f}"
        )
        return TuneDataError(
            f"{src}: the target ({what}{cap}) is above what any policy reaches on the "
            f"{result.rows} training rows ({reach}): lower --target, or add a stronger model"
        )
    need: list[tuple[int, str]] = []
    for p in hopeful[np.argsort(share[hopeful])][:8]:  # the cheapest few are the interesting ones
        if result.absolute:
            rate = float(block.correct[p].mean())
            rows = rows_needed_cp(rate, result.target, delta)
        else:
            x = (score[p] + result.target) / (1.0 + result.target)
            rows = rows_needed_betting(x, result.target / (1.0 + result.target), delta)
        if rows is not None:
            need.append((int(np.ceil(rows / (1.0 - select_share))), block.policies[p].name))
    if not need:
        return CannotPromise(
            f"{src}: no policy can promise {what}{cap} at confidence {result.confidence:g}",
            result,
        )
    total, name = min(need)
    more = max(total - result.rows, 1)
    result = _replace(
        result,
        rows_needed=total,
        message=f"cannot promise; {name} would need about {total} labelled rows",
    )
    return CannotPromise(
        f"{src}: {result.rows} labelled rows cannot promise {what}{cap} at confidence "
        f"{result.confidence:g} with any policy; {name} would need about {total}: label "
        f"about {more} more rows",
        result,
    )
