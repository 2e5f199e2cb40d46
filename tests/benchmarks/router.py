"""Router benchmark: does the learned router keep flagship quality at a fraction of its cost?

    python tests/benchmarks/router.py --data DIR                   # about 8 minutes (2 cores)
    python tests/benchmarks/router.py --data DIR --quick           # offline, 40 resplits
    python tests/benchmarks/router.py --data DIR --json out.json --png curve.png

DIR is in the two-file format (prompts.parquet: sample_id, eval_name, split, prompt;
responses.parquet: sample_id, model, response, correct, cost_usd), e.g. RouterBench.

1. Train on `split == train` only (`pipeline.routing.train`): every threshold is
   calibrated there, on cross-fitted predictions. The test split is never used to choose
   anything; it is only scored.
2. Score on `split == test` with the recorded `correct` and `cost_usd` of the model that
   answered (so numbers compare with RouterBench's). Test rows whose sample id also occurs
   in the train split (their recorded answers cannot be told apart) and rows missing a
   recorded answer of any tier are left out, and counted.
3. Offline policies: the learned router (several variants), at the thresholds chosen on
   train, scored straight from the recorded answers. `learned+cascade` is trained for the
   engine's cheap/mid agreement cascade: a row routed to cheap is asked of cheap and mid,
   keeps the cheap answer when the two agree (case, spacing and edge punctuation aside),
   and goes to flagship when they differ, paying for all three calls.
4. Pipeline runs (not with --quick): the test split as Parquet input, `run_job`
   on a local Ray with the simulator replaying the recorded answers; `routing.policy:
   learned` (and for learned+cascade `routing.cascade.agree: [cheap, mid]`) applied by the
   engine. Scored from the results and costs files: the recorded verdict on the answer each
   row kept, and the recorded cost of every billed call (both agreement calls included).
5. Baselines: each tier alone, a random mix at the learned router's tier shares, the
   oracle (cheapest tier whose recorded answer is correct), the cascade on all rows.
6. The cost-quality curve of each learned variant (its training thresholds swept over the
   test rows: reporting, not tuning) as a PNG, and its area: normalised cost 0..1 on x,
   accuracy on y, the step function of the best accuracy reachable at that cost, with the
   tiers-alone points added to every curve (any router can fall back to them).
7. The tuner (pipeline.routing.tune), with no benchmark-name feature and again with it:
   `policies.tuned` is its pick chosen on `split == train` and scored on `split == test`;
   `guarantee.coverage` is the share of random resplits of all rows (train share as in
   the data; `--resplits`, 200 by default) whose pick, tuned on the train part, met the
   target (95% of flagship accuracy) on the test part, against `stated_confidence`;
   `cross_task.<a>_to_<b>` tunes on every row of one eval_name and scores on another.
   Every text is hashed once; resplits run in `--workers` processes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shutil
import struct
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from pipeline.routing.calibrate import Outcomes, area_under_curve, realise  # noqa: E402
from pipeline.routing.learned import TIERS, RouterModel, choose  # noqa: E402
from pipeline.routing.recorded import RecordedAnswers, load_recorded  # noqa: E402
from pipeline.routing.train import (  # noqa: E402
    AGREE,
    FitOptions,
    fit_router,
    from_two_file,
    normalise_answer,
    parse_tiers,
)
from pipeline.routing.tune import CannotPromise, TuneResult, apply_pick, tune  # noqa: E402

TARGET = (0.95, 0.35)  # at least 95% of flagship accuracy at no more than 35% of its cost


def meets_target(row: dict[str, Any]) -> bool:
    return bool(
        row["pct_flagship_accuracy"] >= 100 * TARGET[0]
        and row["pct_flagship_cost"] <= 100 * TARGET[1]
    )


# --- test data ----------------------------------------------------------------------------


@dataclass
class TestSet:
    frame: pl.DataFrame  # id, text, features, correct_<t>, cost_<t>, agree
    outcomes: Outcomes
    excluded: dict[str, int]


def load_test(data: Path, tiers: dict[str, str], features: list[str]) -> TestSet:
    prompts = pl.read_parquet(data / "prompts.parquet").with_columns(
        pl.col("sample_id").cast(pl.String)
    )
    responses = pl.read_parquet(data / "responses.parquet").with_columns(
        pl.col("sample_id").cast(pl.String)
    )
    test = prompts.filter(pl.col("split") == "test")
    other_ids = prompts.filter(pl.col("split") != "test")["sample_id"].implode()
    ambiguous = test.filter(pl.col("sample_id").is_in(other_ids))
    test = test.filter(~pl.col("sample_id").is_in(other_ids)).unique(
        "sample_id", keep="first", maintain_order=True
    )
    frame = test.select(
        pl.col("sample_id").alias("id"), pl.col("prompt").alias("text"), *map(pl.col, features)
    )
    for tier, model in tiers.items():
        rec = responses.filter(pl.col("model") == model).unique(
            "sample_id", keep="first", maintain_order=True
        )
        frame = frame.join(
            rec.select(
                pl.col("sample_id").alias("id"),
                pl.col("correct").cast(pl.Float64).alias(f"correct_{tier}"),
                pl.col("cost_usd").cast(pl.Float64).alias(f"cost_{tier}"),
                pl.col("response").alias(f"answer_{tier}"),
            ),
            on="id",
            how="left",
            maintain_order="left",
        )
    complete = frame.drop_nulls([f"correct_{t}" for t in tiers] + [f"cost_{t}" for t in tiers])
    agree = [
        float(normalise_answer(a) == normalise_answer(b) and normalise_answer(a) is not None)
        for a, b in zip(complete["answer_cheap"], complete["answer_mid"], strict=True)
    ]
    complete = complete.with_columns(pl.Series(AGREE, agree, dtype=pl.Float64))
    names = [t for t in TIERS if t in tiers]
    outcomes = Outcomes(
        correct=np.column_stack([complete[f"correct_{t}"].to_numpy() for t in names]),
        cost=np.column_stack([complete[f"cost_{t}"].to_numpy() for t in names]),
        agree=complete[AGREE].to_numpy(),
    )
    excluded = {
        "id_also_in_train": ambiguous.height,
        "missing_recorded_answer": frame.height - complete.height,
    }
    return TestSet(complete, outcomes, excluded)


# --- scoring ------------------------------------------------------------------------------


def score(test: TestSet, choice: np.ndarray, *, cascade: bool, source: str) -> dict[str, Any]:
    out = test.outcomes
    n = choice.shape[0]
    quality = np.nan_to_num(out.correct)  # no unknowns on scored rows
    correct, spent, flagship = realise(choice, out, quality, out.cost, cascade=cascade)
    flag_acc = float(out.correct[:, -1].mean())
    flag_cost = float(out.cost[:, -1].sum())
    names = [t for t in TIERS if t in ("cheap", "mid", "flagship")][: out.correct.shape[1]]
    row: dict[str, Any] = {
        "accuracy": float(correct.mean()),
        "cost_usd": float(spent.sum()),
        "pct_flagship_accuracy": 100.0 * float(correct.mean()) / flag_acc,
        "pct_flagship_cost": 100.0 * float(spent.sum()) / flag_cost,
        "share": {t: float(np.mean(choice == i)) for i, t in enumerate(names)},
        "flagship_answered": float(flagship.mean()),
        "rows": n,
        "run": "offline",
        "source": source,
    }
    return row


def expected_row(test: TestSet, shares: dict[str, float], source: str) -> dict[str, Any]:
    """A random mix with these tier shares, in expectation (no draw, no luck)."""
    out = test.outcomes
    names = list(shares)
    acc = sum(shares[t] * float(out.correct[:, i].mean()) for i, t in enumerate(names))
    cost = sum(shares[t] * float(out.cost[:, i].sum()) for i, t in enumerate(names))
    flag_acc, flag_cost = float(out.correct[:, -1].mean()), float(out.cost[:, -1].sum())
    return {
        "accuracy": acc,
        "cost_usd": cost,
        "pct_flagship_accuracy": 100.0 * acc / flag_acc,
        "pct_flagship_cost": 100.0 * cost / flag_cost,
        "share": dict(shares),
        "flagship_answered": shares.get("flagship", 0.0),
        "rows": out.correct.shape[0],
        "run": "offline",
        "source": source,
    }


def oracle_choice(test: TestSet) -> np.ndarray:
    right = test.outcomes.correct == 1.0
    first = np.argmax(right, axis=1)
    return np.where(right.any(axis=1), first, right.shape[1] - 1)


def policy_choice(test: TestSet, model: RouterModel, threshold: float) -> np.ndarray:
    quality, cost = model.options(model.predict(test.frame, "text"))
    return choose(quality, cost, threshold, model.decision)


def curve_points(test: TestSet, model: RouterModel) -> list[tuple[float, float]]:
    assert model.curve is not None
    quality, cost = model.options(model.predict(test.frame, "text"))
    points = []
    for t in model.curve.thresholds:
        choice = choose(quality, cost, float(t), model.decision)
        row = score(test, choice, cascade=model.cascade, source="")
        points.append((row["pct_flagship_cost"] / 100.0, row["accuracy"]))
    return sorted(set(points))


# --- the pipeline run ---------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineCase:
    """One policy to run through the engine: a router model and how the spec uses it."""

    name: str
    model_path: Path
    threshold: float
    agree: bool  # routing.cascade.agree: [cheap, mid] (rows routed cheap are checked)


def pipeline_spec(
    case: PipelineCase, data: Path, inp: Path, out: Path, tiers: dict[str, str], features: list[str]
) -> dict[str, Any]:
    """The job spec document: the learned policy, the replaying simulator, a passthrough task."""
    routing: dict[str, Any] = {
        "policy": "learned",
        "model": str(case.model_path),
        "threshold": case.threshold,
        "features": features,
    }
    if case.agree:
        routing["cascade"] = {"agree": [f"sim/{tiers['cheap']}", f"sim/{tiers['mid']}"]}
    return {
        "name": "router-bench",
        # Recorded answers are free text (choices, code): any non-empty answer is kept.
        "task": {"kind": "generate", "max_output_tokens": 4096},
        "input": {
            "uri": str(inp),
            "id_column": "id",
            "text_columns": ["text"],
            "rows_per_unit": 200,
        },
        "output": {"uri": str(out)},
        "providers": {
            "sim": {"kind": "sim", "sim": {"latency_ms": 0, "jitter_ms": 0, "replay": str(data)}}
        },
        "tiers": {t: [f"sim/{m}"] for t, m in tiers.items()},
        "routing": routing,
        "cache": "off",  # every call is a recorded one, billed at its recorded cost
        "run": {"workers": 2, "max_in_flight": 32, "max_attempts": 2},
    }


def score_job(
    test: TestSet, tiers: dict[str, str], results: pl.DataFrame, costs: pl.DataFrame
) -> tuple[float, float]:
    """Accuracy (the recorded verdict on the answer each row kept; error rows count wrong)
    and cost (the recorded cost of every billed call, agreement partners included)."""
    recorded = pl.concat(
        [
            test.frame.select(
                "id",
                pl.lit(m).alias("model"),
                pl.col(f"correct_{t}").alias("correct"),
                pl.col(f"cost_{t}").alias("rec_cost"),
            )
            for t, m in tiers.items()
        ]
    ).unique(["id", "model"], keep="first")
    answered = results.select("id", "model").join(recorded, on=["id", "model"], how="left")
    billed = costs.select("id", "model").join(recorded, on=["id", "model"], how="left")
    acc = float(answered["correct"].fill_null(0.0).sum()) / test.frame.height
    return acc, float(billed["rec_cost"].fill_null(0.0).sum())


def pipeline_run(
    test: TestSet,
    data: Path,
    tiers: dict[str, str],
    case: PipelineCase,
    features: list[str],
    keep: bool = False,
) -> dict[str, Any]:
    """Run the test split through run_job (local Ray, replaying simulator); score it.
    The job's folder is removed afterwards unless `keep`."""
    from pipeline.engine.driver import run_job
    from schemas.job import parse_spec

    work = Path(tempfile.mkdtemp(prefix="router-bench-"))
    inp = work / "input"
    inp.mkdir()
    test.frame.select("id", "text", *features).write_parquet(inp / "part-000.parquet")
    spec = parse_spec(pipeline_spec(case, data, inp, work / "out", tiers, features))
    import ray

    if not ray.is_initialized():
        # A Ray of our own: never join another cluster running on this machine.
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    started = time.monotonic()
    summary = run_job(spec, job_id="router-bench")
    wall = time.monotonic() - started
    job = work / "out" / "router-bench"
    results = pl.read_parquet(job / "results" / "*.parquet")
    costs = pl.read_parquet(job / "costs" / "*.parquet")
    errors = pl.read_parquet(job / "errors" / "*.parquet")
    n = test.frame.height
    acc, cost = score_job(test, tiers, results, costs)
    flag_acc = float(test.outcomes.correct[:, -1].mean())
    flag_cost = float(test.outcomes.cost[:, -1].sum())
    routed = pl.concat([results.select("routed_tier"), errors.select(routed_tier="tier")])
    shares = {t: int((routed["routed_tier"] == t).sum()) / n for t in tiers}
    row = {
        "accuracy": acc,
        "cost_usd": cost,
        "pct_flagship_accuracy": 100.0 * acc / flag_acc,
        "pct_flagship_cost": 100.0 * cost / flag_cost,
        "share": shares,  # by the tier routing chose, as for the offline rows
        "flagship_answered": int((results["tier"] == "flagship").sum()) / n,
        "rows": n,
        "run": "pipeline",
        "source": f"pipeline run (routing.policy learned{', cascade.agree' if case.agree else ''}"
        f", threshold {case.threshold:.4f} from train); {summary.status}, {results.height} "
        f"results, {errors.height} errors, {costs.height} billed calls, {wall:.1f} s",
        "accepted_reason": dict(results.group_by("accepted_reason").len().sort("len").rows()),
        "call_status": dict(costs.group_by("call_status").len().sort("len").rows()),
        "errors": errors.group_by("error_type").len().sort("error_type").rows(),
        "output": str(job) if keep else None,
    }
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return row


