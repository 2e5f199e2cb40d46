"""The learned router: features, decisions, the model file, training sets and fitting."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli.router import router_train_command
from pipeline.routing.learned import (
    FeatureSpec,
    Head,
    RouterFileError,
    RouterModel,
    choose,
    featurize,
    fit_features,
    learned_policy,
    resolve_threshold,
    route_learned,
    tier_problems,
)
from pipeline.routing.policy import POLICIES
from pipeline.routing.train import (
    FitOptions,
    TrainingDataError,
    fit_router,
    from_runs,
    from_two_file,
    normalise_answer,
    parse_tiers,
)
from schemas.records import COSTS, ERRORS, RESULTS

TIERS = {"cheap": "m-cheap", "mid": "m-mid", "flagship": "m-flag"}
WORDS = {"easy": "add two small numbers", "medium": "sort a list", "hard": "prove the theorem"}


# --- hand-made models -------------------------------------------------------------------


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def hand_model(decision: str = "threshold") -> RouterModel:
    """Probabilities set by the `kind` column alone: a -> (0.9, 0.95, 0.97),
    b -> (0.5, 0.8, 0.9), c -> (0.2, 0.3, 0.6)."""
    spec = FeatureSpec(
        n_text=8,
        ngram_max=1,
        idf=np.ones(8),
        length_mean=0.0,
        length_std=1.0,
        categorical={"kind": ["a", "b", "c"]},
    )
    table = {"cheap": (0.9, 0.5, 0.2), "mid": (0.95, 0.8, 0.3), "flagship": (0.97, 0.9, 0.6)}
    heads = {}
    for tier, probs in table.items():
        coef = np.zeros(spec.width)
        coef[spec.n_text + 1 : spec.n_text + 4] = [_logit(p) for p in probs]
        heads[tier] = Head(coef, 0.0)
    return RouterModel(
        tiers=dict(TIERS),
        features=spec,
        heads=heads,
        tier_cost={"cheap": 1.0, "mid": 2.0, "flagship": 20.0},
        decision=decision,  # type: ignore[arg-type]
        threshold=0.85,
        presets={"cost": 0.5, "balanced": 0.85, "quality": 0.95},
    )


def frame(kinds: list[str]) -> pl.DataFrame:
    # Constant text length: the length feature is 0 after scaling... and has no weight.
    return pl.DataFrame({"text": ["same text"] * len(kinds), "kind": kinds})


def test_policy_picks_the_cheapest_tier_clearing_the_threshold() -> None:
    model = hand_model()
    df = frame(["a", "b", "c", "a"])
    assert route_learned(df, "text", model, 0.85).to_list() == [
        "cheap",
        "flagship",
        "flagship",
        "cheap",
    ]
    assert route_learned(df, "text", model, 0.75).to_list() == ["cheap", "mid", "flagship", "cheap"]
    assert route_learned(df, "text", model, 0.1).to_list() == ["cheap"] * 4
    # No tier clears 0.99: each row goes to its most probable tier.
    assert route_learned(df, "text", model, 0.99).to_list() == ["flagship"] * 4


def test_unknown_category_and_empty_frame() -> None:
    model = hand_model()
    # An unseen category has no weight: every head says 0.5.
    assert route_learned(frame(["zzz"]), "text", model, 0.5).to_list() == ["cheap"]
    empty = route_learned(frame([]), "text", model, 0.5)
    assert empty.dtype == pl.String and empty.len() == 0


def test_utility_decision_pays_only_for_enough_gain() -> None:
    model = hand_model("utility")
    df = frame(["a", "b", "c"])
    # Costs relative to flagship: 0.05, 0.1, 1. Row b: mid gains 0.3 over cheap for 0.05.
    assert route_learned(df, "text", model, 1.0).to_list() == ["cheap", "mid", "mid"]
    assert route_learned(df, "text", model, 0.0).to_list() == ["flagship"] * 3
    assert route_learned(df, "text", model, 100.0).to_list() == ["cheap"] * 3


def test_choose_ties_go_to_the_cheaper_tier() -> None:
    q = np.array([[0.9, 0.9, 0.9]])
    c = np.array([[1.0, 2.0, 3.0]])
    assert choose(q, c, 0.5, "threshold").tolist() == [0]
    assert choose(q, c, 0.0, "utility").tolist() == [0]
    with pytest.raises(ValueError, match="unknown decision"):
        choose(q, c, 0.5, "vote")  # type: ignore[arg-type]


def test_features_are_deterministic() -> None:
    df = pl.DataFrame(
        {
            "text": ["Refund my invoice", "The app crashes", None, "Refund my invoice"],
            "kind": ["a", "b", None, "a"],
            "n": [1.0, None, 3.0, 1.0],
        }
    )
    spec = fit_features(df, "text", ["kind", "n"], n_text=2**10)
    assert spec.categorical == {"kind": ["a", "b"]} and list(spec.numeric) == ["n"]
    x1 = featurize(df, "text", spec)
    x2 = featurize(df, "text", fit_features(df, "text", ["kind", "n"], n_text=2**10))
    assert x1.shape == (4, spec.width)
    assert (x1 != x2).nnz == 0
    assert (x1[0] != x1[3]).nnz == 0  # same row, same features


def test_model_file_round_trips(tmp_path: Path) -> None:
    model = hand_model()
    path = tmp_path / "router.npz"
    model.save(path)
    back = RouterModel.load(path)
    df = frame(["a", "b", "c"])
    for name, p in model.predict(df, "text").items():
        np.testing.assert_allclose(back.predict(df, "text")[name], p, rtol=1e-6)
    assert back.tiers == model.tiers and back.presets == model.presets
    assert back.decision == "threshold" and back.threshold == 0.85
    assert back.features.categorical == {"kind": ["a", "b", "c"]}


def test_model_file_of_another_version_or_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "router.npz"
    hand_model().save(path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(bytes(arrays["header"]).decode())
    header["version"] = 999
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    old = tmp_path / "old.npz"
    np.savez(old, **arrays)
    with pytest.raises(RouterFileError, match="version 999"):
        RouterModel.load(old)
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.zeros(3))
    with pytest.raises(RouterFileError, match="not a router model"):
        RouterModel.load(other)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, header=np.array([{"format": "x"}], dtype=object))
    with pytest.raises(RouterFileError):  # object arrays need pickle: never loaded
        RouterModel.load(pickled)
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(RouterFileError):
        RouterModel.load(tmp_path / "text.npz")


def test_model_file_of_version_1_still_loads(tmp_path: Path) -> None:
    # Version 1 files predate the shape block: they load, and predict without it.
    path = tmp_path / "router.npz"
    hand_model().save(path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(bytes(arrays["header"]).decode())
    assert header["version"] == 2
    header["version"] = 1
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(tmp_path / "v1.npz", **arrays)
    old = RouterModel.load(tmp_path / "v1.npz")
    assert old.features.shape_mean is None
    assert route_learned(frame(["a", "c"]), "text", old, 0.85).to_list() == ["cheap", "flagship"]


def test_registered_policy_reads_the_routing_fields(tmp_path: Path) -> None:
    path = tmp_path / "router.npz"
    hand_model().save(path)
    df = frame(["a", "b", "c"]).rename({"text": "__text"})
    routing = SimpleNamespace(model=str(path), threshold=None, target=None, optimize=None)
    assert "learned" in POLICIES
    # Default threshold 0.85.
    assert POLICIES["learned"](df, routing).to_list() == ["cheap", "flagship", "flagship"]  # type: ignore[arg-type]
    routing.optimize = "cost"  # 0.5: row b's cheap tier is exactly at it, which clears
    assert learned_policy(df, routing).to_list() == ["cheap", "cheap", "flagship"]
    routing.threshold = 0.1  # explicit wins over the preset
    assert learned_policy(df, routing).to_list() == ["cheap"] * 3
    with pytest.raises(ValueError, match=r"routing\.model"):
        learned_policy(df, SimpleNamespace(model=None))


def test_tier_problems_name_what_differs() -> None:
    model = hand_model()
    assert tier_problems(model, dict(TIERS)) == []
    problems = tier_problems(model, {"cheap": "m-cheap", "mid": None, "flagship": "other"})
    assert len(problems) == 2 and "'mid'" in problems[0] and "flagship=m-flag" in problems[1]


def test_resolve_threshold_order() -> None:
    model = hand_model()
    assert resolve_threshold(model) == 0.85
    assert resolve_threshold(model, optimize="quality") == 0.95
    assert resolve_threshold(model, threshold=0.3, optimize="quality") == 0.3
    with pytest.raises(KeyError, match="no preset"):
        resolve_threshold(model, optimize="cheapest")
    with pytest.raises(ValueError, match="no validation curve"):
        resolve_threshold(model, target={"min_quality": 0.9})


# --- training ---------------------------------------------------------------------------


def write_two_file(folder: Path, n: int = 150, seed: int = 0) -> None:
    """Synthetic two-file data: cheap answers 'easy' rows, mid 'medium', flagship all.
    Test rows include an id that is also a train id and a prompt that is also a train
    prompt: both must stay out of training."""
    rng = random.Random(seed)
    prompts, responses = [], []
    for i in range(n):
        level = rng.choice(list(WORDS))
        split = "test" if i % 4 == 0 else "train"
        prompts.append(
            {
                "sample_id": f"s{i}",
                "eval_name": level[0],
                "split": split,
                "prompt": f"Question {i}: {WORDS[level]} {rng.randint(0, 99)}",
            }
        )
        ok = {"cheap": level == "easy", "mid": level != "hard", "flagship": True}
        for tier, model in TIERS.items():
            agree_answer = "A" if ok[tier] else rng.choice("BCD")
            responses.append(
                {
                    "sample_id": f"s{i}",
                    "model": model,
                    "response": agree_answer,
                    "correct": float(ok[tier]),
                    "cost_usd": {"cheap": 1e-4, "mid": 2e-4, "flagship": 2e-3}[tier],
                }
            )
    prompts.append({"sample_id": "s1", "eval_name": "e", "split": "test", "prompt": "Another text"})
    prompts.append(
        {"sample_id": "dup", "eval_name": "e", "split": "test", "prompt": prompts[1]["prompt"]}
    )
    folder.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(prompts).write_parquet(folder / "prompts.parquet")
    pl.DataFrame(responses).write_parquet(folder / "responses.parquet")


def test_training_refuses_test_split_rows(tmp_path: Path) -> None:
    write_two_file(tmp_path)
    ts = from_two_file(tmp_path, TIERS, ["eval_name"])
    prompts = pl.read_parquet(tmp_path / "prompts.parquet")
    test_ids = set(prompts.filter(pl.col("split") == "test")["sample_id"])
    test_texts = set(prompts.filter(pl.col("split") == "test")["prompt"])
    assert not test_ids & set(ts.frame["id"])
    assert not test_texts & set(ts.frame["text"])
    assert ts.excluded["id_in_other_split"] == 1  # s1 is train and test
    assert ts.excluded["text_in_other_split"] == 0  # s1's own text; counted once above
    assert ts.frame.height == prompts.filter(pl.col("split") == "train").height - 1
    both_right = ts.frame.filter((pl.col("correct_cheap") == 1) & (pl.col("correct_mid") == 1))
    assert both_right.height > 0 and (both_right["agree"] == 1.0).all()
    one_right = ts.frame.filter(pl.col("correct_cheap") != pl.col("correct_mid"))
    assert one_right.height > 0 and (one_right["agree"] == 0.0).all()
    with pytest.raises(TrainingDataError, match="no answers of model"):
        from_two_file(tmp_path, {**TIERS, "mid": "nobody"})


def test_fit_learns_which_tier_is_enough(tmp_path: Path) -> None:
    write_two_file(tmp_path, n=240)
    ts = from_two_file(tmp_path, TIERS, ["eval_name"])
    opts = FitOptions(decision="threshold", folds=3, n_text=2**10)
    model = fit_router(ts, opts)
    again = fit_router(ts, opts)
    np.testing.assert_array_equal(model.heads["cheap"].coef, again.heads["cheap"].coef)
    df = pl.DataFrame(
        {"text": [f"Question 999: {w} 5" for w in WORDS.values()], "eval_name": ["e", "m", "h"]}
    )
    assert route_learned(df, "text", model, 0.8).to_list() == ["cheap", "mid", "flagship"]
    info = model.info
    assert info["rows"] == ts.frame.height and len(info["data_sha256"]) == 64
    assert set(info["validation"]["presets"]) == {"cost", "balanced", "quality"}
    assert model.curve is not None and model.threshold == model.presets["balanced"]


def test_fit_with_cascade_uses_agreement(tmp_path: Path) -> None:
    write_two_file(tmp_path, n=200)
    ts = from_two_file(tmp_path, TIERS, ["eval_name"])
    model = fit_router(ts, FitOptions(cascade=True, folds=3, n_text=2**10))
    assert {"agree", "agree_correct"} <= set(model.heads) and model.cascade
    quality, cost = model.options(model.predict(ts.frame.head(5), "text"))
    assert quality.shape == cost.shape == (5, 3)
    assert (cost[:, 0] > model.tier_cost["cheap"] + model.tier_cost["mid"] - 1e-12).all()


def test_router_train_command_writes_a_loadable_file(tmp_path: Path) -> None:
    write_two_file(tmp_path / "data")
    lines: list[str] = []
    out = tmp_path / "models" / "router.npz"
    router_train_command(
        tmp_path / "data",
        out,
        features=["eval_name"],
        tiers="cheap=m-cheap,mid=m-mid,flagship=m-flag",
        folds=3,
        echo=lines.append,
    )
    assert RouterModel.load(out).tiers == TIERS
    assert "balanced" in lines[0]
    with pytest.raises(ValueError, match=r"cheap\|mid\|flagship"):
        parse_tiers("tiny=x")


def test_normalise_answer() -> None:
    assert normalise_answer(" A) ") == normalise_answer("a") == "a"
    assert normalise_answer("...") is None and normalise_answer(None) is None


# --- tierline's own outputs ---------------------------------------------------------------


def _write(path: Path, rows: list[dict[str, object]], schema: pa.Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def _cost(rid: str, tier: str, status: str, model: str | None = None) -> dict[str, object]:
    return {
        "id": rid,
        "tier": tier,
        "model": model or TIERS[tier],
        "cost_usd": 0.001,
        "call_status": status,
        "attempt": 1,
    }


def test_training_from_earlier_runs(tmp_path: Path) -> None:
    job = tmp_path / "out" / "nightly-1"
    _write(
        job / "results" / "unit-00000.parquet",
        [
            {"id": "r1", "tier": "flagship", "model": "m-flag", "status": "ok"},
            {"id": "r2", "tier": "flagship", "model": "m-flag", "status": "ok"},
            {"id": "r4", "tier": "mid", "model": "m-mid", "status": "ok"},
        ],
        RESULTS,
    )
    _write(
        job / "costs" / "unit-00000.parquet",
        [
            _cost("r1", "cheap", "ok"),
            _cost("r1", "mid", "ok"),
            _cost("r1", "flagship", "ok"),
            _cost("r2", "cheap", "invalid_output"),
            _cost("r2", "flagship", "ok"),
            _cost("r3", "mid", "invalid_output"),
            _cost("r4", "cheap", "ok", model="some-older-model"),
            _cost("r4", "mid", "ok"),
        ],
        COSTS,
    )
    _write(
        job / "errors" / "unit-00000.parquet",
        [{"id": "r3", "error_type": "invalid_output", "tier": "mid", "message": "bad"}],
        ERRORS,
    )
    # The cascade's record: r1's cheap answer was later rejected by the agreement check.
    _write(
        job / "escalations" / "unit-00000.parquet",
        [{"id": "r1", "tier": "cheap", "accepted": False, "agree": False}],
        pa.schema(
            [
                ("id", pa.string()),
                ("tier", pa.string()),
                ("accepted", pa.bool_()),
                ("agree", pa.bool_()),
            ]
        ),
    )
    inputs = pl.DataFrame(
        {"ticket": ["r1", "r2", "r3", "r4", "r5"], "body": ["a", "b", "c", "d", "e"]}
    )
    ts = from_runs([job], inputs, id_column="ticket", text_column="body", tiers=TIERS)
    got = {r["id"]: r for r in ts.frame.to_dicts()}
    assert set(got) == {"r1", "r2", "r3", "r4"} and ts.excluded == {"no_outcome": 1}
    # r1: cheap's call was ok, but the cascade's record says its answer was not accepted
    # (cheap and mid disagreed), so flagship answered: the explicit verdict wins.
    assert got["r1"]["correct_cheap"] == 0.0 and got["r1"]["agree"] == 0.0
    assert got["r1"]["correct_flagship"] == 1.0 and got["r1"]["cost_cheap"] == 0.001
    assert got["r2"]["correct_cheap"] == 0.0 and got["r2"]["correct_flagship"] == 1.0
    assert got["r3"]["correct_mid"] == 0.0 and got["r3"]["correct_cheap"] is None
    assert got["r4"]["correct_cheap"] is None  # answered by another model then
    # Feedback judges the answer that was kept (r2's, from flagship).
    feedback = pl.DataFrame({"id": ["r2"], "correct": [0.0]})
    ts = from_runs(
        [job], inputs, id_column="ticket", text_column="body", tiers=TIERS, feedback=feedback
    )
    assert ts.frame.filter(pl.col("id") == "r2")["correct_flagship"].item() == 0.0
    with pytest.raises(TrainingDataError, match="no results"):
        from_runs([tmp_path / "empty"], inputs, id_column="ticket", text_column="body")
