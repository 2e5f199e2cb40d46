"""The policies the tuner searches, what each does on recorded rows, and how each is written
in a job spec. Every family is evaluated for all its members and rows at once.

    inputs = PolicyInputs.build(correct, cost, answers, models, probs=oof_probs)
    block = evaluate_all(inputs, flagship="gpt-4", thresholds=32)
    block.correct[p], block.cost[p]              # per row, for policy block.policies[p]
    spec_fragment(block.policies[p], provider="sim", model_path="router.npz")

Families, each exactly what the engine does with the spec it renders to:

- `single`: every row to one model.
- `agree`: ask A and B; keep A's answer when the two agree (pipeline.routing.cascade's
  `normalise`), else escalate to E, paying A + B + E (`routing.cascade.agree: [A, B]`).
- `vote`: ask A, B and C; the majority answer wins, a tie (all differ) escalates to E
  (`routing.vote`). Unanimity of three is not something the engine can do, so it is not
  searched.
- `learned`: the learned router over 2 or 3 tiers ending in the flagship, at every
  threshold where some row's choice changes (`routing.policy: learned`, `utility` rule).
- `learned+agree`: the same over cheap/mid/flagship, with rows routed cheap checked by
  cheap/mid agreement (`routing.cascade.agree: [cheap, mid]`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Literal

import numpy as np

from pipeline.routing.calibrate import candidates
from pipeline.routing.decide import AGREE, AGREE_OK, TIERS, FloatArray, IntArray, expected_options

Kind = Literal["single", "agree", "vote", "learned", "learned+agree"]
BoolArray = np.ndarray[Any, np.dtype[np.bool_]]


def agree_head(a: str, b: str) -> str:
    return f"agree:{a}|{b}"


def agree_ok_head(a: str, b: str) -> str:
    return f"agree_ok:{a}|{b}"


@dataclass(frozen=True)
class Policy:
    """One routing policy. `models`: single (m,); agree (a, b, else); vote (a, b, c, else);
    learned and learned+agree: the tier models, cheapest first, flagship last."""

    kind: Kind
    models: tuple[str, ...]
    threshold: float | None = None

    @property
    def name(self) -> str:
        short = [m.rsplit("/", 1)[-1] for m in self.models]
        if self.kind == "single":
            return short[0]
        if self.kind in ("agree", "vote"):
            return f"{self.kind}({', '.join(short[:-1])}) else {short[-1]}"
        return f"{self.kind}[{' < '.join(short)}] @ {self.threshold:.4g}"

    def tiers(self) -> dict[str, str]:
        """Tier -> model, as the spec fragment (and a learned router's file) name them."""
        if self.kind == "single":
            return {"cheap": self.models[0]}
        if self.kind == "vote":
            return {"cheap": self.models[0], "flagship": self.models[-1]}
        names = TIERS if len(self.models) == 3 else ("cheap", "flagship")
        return dict(zip(names, self.models, strict=True))


def spec_fragment(policy: Policy, *, provider: str, model_path: str) -> dict[str, Any]:
    """The `tiers:` and `routing:` parts of a job spec that run `policy`."""

    def dep(model: str) -> str:
        return f"{provider}/{model}"

    tiers = {t: [dep(m)] for t, m in policy.tiers().items()}
    routing: dict[str, Any]
    if policy.kind == "single":
        routing = {"policy": "rules", "default": "cheap"}
    elif policy.kind == "agree":
        routing = {
            "policy": "cascade",
            "default": "cheap",
            "cascade": {"agree": [dep(policy.models[0]), dep(policy.models[1])]},
        }
    elif policy.kind == "vote":
        routing = {
            "policy": "cascade",
            "default": "cheap",
            "vote": {"deployments": [dep(m) for m in policy.models[:3]], "tier": "cheap"},
        }
    else:
        routing = {"policy": "learned", "model": model_path, "threshold": policy.threshold}
        if policy.kind == "learned+agree":
            routing["cascade"] = {"agree": [dep(policy.models[0]), dep(policy.models[1])]}
    return {"tiers": tiers, "routing": routing}


@dataclass(frozen=True)
class PolicyInputs:
    """Recorded rows (n) x models (m), and the router's out-of-fold probabilities."""

    correct: FloatArray  # (n, m)
    cost: FloatArray  # (n, m)
    answers: IntArray  # (n, m), -1 for none
    models: tuple[str, ...]
    probs: Mapping[str, FloatArray] = field(default_factory=dict)  # head name -> (n,)

    def col(self, model: str) -> int:
        return self.models.index(model)

    def mean_cost(self, model: str) -> float:
        return float(self.cost[:, self.col(model)].mean())

    def agree(self, a: str, b: str) -> BoolArray:
        x, y = self.answers[:, self.col(a)], self.answers[:, self.col(b)]
        return np.asarray((x == y) & (x >= 0), dtype=bool)


@dataclass(frozen=True)
class Block:
    """Per-row outcomes of many policies: correct, cost (USD), and whether the row reached
    the policy's top model (the flagship share)."""

    policies: list[Policy]
    correct: BoolArray  # (P, n)
    cost: FloatArray  # (P, n)
    top: BoolArray  # (P, n)

    @staticmethod
    def concat(blocks: Sequence[Block]) -> Block:
        return Block(
            [p for b in blocks for p in b.policies],
            np.concatenate([b.correct for b in blocks]),
            np.concatenate([b.cost for b in blocks]),
            np.concatenate([b.top for b in blocks]),
        )


Outcome = tuple[BoolArray, FloatArray, BoolArray]  # per row: correct, cost, reached top


def _fixed_one(inputs: PolicyInputs, policy: Policy) -> Outcome:
    c, k = inputs.correct.astype(bool), inputs.cost
    cols = [inputs.col(m) for m in policy.models]
    if policy.kind == "single":
        return c[:, cols[0]], k[:, cols[0]], np.ones(c.shape[0], dtype=bool)
    je = cols[-1]
    if policy.kind == "agree":
        same = inputs.agree(*policy.models[:2])
        ja, jb = cols[0], cols[1]
        spent = k[:, ja] + k[:, jb] + np.where(same, 0.0, k[:, je])
        return np.where(same, c[:, ja], c[:, je]), spent, ~same
    won, tie = _majority(inputs, (policy.models[0], policy.models[1], policy.models[2]))
    spent = k[:, cols[:3]].sum(axis=1) + tie * k[:, je]
    return np.where(tie, c[:, je], won), spent, tie


def _fixed(inputs: PolicyInputs) -> Block:
    by_cost = sorted(inputs.models, key=inputs.mean_cost)
    policies = [Policy("single", (m,)) for m in by_cost]
    for e_at, e in enumerate(by_cost):
        cheaper = by_cost[:e_at]
        policies += [Policy("agree", (a, b, e)) for a, b in combinations(cheaper, 2)]
        policies += [Policy("vote", (a, b, d, e)) for a, b, d in combinations(cheaper, 3)]
    outs = [_fixed_one(inputs, p) for p in policies]
    return Block(
        policies,
        np.array([o[0] for o in outs]),
        np.array([o[1] for o in outs]),
        np.array([o[2] for o in outs]),
    )


def _majority(inputs: PolicyInputs, voters: tuple[str, str, str]) -> tuple[BoolArray, BoolArray]:
    """Per row: is the majority answer right, and is there a tie (pipeline.routing.cascade's
    `majority` over the answers given; no answer at all counts as a tie: the row escalates)."""
    cols = [inputs.col(v) for v in voters]
    ans = inputs.answers[:, cols]
    right = inputs.correct[:, cols].astype(bool)
    valid = ans >= 0
    # votes[i, j]: how many valid answers equal voter j's (0 when j gave none).
    votes = ((ans[:, :, None] == ans[:, None, :]) & valid[:, None, :]).sum(axis=2) * valid
    best = votes.max(axis=1)
    leader = np.argmax(votes, axis=1)  # the first voter with the most votes: the engine's pick
    distinct_leaders = ((votes == best[:, None]) & valid).sum(axis=1) // np.maximum(best, 1)
    tie = (best == 0) | (distinct_leaders > 1)
    won = right[np.arange(ans.shape[0]), leader]
    return np.asarray(won & ~tie, dtype=bool), np.asarray(tie, dtype=bool)


def _learned(
    inputs: PolicyInputs,
    tiers: tuple[str, ...],
    agree: bool,
    thresholds: int | FloatArray,
    tier_cost: Mapping[str, float] | None = None,
) -> Block | None:
    """Every threshold of one learned family (or the given thresholds). `tier_cost`: the
    router's mean cost per tier, when it was trained on other rows than these."""
    heads = list(tiers) + ([agree_head(*tiers[:2]), agree_ok_head(*tiers[:2])] if agree else [])
    if any(h not in inputs.probs for h in heads):
        return None
    names = TIERS if len(tiers) == 3 else ("cheap", "flagship")
    probs = {t: inputs.probs[m] for t, m in zip(names, tiers, strict=True)}
    if agree:
        probs[AGREE], probs[AGREE_OK] = inputs.probs[heads[3]], inputs.probs[heads[4]]
    if tier_cost is None:
        tier_cost = {t: inputs.mean_cost(m) for t, m in zip(names, tiers, strict=True)}
    quality, cost = expected_options(probs, tier_cost, names, cascade=agree)
    if isinstance(thresholds, int):
        lams = candidates(quality, cost, "utility")
        if lams.size > thresholds:  # thin by quantiles: the curve keeps its shape
            lams = np.unique(np.quantile(lams, np.linspace(0.0, 1.0, thresholds)))
    else:
        lams = np.asarray(thresholds, dtype=np.float64)
    scale = float(np.mean(cost[:, -1])) or 1.0
    choice = np.argmax(quality[None] - lams[:, None, None] * cost[None] / scale, axis=2)
    cols = [inputs.col(m) for m in tiers]
    rec_c = inputs.correct[:, cols].astype(bool)
    rec_k = inputs.cost[:, cols]
    rows = np.arange(rec_c.shape[0])
    correct, spent = rec_c[rows, choice], rec_k[rows, choice]
    top = choice == len(tiers) - 1
    if agree:  # the engine's cascade on rows routed cheap: agree keeps cheap, else flagship
        same = inputs.agree(tiers[0], tiers[1])
        cheap = choice == 0
        both = rec_k[:, 0] + rec_k[:, 1]
        correct = np.where(cheap, np.where(same, rec_c[:, 0], rec_c[:, 2]), correct)
        spent = np.where(cheap, both + np.where(same, 0.0, rec_k[:, 2]), spent)
        top = np.where(cheap, ~same, top)
    kind: Kind = "learned+agree" if agree else "learned"
    return Block([Policy(kind, tiers, float(t)) for t in lams], correct, spent, top)


def evaluate_policy(
    inputs: PolicyInputs, policy: Policy, tier_cost: Mapping[str, float] | None = None
) -> Outcome:
    """One policy on these rows. Learned ones read `inputs.probs` (heads named as in
    evaluate_all) and, when given, the router's `tier_cost` (tier -> mean USD)."""
    if not policy.kind.startswith("learned"):
        return _fixed_one(inputs, policy)
    lam = np.array([policy.threshold], dtype=np.float64)
    block = _learned(inputs, policy.models, policy.kind == "learned+agree", lam, tier_cost)
    if block is None:
        raise ValueError(f"{policy.name}: the router's probabilities for its heads are missing")
    return block.correct[0], block.cost[0], block.top[0]


def learned_tier_sets(
    models: Sequence[str], flagship: str, cost: Mapping[str, float]
) -> list[tuple[str, ...]]:
    """(cheap, flagship) and (cheap, mid, flagship) tuples, tiers in order of cost."""
    below = sorted(
        (m for m in models if m != flagship and cost[m] < cost[flagship]), key=lambda m: cost[m]
    )
    return [(c, flagship) for c in below] + [(c, m, flagship) for c, m in combinations(below, 2)]


def evaluate_all(inputs: PolicyInputs, *, flagship: str, thresholds: int = 32) -> Block:
    """Every policy of every family (learned ones only when `inputs.probs` has their heads)."""
    blocks = [_fixed(inputs)]
    cost = {m: inputs.mean_cost(m) for m in inputs.models}
    for tiers in learned_tier_sets(inputs.models, flagship, cost):
        for agree in (False, True) if len(tiers) == 3 else (False,):
            block = _learned(inputs, tiers, agree, thresholds)
            if block is not None:
                blocks.append(block)
    return Block.concat(blocks)