# --- the tuner: its pick on test, its guarantee over resplits, across tasks -----------------

TUNE_TARGET = 0.95  # the tuner's target: this share of flagship accuracy...
TUNE_CONFIDENCE = 0.9  # ...promised with this confidence
TUNE_MAX_COST = 0.50  # the figure to beat on RouterBench: at most half of flagship's cost


def tuned_row(result: TuneResult, test: RecordedAnswers, source: str) -> dict[str, Any]:
    """The tuner's pick (chosen on other rows) scored on `test` with the recorded answers."""
    correct, cost, top = apply_pick(result, test)
    f = test.model_index(result.flagship)
    flag_acc, flag_cost = float(test.correct[:, f].mean()), float(test.cost[:, f].sum())
    assert result.pick is not None
    return {
        "accuracy": float(correct.mean()),
        "cost_usd": float(cost.sum()),
        "pct_flagship_accuracy": 100.0 * float(correct.mean()) / flag_acc,
        "pct_flagship_cost": 100.0 * float(cost.sum()) / flag_cost,
        "share": {},
        "flagship_answered": float(top.mean()),
        "rows": test.n,
        "run": "offline",
        "source": source,
        "policy": result.pick.policy.name,
        "promise": result.message,
        "train_lower_bound": result.pick.lower_bound,
    }


