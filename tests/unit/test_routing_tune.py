"""The policy tuner on synthetic recorded answers: the pick is the cheapest certified policy,
the promise holds on held-out rows about as often as stated, the fragment is a valid spec
part, the learned pick routes in the engine as it was measured, and bad input fails in
one line that names the file and the fix. No ../shared needed."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from pipeline.cli.router import router_tune_command
from pipeline.routing.bounds import (
    betting_lower,
    betting_rejects,
    clopper_pearson_lower,
    rows_needed_betting,
    rows_needed_cp,
)
from pipeline.routing.features import SHAPE_NAMES, fit_features, shape_matrix
from pipeline.routing.labelled import from_labelled_frame, read_labelled_run
from pipeline.routing.learned import RouterModel, route_learned
from pipeline.routing.policies import Policy, PolicyInputs, evaluate_policy
from pipeline.routing.recorded import RecordedAnswers, TuneDataError, load_recorded
from pipeline.routing.tune import CannotPromise, apply_pick, tune
from pipeline.routing.tune_report import render_fragment, render_svg, render_table_rows
from pipeline.routing.tune_router import cross_fitted, router_probs
from schemas.job import parse_spec

MODELS = ("vendor/tiny", "vendor/small", "vendor/mid", "vendor/big")
COST = {"vendor/tiny": 1e-5, "vendor/small": 3e-5, "vendor/mid": 1.5e-4, "vendor/big": 1e-3}
# P(right) by difficulty (easy, medium, hard): cheap models are fine on easy rows only.
SKILL = {
    "vendor/tiny": (0.93, 0.55, 0.2),
    "vendor/small": (0.96, 0.7, 0.3),
    "vendor/mid": (0.97, 0.85, 0.55),
    "vendor/big": (0.99, 0.95, 0.85),
}
ASKS = (
    "What is {a} plus {b}?",
    "Which of these is a mammal?\nA) trout\nB) whale\nC) shark\nD) eel",
    "Prove that the sum of the first {a} odd numbers is a square; write the proof in full.",
)


def synthetic(n: int, seed: int, *, texts: bool = True) -> RecordedAnswers:
    """n prompts answered by four models; difficulty shows in the text (for the router)."""
    rng = np.random.default_rng(seed)
    level = rng.choice(3, size=n, p=[0.55, 0.3, 0.15])
    truth = rng.integers(0, 4, size=n)
    correct = np.column_stack(
        [rng.uniform(size=n) < np.array(SKILL[m])[level] for m in MODELS]
    ).astype(np.float64)
    wrong = (truth[:, None] + rng.integers(1, 4, size=(n, len(MODELS)))) % 4
    answers = np.where(correct == 1.0, truth[:, None], wrong).astype(np.int64)
    cost = np.array([[COST[m] for m in MODELS]]) * rng.uniform(0.8, 1.2, size=(n, len(MODELS)))
    text = [ASKS[lv].format(a=rng.integers(2, 99), b=rng.integers(2, 99)) for lv in level]
    return RecordedAnswers(
        ids=np.array([f"s{seed}-{i}" for i in range(n)], dtype=object),
        texts=np.array(text, dtype=object) if texts else None,
        models=MODELS,
        correct=correct,
        cost=cost,
        answers=answers,
        meta={"eval_name": np.array(["easy", "mid", "hard"], dtype=object)[level]},
        source="synthetic",
    )


def write_two_file(folder: Path, data: RecordedAnswers) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {
            "sample_id": list(data.ids),
            "prompt": list(data.texts if data.texts is not None else data.ids),
            "eval_name": list(data.meta["eval_name"]),
            "split": ["train" if i % 4 else "test" for i in range(data.n)],
        }
    ).write_parquet(folder / "prompts.parquet")
    rows = [
        {
            "sample_id": data.ids[i],
            "model": m,
            "response": "ABCD"[data.answers[i, j]],
            "correct": data.correct[i, j],
            "cost_usd": data.cost[i, j],
        }
        for i in range(data.n)
        for j, m in enumerate(data.models)
    ]
    pl.DataFrame(rows).write_parquet(folder / "responses.parquet")


def spec_with(fragment: str, models: tuple[str, ...]) -> dict[str, object]:
    """A whole job spec around a tuner fragment, every recorded model priced."""
    price = {
        "input_per_mtok": 1.0,
        "output_per_mtok": 2.0,
        "context_window": 8000,
        "max_output_tokens": 1000,
        "provider_family": "openai",
    }
    return {
        "name": "tuned",
        "task": {"kind": "generate"},
        "input": {"uri": "in/", "id_column": "id", "text_columns": ["text"]},
        "output": {"uri": "out/"},
        "providers": {"sim": {"kind": "sim"}},
        **yaml.safe_load(fragment),
        "prices": {
            m: {**price, "max_output_tokens": 1000, "provider_family": "openai"} for m in models
        },
    }


@pytest.fixture(scope="module")
def tuned() -> tuple[RecordedAnswers, object]:
    data = synthetic(900, seed=1)
    return data, tune(data, target=0.95, confidence=0.9, seed=0, split=None)


# --- the pick ---------------------------------------------------------------------------


def test_pick_is_the_cheapest_policy_meeting_the_bound(tuned: tuple) -> None:
    data, result = tuned
    certified = [r for r in result.table if r.certified]
    assert result.pick is not None and result.pick.certified
    assert result.pick.cost_usd == min(r.cost_usd for r in certified)
    assert all(r.lower_bound >= 0.95 - 1e-3 for r in certified)
    assert result.table[0].policy == Policy("single", ("vendor/big",))  # flagship first
    # One split is one fixed sequence: certified rows are exactly the leading ones, and the
    # first that is not certified is the one whose bound missed the target.
    one = tune(data, target=0.95, confidence=0.9, seed=0, split=None, splits=1)
    flags = [r.certified for r in one.table]
    assert flags == sorted(flags, reverse=True) and any(flags)
    if not all(flags):
        assert one.table[flags.index(False)].lower_bound < 0.95 + 1e-3
    # Cheaper than flagship, and what the table says is what the data say.
    assert result.pick.cost_share < 0.7
    if not result.pick.policy.kind.startswith("learned"):
        cols = [data.models.index(m) for m in result.models]
        inputs = PolicyInputs(
            data.correct[:, cols], data.cost[:, cols], data.answers[:, cols], result.models
        )
        correct, cost, _ = evaluate_policy(inputs, result.pick.policy)
        assert correct.mean() == pytest.approx(result.pick.accuracy)
        assert cost.mean() == pytest.approx(result.pick.cost_usd)


def test_promise_holds_on_held_out_rows_about_as_often_as_stated() -> None:
    # Text-free rows (fixed policies only) keep this fast; the learned policies' guarantee
    # is measured on real data by tests/benchmarks/router.py.
    confidence, runs, hits, shares = 0.8, 40, 0, []
    held_out = synthetic(20_000, seed=999, texts=False)
    flag = held_out.models.index("vendor/big")
    for r in range(runs):
        result = tune(
            synthetic(500, seed=100 + r, texts=False),
            target=0.95,
            confidence=confidence,
            seed=r,
            split=None,
        )
        correct, cost, _ = apply_pick(result, held_out)
        hits += correct.mean() >= 0.95 * held_out.correct[:, flag].mean()
        shares.append(cost.sum() / held_out.cost[:, flag].sum())
    assert hits / runs >= confidence - 0.1
    assert np.mean(shares) < 0.8  # and it does not buy the promise with flagship alone


def test_fragment_is_a_valid_spec_part(tuned: tuple) -> None:
    data, result = tuned
    fragment = render_fragment(result, provider="sim", model_path="router.npz")
    spec = parse_spec(spec_with(fragment, data.models))
    deployments = {d.model for d in spec.deployments()}
    assert deployments <= set(data.models)
    for policy in (
        Policy("single", ("vendor/big",)),
        Policy("agree", ("vendor/tiny", "vendor/small", "vendor/big")),
        Policy("vote", ("vendor/tiny", "vendor/small", "vendor/mid", "vendor/big")),
        Policy("learned+agree", ("vendor/tiny", "vendor/mid", "vendor/big"), 0.2),
    ):
        pick = result.pick.__class__(policy, 0.9, 1e-4, 0.1, 0.2, 0.96, True)
        text = render_fragment(result.__class__(**{**result.__dict__, "pick": pick}))
        parsed = parse_spec(spec_with(text, data.models))
        assert parsed.routing.policy in ("rules", "cascade", "learned")
        if policy.kind == "vote":
            assert parsed.routing.vote is not None and len(parsed.routing.vote.deployments) == 3
        if policy.kind.endswith("agree"):
            assert parsed.routing.cascade is not None and parsed.routing.cascade.agree


def test_table_and_svg(tuned: tuple) -> None:
    _, result = tuned
    rows = render_table_rows(result)
    assert len(rows) == len(result.table) and all(len(r) == 6 for r in rows)
    root = ET.fromstring(render_svg(result))
    assert root.tag.endswith("svg")
    assert len(root.findall(".//{http://www.w3.org/2000/svg}circle")) >= len(rows)


# --- the learned pick runs in the engine as the tuner measured it ---------------------------


def test_learned_router_file_routes_as_measured(tmp_path: Path) -> None:
    data = synthetic(600, seed=3)
    models = ("vendor/tiny", "vendor/mid", "vendor/big")
    heads = cross_fitted(data, models, "vendor/big", features=(), folds=4, seed=0)
    assert heads is not None
    policy = Policy("learned", models, 0.3)
    cols = [data.models.index(m) for m in models]
    costs = {t: float(data.cost[:, data.models.index(m)].mean()) for t, m in policy.tiers().items()}
    router = heads.router(policy, costs)
    router.save(tmp_path / "router.npz")
    loaded = RouterModel.load(tmp_path / "router.npz")
    assert loaded.features.shape_width == len(SHAPE_NAMES)
    test = synthetic(300, seed=4)
    assert test.texts is not None
    frame = pl.DataFrame({"text": list(test.texts)})
    tiers = route_learned(frame, "text", loaded, 0.3).to_list()
    index = {t: i for i, t in enumerate(policy.tiers())}
    chosen = np.array([cols[index[t]] for t in tiers])
    engine_correct = test.correct[np.arange(test.n), chosen]
    inputs = PolicyInputs(
        test.correct[:, cols],
        test.cost[:, cols],
        test.answers[:, cols],
        models,
        router_probs(router, policy, test),
    )
    tuner_correct, _, _ = evaluate_policy(inputs, policy, router.tier_cost)
    assert (tuner_correct == engine_correct).all()
    assert len(set(tiers)) > 1  # the router does route: the text says how hard a row is


def test_shape_features_read_the_form_of_the_ask() -> None:
    texts = [
        "Which is a mammal?\nA) trout\nB) whale\nC) eel",
        "Write a function that sorts a list.\n```python\ndef f(x):\n    return x\n```",
        "Calculate 12 + 30 = ?",
        "Bonjour, ça va très bien aujourd'hui",
    ]
    x = shape_matrix(texts)
    col = {n: i for i, n in enumerate(SHAPE_NAMES)}
    assert x.shape == (4, len(SHAPE_NAMES))
    assert np.exp(x[0, col["options"]]) - 1 == 3  # three option lines
    assert x[0, col["question"]] > 0 and x[0, col["wh_start"]] > 0
    assert x[1, col["code"]] > 0 and x[1, col["imperative"]] > 0 and x[0, col["code"]] == 0
    assert x[2, col["maths"]] > 0 and x[3, col["non_ascii"]] > 0
    spec = fit_features(pl.DataFrame({"t": texts}), "t", shape=True, n_text=2**10)
    assert spec.width == 2**10 + 1 + len(SHAPE_NAMES)


# --- bounds -----------------------------------------------------------------------------


def test_clopper_pearson_and_rows_needed() -> None:
    assert float(clopper_pearson_lower(850, 1000, 0.1)) == pytest.approx(0.8345, abs=1e-4)
    assert float(clopper_pearson_lower(0, 10, 0.1)) == 0.0
    n = rows_needed_cp(0.9, 0.85, 0.1)
    assert n is not None and clopper_pearson_lower(np.floor(0.9 * n), n, 0.1) >= 0.85
    assert (rows_needed_cp(0.88, 0.85, 0.1) or 0) > n  # closer to the target: more rows
    assert rows_needed_cp(0.8, 0.85, 0.1) is None


def test_betting_bound_covers_the_mean_at_its_level() -> None:
    rng = np.random.default_rng(0)
    values, probs = np.array([0.0, 0.5, 1.0]), np.array([0.2, 0.5, 0.3])
    x = rng.choice(values, size=(400, 300), p=probs)
    low = betting_lower(x, delta=0.2)
    mean = float(values @ probs)
    assert (low <= mean).mean() >= 0.8
    assert (mean - low).mean() < 0.1  # and is not uselessly loose
    # Rejecting "mean <= m" agrees with the bound being above m.
    rejects = betting_rejects(x, 0.45, 0.2)
    assert ((low > 0.45 + 1e-6) <= rejects).all()
    exact = np.repeat(values, (300 * probs).astype(int))  # mean 0.55, sd 0.35
    need = rows_needed_betting(exact, 0.5, 0.2)
    # A normal approximation of the same test says 2 ln(1/delta) sd^2 / 0.05^2, about 160.
    assert need is not None and 80 < need < 400
    assert (rows_needed_betting(exact, 0.52, 0.2) or 0) > need
    assert rows_needed_betting(exact, 0.6, 0.2) is None


# --- bad input: one line, naming the file and the fix ---------------------------------------


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


def test_a_named_model_without_answers(tmp_path: Path) -> None:
    write_two_file(tmp_path, synthetic(40, seed=5))
    with pytest.raises(TuneDataError) as info:
        load_recorded(tmp_path, ["vendor/tiny", "vendor/huge"])
    text = one_line(info.value)
    assert "responses.parquet" in text and "'vendor/huge'" in text and "recorded models" in text
    with pytest.raises(TuneDataError, match="no answers of model 'vendor/huge'"):
        tune(load_recorded(tmp_path), deployments=["vendor/tiny", "vendor/huge"])


def test_a_labelled_run_without_its_label_column(tmp_path: Path) -> None:
    results = pl.DataFrame({"id": ["a"], "model": ["m"], "output": ["x"], "cost_usd": [0.1]})
    with pytest.raises(TuneDataError) as info:
        from_labelled_frame(results, label="verdict", source="out/sample/results")
    text = one_line(info.value)
    assert "out/sample/results" in text and "'verdict'" in text and "--label" in text


def test_too_few_rows_says_how_many_more(tmp_path: Path) -> None:
    with pytest.raises(CannotPromise) as info:
        tune(synthetic(40, seed=6, texts=False), target=0.95, split=None)
    text = one_line(info.value)
    assert "synthetic" in text and "cannot promise" in text
    more = int(text.rsplit("label about ", 1)[1].split()[0])
    assert more > 0 and info.value.result is not None
    assert info.value.result.rows_needed == 40 + more


def test_an_absolute_target_above_the_flagship(tmp_path: Path) -> None:
    data = synthetic(300, seed=7, texts=False)
    with pytest.raises(TuneDataError) as info:
        tune(data, target=0.999, absolute=True, split=None)
    text = one_line(info.value)
    assert "above what any policy reaches" in text and "lower --target" in text
    assert "vendor/big" in text


def test_ids_that_do_not_match_between_the_two_files(tmp_path: Path) -> None:
    write_two_file(tmp_path, synthetic(30, seed=8))
    responses = pl.read_parquet(tmp_path / "responses.parquet")
    responses.with_columns(pl.col("sample_id") + "-x").write_parquet(tmp_path / "responses.parquet")
    with pytest.raises(TuneDataError) as info:
        load_recorded(tmp_path)
    text = one_line(info.value)
    assert "responses.parquet" in text and "not in prompts.parquet" in text and "same" in text


# --- loaders --------------------------------------------------------------------------------


def test_two_file_loader_keeps_splits_apart(tmp_path: Path) -> None:
    data = synthetic(80, seed=9)
    write_two_file(tmp_path, data)
    prompts = pl.read_parquet(tmp_path / "prompts.parquet")
    # One id in both splits: its answers cannot be told apart, so it is dropped.
    twin = prompts.head(1).with_columns(split=pl.lit("test"))
    pl.concat([prompts.with_columns(split=pl.lit("train")), twin]).write_parquet(
        tmp_path / "prompts.parquet"
    )
    back = load_recorded(tmp_path)
    assert back.n == 79 and back.excluded["id_in_two_splits"] == 1
    assert set(back.models) == set(MODELS) and back.texts is not None
    j = back.models.index("vendor/big")
    i = list(data.ids).index(back.ids[0])
    assert back.correct[0, j] == data.correct[i, MODELS.index("vendor/big")]


def test_labelled_run_becomes_recorded_answers(tmp_path: Path) -> None:
    results = pl.DataFrame(
        {
            "id": ["1", "1", "2", "2", "3", "3"],
            "model": ["a", "b", "a", "b", "a", "b"],
            "output": ["Yes", "yes.", "no", "yes", "x", "y"],
            "verdict": ["correct", "yes", "wrong", "1", None, "0"],
        }
    )
    costs = pl.DataFrame(
        {
            "id": ["1", "1", "1", "2", "2", "3", "3"],
            "model": ["a", "b", "b", "a", "b", "a", "b"],
            "cost_usd": [1.0, 2.0, 0.5, 1.0, 2.0, 1.0, 2.0],
        }
    )
    data = from_labelled_frame(results, label="verdict", source="run", costs=costs)
    assert data.models == ("a", "b") and data.n == 2  # row 3 has an unlabelled answer
    assert data.excluded["unlabelled"] == 1 and data.excluded["missing_answer"] == 1
    assert data.correct.tolist() == [[1.0, 1.0], [0.0, 1.0]]
    assert data.cost.tolist() == [[1.0, 2.5], [1.0, 2.0]]  # every billed call counts
    assert data.answers[0, 0] == data.answers[0, 1] != data.answers[1, 0]  # 'Yes' = 'yes.'
    for kind, frame in (("results", results.filter(pl.col("id") != "3")), ("costs", costs)):
        (tmp_path / "job" / kind).mkdir(parents=True)
        frame.write_parquet(tmp_path / "job" / kind / "unit-00000.parquet")
    inputs = pl.DataFrame({"ticket": ["1", "2"], "body": ["first", "second"]})
    run = read_labelled_run(
        [str(tmp_path / "job")],
        label="verdict",
        inputs=inputs,
        id_column="ticket",
        text_column="body",
    )
    assert run.n == 2 and run.texts is not None and list(run.texts) == ["first", "second"]


def test_cli_tune_writes_fragment_plot_and_json(tmp_path: Path) -> None:
    write_two_file(tmp_path / "data", synthetic(1200, seed=10))
    lines: list[str] = []
    result = router_tune_command(
        tmp_path / "data",
        out=tmp_path / "routing.yaml",
        svg=tmp_path / "curve.svg",
        json_path=tmp_path / "tune.json",
        echo=lines.append,
    )
    fragment = (tmp_path / "routing.yaml").read_text()
    parse_spec(spec_with(fragment, MODELS))
    assert result.pick is not None and result.pick.policy.name in fragment
    if result.router is not None:
        assert RouterModel.load(tmp_path / "router.npz").tiers == result.pick.policy.tiers()
    doc = json.loads((tmp_path / "tune.json").read_text())
    assert doc["pick"] == result.pick.policy.name and doc["table"]
    ET.fromstring((tmp_path / "curve.svg").read_text())
    assert "promised" in lines[-1]
    with pytest.raises(ValueError, match="--label"):
        router_tune_command(None, runs=["out/x"])


def test_cli_tune_from_a_labelled_sample_run(tmp_path: Path) -> None:
    data = synthetic(800, seed=11, texts=False)
    results = pl.DataFrame(
        {
            "id": np.repeat(data.ids, len(MODELS)).tolist(),
            "model": list(MODELS) * data.n,
            "output": ["ABCD"[a] for a in data.answers.ravel()],
            "verdict": data.correct.ravel().astype(bool).tolist(),
        }
    )
    costs = results.select("id", "model").with_columns(cost_usd=pl.Series(data.cost.ravel()))
    for kind, frame in (("results", results), ("costs", costs)):
        (tmp_path / "run" / kind).mkdir(parents=True)
        frame.write_parquet(tmp_path / "run" / kind / "unit-00000.parquet")
    result = router_tune_command(
        None,
        runs=[str(tmp_path / "run")],
        label="verdict",
        out=tmp_path / "routing.yaml",
        echo=lambda _: None,
    )
    assert result.rows == 800 and result.router is None  # no text: text-free policies only
    parse_spec(spec_with((tmp_path / "routing.yaml").read_text(), MODELS))
    with pytest.raises(TuneDataError, match="no column 'ok'"):
        router_tune_command(None, runs=[str(tmp_path / "run")], label="ok")