def met_tuned_target(row: dict[str, Any], target: float = TUNE_TARGET) -> bool:
    return bool(row["pct_flagship_accuracy"] >= 100.0 * target - 1e-9)


_SHARED: dict[str, RecordedAnswers] = {}  # the pooled rows, inherited by forked workers


def _one_resplit(job: tuple[int, float, tuple[str, ...], float, float]) -> dict[str, Any]:
    """Tune on a random train part of the pooled rows, score the pick on the rest."""
    r, train_share, features, target, confidence = job
    data = _SHARED["data"]
    order = np.random.default_rng(10_000 + r).permutation(data.n)  # r: resplit id + seed
    cut = round(train_share * data.n)
    train, test = data.rows(order[:cut]), data.rows(order[cut:])
    try:
        result = tune(
            train, target=target, confidence=confidence, seed=r, split=None, features=features
        )
    except CannotPromise:
        return {"pick": None}
    row = tuned_row(result, test, "resplit")
    return {
        "pick": row["policy"],
        "kind": result.pick.policy.kind if result.pick else None,
        "met": met_tuned_target(row, target),
        "pct_flagship_cost": row["pct_flagship_cost"],
        "pct_flagship_accuracy": row["pct_flagship_accuracy"],
    }


def resplit_coverage(
    data: RecordedAnswers,
    *,
    resplits: int,
    train_share: float,
    features: tuple[str, ...] = (),
    target: float = TUNE_TARGET,
    confidence: float = TUNE_CONFIDENCE,
    workers: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Share of random resplits whose pick (tuned on train) met the target on test.
    Resplits where the tuner promised nothing are counted apart, not as hits."""
    _SHARED["data"] = data.with_text_parts(2**18, 2)  # hash every text once, not per resplit
    first = 1000 * seed  # another --seed draws other resplits
    jobs = [(first + r, train_share, features, target, confidence) for r in range(resplits)]
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            runs = pool.map(_one_resplit, jobs, chunksize=4)
    else:
        runs = [_one_resplit(j) for j in jobs]
    picked = [r for r in runs if r["pick"] is not None]
    costs = np.array([r["pct_flagship_cost"] for r in picked]) if picked else np.zeros(1)
    kinds: dict[str, int] = {}
    for r in picked:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    return {
        "stated_confidence": confidence,
        "coverage": float(np.mean([r["met"] for r in picked])) if picked else None,
        "resplits": resplits,
        "cannot_promise": resplits - len(picked),
        "train_share": train_share,
        "target_pct_flagship_accuracy": 100.0 * target,
        "pct_flagship_cost": {
            "mean": float(costs.mean()),
            "median": float(np.median(costs)),
            "p90": float(np.percentile(costs, 90)),
        },
        "share_within_max_cost": float(np.mean(costs <= 100.0 * TUNE_MAX_COST)),
        "picked_kinds": kinds,
    }


def cross_task(
    data: RecordedAnswers, column: str, features: tuple[str, ...] = (), seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Tune on every row of one task (the values of `column`), score on every row of each
    other task: what the tuner's promise is worth where it was never tuned."""
    tasks = sorted({str(v) for v in data.meta[column]})
    out: dict[str, dict[str, Any]] = {}
    for a in tasks:
        train = data.rows(np.flatnonzero(data.meta[column] == a))
        try:
            result = tune(
                train,
                target=TUNE_TARGET,
                confidence=TUNE_CONFIDENCE,
                split=None,
                features=features,
                seed=seed,
            )
        except CannotPromise as exc:
            for b in tasks:
                if b != a:
                    out[f"{a}_to_{b}"] = {"pct_flagship_cost": None, "cannot_promise": str(exc)}
            continue
        for b in tasks:
            if b == a:
                continue
            test = data.rows(np.flatnonzero(data.meta[column] == b))
            row = tuned_row(result, test, f"tuned on {a}, scored on {b}")
            out[f"{a}_to_{b}"] = {
                "pct_flagship_cost": row["pct_flagship_cost"],
                "pct_flagship_accuracy": row["pct_flagship_accuracy"],
                "met_target": met_tuned_target(row),
                "policy": row["policy"],
                "pct_flagship_cost_on_own_task": 100.0
                * (result.pick.cost_share if result.pick else 1.0),
            }
    return out


def tuner_section(data_dir: Path, resplits: int, workers: int, seed: int = 0) -> dict[str, Any]:
    """policies.tuned (chosen on train, scored on test), the guarantee measured over random
    resplits, and cross-task figures; each also with the benchmark-name metadata as a
    feature when the data has it (`eval_name`), to show what leaning on it is worth."""
    t0 = time.monotonic()
    data = load_recorded(data_dir).with_text_parts(2**18, 2)
    train, test = data.rows(data.split_rows("train")), data.rows(data.split_rows("test"))
    assert not set(train.ids) & set(test.ids), "a test row is in the tuner's training rows"
    meta = "eval_name" if "eval_name" in data.meta else None
    variants: dict[str, tuple[str, ...]] = {"": ()}
    if meta:
        variants["with_" + meta] = (meta,)
    policies: dict[str, dict[str, Any]] = {}
    guarantee: dict[str, Any] = {}
    crossed: dict[str, dict[str, Any]] = {}
    refused: dict[str, str] = {}
    share = train.n / (train.n + test.n)
    for label, feats in variants.items():
        key = "tuned" if not label else f"tuned ({label.replace('_', ' ')})"
        try:
            result = tune(
                train, target=TUNE_TARGET, confidence=TUNE_CONFIDENCE, features=feats, seed=seed
            )
            policies[key] = tuned_row(result, test, "tuner's pick on train, scored on test")
        except CannotPromise as exc:  # an honest answer, reported instead of a policy row
            refused[key] = str(exc)
        g = resplit_coverage(
            data,
            resplits=resplits,
            train_share=share,
            features=feats,
            workers=workers,
            seed=seed,
        )
        if label:
            guarantee[label] = g
        else:
            guarantee.update(g)
        if meta:
            for pair, row in cross_task(data, meta, feats, seed).items():
                if label:
                    crossed.setdefault(pair, {})[label] = row
                else:
                    crossed[pair] = {**row, **crossed.get(pair, {})}
    guarantee["seconds"] = round(time.monotonic() - t0, 1)
    guarantee["seed"] = seed
    return {
        "policies": policies,
        "cannot_promise": refused,
        "guarantee": guarantee,
        "cross_task": crossed,
    }


def print_tuner(policies: dict[str, dict[str, Any]], tuner: dict[str, Any]) -> None:
    print()
    goal = f"{TUNE_TARGET:.0%} of flagship accuracy at confidence {TUNE_CONFIDENCE:g}"
    for name, why in tuner["cannot_promise"].items():
        print(f"{name}: {why}")
    for name, row in policies.items():
        if name.startswith("tuned"):
            print(
                f"{name} ({goal}, chosen on train): {row['policy']}\n    on test: "
                f"{row['pct_flagship_accuracy']:.1f}% of flagship accuracy at "
                f"{row['pct_flagship_cost']:.1f}% of its cost "
                f"({'meets' if met_tuned_target(row) else 'misses'} the accuracy target)"
            )
    g = tuner["guarantee"]
    for label, block in [("", g), *((k, v) for k, v in g.items() if k.startswith("with_"))]:
        cost = block["pct_flagship_cost"]
        cov = block["coverage"]
        print(
            f"guarantee{' ' + label if label else ''}: stated {block['stated_confidence']:g}, "
            f"coverage {'n/a' if cov is None else f'{cov:.3f}'} over {block['resplits']} "
            f"resplits ({block['cannot_promise']} promised nothing); pick's cost "
            f"{cost['mean']:.1f}% of flagship (median {cost['median']:.1f}%, p90 "
            f"{cost['p90']:.1f}%); {block['share_within_max_cost']:.0%} of picks within "
            f"{TUNE_MAX_COST:.0%}"
        )
    for pair, row in tuner["cross_task"].items():
        for label, r in [("", row), *((k, v) for k, v in row.items() if k.startswith("with_"))]:
            if r.get("pct_flagship_cost") is None:
                print(f"cross-task {pair}{' ' + label if label else ''}: cannot promise")
                continue
            print(
                f"cross-task {pair}{' ' + label if label else ''}: {r['policy']}: "
                f"{r['pct_flagship_accuracy']:.1f}% of flagship accuracy at "
                f"{r['pct_flagship_cost']:.1f}% of its cost "
                f"({'meets' if r['met_target'] else 'misses'} {TUNE_TARGET:.0%}; no promise "
                "is made across tasks)"
            )


# --- PNG ------------------------------------------------------------------------------------

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]


def write_png(
    path: Path,
    curves: dict[str, list[tuple[float, float]]],
    points: dict[str, tuple[float, float]],
    size: tuple[int, int] = (720, 480),
) -> dict[str, str]:
    """Curves (x = normalised cost, y = accuracy) as a PNG, no plotting library; returns
    the colour of each curve (the image has no text: the legend is printed)."""
    w, h = size
    m = 40
    img = bytearray([255] * (w * h * 3))
    ys = [y for c in curves.values() for _, y in c] + [y for _, y in points.values()]
    y0, y1 = np.floor(min(ys) * 20) / 20, np.ceil(max(ys) * 20) / 20

    def px(x: float, y: float) -> tuple[int, int]:
        return (
            int(m + min(max(x, 0.0), 1.0) * (w - 2 * m)),
            int(h - m - (y - y0) / (y1 - y0) * (h - 2 * m)),
        )

    def put(x: int, y: int, c: tuple[int, int, int]) -> None:
        if 0 <= x < w and 0 <= y < h:
            img[(y * w + x) * 3 : (y * w + x) * 3 + 3] = bytes(c)

    def line(a: tuple[int, int], b: tuple[int, int], c: tuple[int, int, int], t: int = 1) -> None:
        steps = max(abs(b[0] - a[0]), abs(b[1] - a[1]), 1)
        for i in range(steps + 1):
            x = round(a[0] + (b[0] - a[0]) * i / steps)
            y = round(a[1] + (b[1] - a[1]) * i / steps)
            for dx in range(-(t // 2), t // 2 + 1):
                for dy in range(-(t // 2), t // 2 + 1):
                    put(x + dx, y + dy, c)

    grey, black = (225, 225, 225), (0, 0, 0)
    for i in range(11):  # x grid every 10% of flagship cost
        line(px(i / 10, y0), px(i / 10, y1), grey)
    for v in np.arange(y0, y1 + 1e-9, 0.05):  # y grid every 5 accuracy points
        line(px(0, v), px(1, v), grey)
    line(px(0, y0), px(1, y0), black)
    line(px(0, y0), px(0, y1), black)
    line(px(TARGET[1], y0), px(TARGET[1], y1), (255, 200, 200))  # the cost target
    legend = {}
    for (name, pts), colour in zip(curves.items(), COLOURS, strict=False):
        legend[name] = "rgb" + str(colour)
        for a, b in itertools.pairwise(pts):
            line(px(*a), px(*b), colour, 3)
    for name, (x, y) in points.items():
        cx, cy = px(x, y)
        for dx in range(-4, 5):
            for dy in range(-4, 5):
                put(cx + dx, cy + dy, black)
        legend[name] = "black square"
    raw = b"".join(b"\x00" + bytes(img[r * w * 3 : (r + 1) * w * 3]) for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    note = f"x: cost / all-flagship cost (0..1); y: accuracy {y0:.2f}..{y1:.2f}; " + "; ".join(
        f"{k}={v}" for k, v in legend.items()
    )
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"tEXt", b"Description\x00" + note.encode("latin-1", "replace"))
        + chunk(b"IDAT", zlib.compress(bytes(raw), 9))
        + chunk(b"IEND", b"")
    )
    legend["axes"] = f"x 0..1 of flagship cost, y {y0:.2f}..{y1:.2f} accuracy"
    return legend


# --- main -----------------------------------------------------------------------------------


def table(rows: dict[str, dict[str, Any]], tiers: list[str]) -> str:
    head = f"{'policy':<40} {'acc':>6} {'cost $':>8} {'% fl.acc':>8} {'% fl.cost':>9}  " + " ".join(
        f"{t:>8}" for t in tiers
    )
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        shares = " ".join(f"{100 * r['share'].get(t, 0.0):>7.1f}%" for t in tiers)
        lines.append(
            f"{name:<40} {r['accuracy']:>6.3f} {r['cost_usd']:>8.4f} "
            f"{r['pct_flagship_accuracy']:>7.1f}% {r['pct_flagship_cost']:>8.1f}%  {shares}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="two-file data folder")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    parser.add_argument(
        "--png",
        type=Path,
        help="cost-quality curve (default: beside --json, else ./router-curve.png)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the pipeline runs' inputs and outputs"
    )
    parser.add_argument("--quick", action="store_true", help="offline only, fewer variants")
    parser.add_argument("--tiers", help="cheap=MODEL,mid=MODEL,flagship=MODEL")
    parser.add_argument("--features", default="eval_name", help="metadata columns, comma-separated")
    parser.add_argument("--folds", type=int, default=5, help="cross-fitting folds on train")
    parser.add_argument(
        "--resplits", type=int, help="random resplits for the tuner's coverage (200; --quick 40)"
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes for the resplits"
    )
    parser.add_argument("--seed", type=int, default=0, help="the tuner's seed and resplits")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    tiers = parse_tiers(args.tiers)
    columns = pl.read_parquet_schema(args.data / "prompts.parquet")
    features = [f for f in args.features.split(",") if f and f in columns]
    names = [t for t in TIERS if t in tiers]

    t0 = time.monotonic()
    train = from_two_file(args.data, tiers, features)
    train_ids = set(train.frame["id"].to_list())
    test = load_test(args.data, tiers, features)
    leaked = train_ids & set(test.frame["id"].to_list())
    assert not leaked, f"{len(leaked)} test rows are in the training set"
    print(
        f"train rows {train.frame.height} (excluded {train.excluded}); "
        f"test rows {test.frame.height} (excluded {test.excluded}); features {features}"
    )
    variants: dict[str, tuple[FitOptions, list[str]]] = {
        "learned": (FitOptions(decision="utility", folds=args.folds), features),
        "learned+cascade": (
            FitOptions(decision="utility", cascade=True, folds=args.folds),
            features,
        ),
    }
    if not args.quick:
        variants["learned-threshold"] = (
            FitOptions(decision="threshold", folds=args.folds),
            features,
        )
        variants["learned-text-only"] = (FitOptions(decision="utility", folds=args.folds), [])
    models: dict[str, RouterModel] = {}
    for name, (opts, feats) in variants.items():
        ts = train if feats == features else from_two_file(args.data, tiers, feats)
        models[name] = fit_router(ts, opts)
    print(f"trained {len(models)} routers in {time.monotonic() - t0:.1f} s")

    policies: dict[str, dict[str, Any]] = {}
    thresholds: dict[str, dict[str, Any]] = {}
    for name, model in models.items():
        presets = ["cost", "balanced", "quality"] if model.cascade else ["balanced"]
        for preset in presets:
            t = model.presets[preset]
            key = f"{name}@{preset}"
            thresholds[key] = {"threshold": t, **model.info["validation"]["presets"][preset]}
            choice = policy_choice(test, model, t)
            policies[key] = score(
                test,
                choice,
                cascade=model.cascade,
                source=f"offline, {model.decision}, threshold {t:.4f} from train",
            )

    # The tuner, before any Ray starts (the resplits fork worker processes).
    resplits = args.resplits or (40 if args.quick else 200)
    tuner = tuner_section(args.data, resplits, args.workers, args.seed)
    policies.update(tuner.pop("policies"))

    if not args.quick:
        model_dir = Path(tempfile.mkdtemp(prefix="router-model-"))
        for name in ("learned", "learned+cascade"):
            model = models[name]
            path = model_dir / f"{name.replace('+', '-')}.npz"
            model.save(path)
            case = PipelineCase(name, path, model.presets["balanced"], model.cascade)
            row = pipeline_run(test, args.data, tiers, case, features, keep=args.keep)
            policies[f"{name}@balanced (pipeline run)"] = row
        import ray

        ray.shutdown()
        if not args.keep:
            shutil.rmtree(model_dir, ignore_errors=True)

    n = test.frame.height
    baselines: dict[str, dict[str, Any]] = {}
    for i, tier in enumerate(names):
        baselines[f"{tier} alone"] = score(test, np.full(n, i), cascade=False, source="recorded")
    shares = policies["learned@balanced"]["share"]
    baselines["random mix (learned's shares)"] = expected_row(test, shares, "expectation")
    baselines["oracle"] = score(test, oracle_choice(test), cascade=False, source="recorded")
    baselines["cascade all rows"] = score(
        test, np.zeros(n, dtype=np.int64), cascade=True, source="recorded"
    )

    curves = {name: curve_points(test, model) for name, model in models.items()}
    flag_acc = float(test.outcomes.correct[:, -1].mean())
    mix = [
        (s / 20, (1 - s / 20) * baselines["cheap alone"]["accuracy"] + s / 20 * flag_acc)
        for s in range(21)
    ]
    cheap_rel = baselines["cheap alone"]["pct_flagship_cost"] / 100
    curves["random cheap/flagship mix"] = [(cheap_rel + (1 - cheap_rel) * x, y) for x, y in mix]
    # Every router can fall back to a tier alone (all cheap, all flagship): those points
    # belong to every curve, so a curve that starts dearer (the cascade pays cheap + mid
    # on every row it keeps) is not scored 0 below its first point.
    alone = [
        (r["pct_flagship_cost"] / 100, r["accuracy"]) for k, r in baselines.items() if "alone" in k
    ]
    aucs = {
        name: area_under_curve(
            np.array([p[0] for p in [*pts, *alone]]), np.array([p[1] for p in [*pts, *alone]])
        )
        for name, pts in curves.items()
    }
    png = args.png or (args.json.with_suffix(".png") if args.json else Path("router-curve.png"))
    dots = {
        name: (r["pct_flagship_cost"] / 100, r["accuracy"])
        for name, r in baselines.items()
        if "alone" in name or name == "oracle"
    }
    legend = write_png(png, curves, dots)

    print()
    print(table(policies, names))
    print()
    print(table(baselines, names))
    print()
    for name, th in thresholds.items():
        print(
            f"{name:<28} threshold {th['threshold']:.4f}  on train (cross-fitted): quality "
            f"{th['rel_quality']:.1%} at {th['rel_cost']:.1%} of flagship cost"
        )
    print()
    print("area under the cost-quality curve (x: cost / flagship cost, y: accuracy):")
    for name, a in aucs.items():
        print(f"  {name:<28} {a:.4f}   {legend.get(name, '')}")
    print(f"curve PNG: {png}  ({legend['axes']}; black squares: tiers alone and the oracle)")
    for name, row in policies.items():
        if row["run"] == "pipeline":
            twin = policies[name.removesuffix(" (pipeline run)")]
            print(
                f"{name}: {row['source']}; against its offline score: accuracy "
                f"{row['accuracy'] - twin['accuracy']:+.4f}, cost "
                f"{row['pct_flagship_cost'] - twin['pct_flagship_cost']:+.1f} points; "
                f"accepted {row['accepted_reason']}; calls {row['call_status']}"
            )
    print()
    for name, row in policies.items():
        row["meets_target"] = meets_target(row)
        if "@balanced" in name:
            print(
                f"target (>= {TARGET[0]:.0%} of flagship accuracy at <= {TARGET[1]:.0%} of "
                f"its cost): {name:<40} {'meets' if meets_target(row) else 'misses'} it"
            )
    print_tuner(policies, tuner)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "policies": policies,
                    "guarantee": tuner["guarantee"],
                    "cross_task": tuner["cross_task"],
                    "tuned_cannot_promise": tuner["cannot_promise"],
                    "baselines": baselines,
                    "curves": {
                        name: {"auc": aucs[name], "points": curves[name]} for name in curves
                    },
                    "thresholds": thresholds,
                    "target": {
                        "min_pct_flagship_accuracy": 100 * TARGET[0],
                        "max_pct_flagship_cost": 100 * TARGET[1],
                    },
                    "data": {
                        "train_rows": train.frame.height,
                        "train_excluded": train.excluded,
                        "test_rows": n,
                        "test_excluded": test.excluded,
                        "tiers": tiers,
                        "features": features,
                        "training": models["learned"].info,
                    },
                },
                indent=1,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
