"""Training sets for the learned router, and fitting one.

    ts = from_two_file(Path("data/routerbench"), features=["eval_name"])   # split == train
    ts = from_runs(["out/nightly-2024-06-01"], inputs=frame)                # tierline outputs
    model = fit_router(ts, decision="utility", cascade=True)
    model.save("router.npz")

A training set is one row per prompt: `id`, `text`, the metadata feature columns, and per
tier `correct_<tier>` (1.0 good enough, 0.0 not, null unknown) and `cost_<tier>` (USD);
with agreement data also `agree` (the cheap and mid answers agreed) and `agree_correct`.

From tierline's own outputs a tier's answer counts as good enough when it was accepted:
an attempt record's `accepted` column when present (the cascade writes one per attempt:
False for an answer rejected by validation or by the cheap/mid agreement check), else its
`call_status` (`ok` yes; `invalid_output`, `rejected`, `disagreed`, `escalated` no). Human
feedback (`id`, `correct`) overrides the label of the tier whose answer was kept. Labels are
partial (a row tells only about the tiers it tried); each head learns from the rows that
carry its label.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold

from pipeline.routing.calibrate import Outcomes, sweep
from pipeline.routing.cascade import normalise
from pipeline.routing.decide import AGREE, AGREE_OK, PRESETS, TIERS, Decision, FloatArray, pick
from pipeline.routing.features import FeatureSpec, featurize, fit_features
from pipeline.routing.learned import Head, RouterModel

DEFAULT_TIERS: dict[str, str] = {
    "cheap": "mistralai/mixtral-8x7b-chat",
    "mid": "gpt-3.5-turbo-1106",
    "flagship": "gpt-4-1106-preview",
}
REJECTED_STATUSES = frozenset({"invalid_output", "rejected", "disagreed", "escalated"})
ID, TEXT = "id", "text"


class TrainingDataError(ValueError):
    """Training data that cannot be used (missing files or columns, no rows, leaks)."""


def parse_tiers(text: str | None) -> dict[str, str]:
    """`cheap=a,mid=b,flagship=c` (any subset overrides the defaults)."""
    tiers = dict(DEFAULT_TIERS)
    for part in (text or "").split(","):
        if not part.strip():
            continue
        tier, sep, model = part.partition("=")
        if not sep or tier.strip() not in TIERS or not model.strip():
            raise ValueError(f"tier mapping {part!r} must be cheap|mid|flagship=MODEL")
        tiers[tier.strip()] = model.strip()
    return tiers


def normalise_answer(text: str | None) -> str | None:
    """Answers compared for agreement exactly as the engine's cascade compares them
    (`pipeline.routing.cascade.normalise`), so agreement labels mean what a run will do;
    None for no answer or an empty one."""
    if text is None:
        return None
    return normalise(text) or None


def _agree(a: str | None, b: str | None) -> float | None:
    x, y = normalise_answer(a), normalise_answer(b)
    return None if x is None or y is None else float(x == y)


@dataclass(frozen=True)
class TrainingSet:
    frame: pl.DataFrame
    tiers: dict[str, str]
    features: list[str] = field(default_factory=list)
    source: str = ""
    excluded: dict[str, int] = field(default_factory=dict)

    def data_hash(self) -> str:
        """SHA-256 of the rows in a stable order (ids, text, features, labels)."""
        cols = [c for c in self.frame.columns if c != TEXT] + [TEXT]
        digest = hashlib.sha256()
        for row in self.frame.sort(ID).select(cols).iter_rows():
            digest.update(json.dumps(row, default=str).encode())
        return digest.hexdigest()

    def subset(self, rows: np.ndarray) -> TrainingSet:
        """The same set, only the rows at these indices."""
        return replace(self, frame=self.frame[rows])

    def has_agreement(self) -> bool:
        return AGREE in self.frame.columns and self.frame[AGREE].null_count() < self.frame.height


# --- the two-file format (prompts.parquet + responses.parquet) ---------------------------


def from_two_file(
    data: Path,
    tiers: dict[str, str] | None = None,
    features: Sequence[str] = (),
    *,
    split: str = "train",
) -> TrainingSet:
    """Rows of `split` only. A sample id or a prompt text that also occurs in another split
    is dropped: its recorded answers cannot be told apart, or it would leak that split."""
    tiers = dict(tiers or DEFAULT_TIERS)
    prompts_path, responses_path = data / "prompts.parquet", data / "responses.parquet"
    for path in (prompts_path, responses_path):
        if not path.is_file():
            raise TrainingDataError(f"{path} does not exist")
    prompts = pl.read_parquet(prompts_path)
    missing = {"sample_id", "split", "prompt", *features} - set(prompts.columns)
    if missing:
        raise TrainingDataError(f"{prompts_path} lacks column(s) {', '.join(sorted(missing))}")
    prompts = prompts.with_columns(pl.col("sample_id").cast(pl.String))
    others = prompts.filter(pl.col("split") != split)
    mine = prompts.filter(pl.col("split") == split)
    shared_id = pl.col("sample_id").is_in(others["sample_id"].implode())
    shared_text = (
        pl.col("prompt").str.strip_chars().is_in(others["prompt"].str.strip_chars().implode())
    )
    excluded = {
        "id_in_other_split": int(mine.select(shared_id.sum()).item()),
        "text_in_other_split": int(mine.select((shared_text & ~shared_id).sum()).item()),
    }
    mine = mine.filter(~shared_id & ~shared_text).unique(
        "sample_id", keep="first", maintain_order=True
    )
    excluded["duplicate_id"] = int(
        prompts.filter(pl.col("split") == split).height - mine.height - sum(excluded.values())
    )
    frame = mine.select(
        pl.col("sample_id").alias(ID), pl.col("prompt").alias(TEXT), *map(pl.col, features)
    )
    responses = pl.read_parquet(responses_path).with_columns(pl.col("sample_id").cast(pl.String))
    for tier, model in tiers.items():
        rec = responses.filter(pl.col("model") == model).unique(
            "sample_id", keep="first", maintain_order=True
        )
        if rec.height == 0:
            raise TrainingDataError(f"{responses_path}: no answers of model {model!r} ({tier})")
        rec = rec.select(
            pl.col("sample_id").alias(ID),
            pl.col("correct").cast(pl.Float64).alias(f"correct_{tier}"),
            pl.col("cost_usd").cast(pl.Float64).alias(f"cost_{tier}"),
            pl.col("response").alias(f"_answer_{tier}"),
        )
        frame = frame.join(rec, on=ID, how="left", maintain_order="left")
    if "cheap" in tiers and "mid" in tiers:
        pairs = zip(frame["_answer_cheap"].to_list(), frame["_answer_mid"].to_list(), strict=True)
        agree = [_agree(a, b) for a, b in pairs]
        frame = frame.with_columns(pl.Series(AGREE, agree, dtype=pl.Float64)).with_columns(
            (pl.col(AGREE) * pl.col("correct_cheap")).alias(AGREE_OK)
        )
    frame = frame.drop([c for c in frame.columns if c.startswith("_answer_")])
    leaked = set(frame[ID].to_list()) & set(others["sample_id"].to_list())
    if leaked:  # cannot happen after the filter above; kept as the guard the tests rely on
        raise TrainingDataError(f"{len(leaked)} training ids also belong to another split")
    if frame.height == 0:
        raise TrainingDataError(f"{prompts_path}: no usable rows with split == {split!r}")
    return TrainingSet(frame, tiers, list(features), f"two-file:{data.name}:{split}", excluded)


# --- tierline's own outputs --------------------------------------------------------------


def _read_tables(job_uri: str) -> dict[str, list[pl.DataFrame]]:
    """The committed unit files of one job output prefix, by kind (results, costs, ...)."""
    from pipeline.jobfolder import JobFolder

    folder = JobFolder.at(job_uri)
    store = folder.store
    out: dict[str, list[pl.DataFrame]] = {}
    commits = folder.commit_markers()
    if commits:
        for info in commits:
            entry = json.loads(store.read_bytes(info.path))
            for kind, value in entry.items():
                if isinstance(value, dict) and str(value.get("path", "")).endswith(".parquet"):
                    data = store.read_bytes(value["path"])
                    out.setdefault(kind, []).append(pl.read_parquet(io.BytesIO(data)))
    else:  # no markers (files copied by hand): every file under each folder
        for kind in ("results", "costs", "errors", "escalations"):
            for info in store.list_files(kind, suffix=".parquet"):
                out.setdefault(kind, []).append(
                    pl.read_parquet(io.BytesIO(store.read_bytes(info.path)))
                )
    return out


def _attempt_labels(df: pl.DataFrame) -> pl.DataFrame:
    """id, tier, model?, label, cost, agree? per attempt record (costs, escalations)."""
    if not {ID, "tier"} <= set(df.columns):
        return _EMPTY_ATTEMPTS
    status = (
        pl.when(pl.col("call_status") == "ok")
        .then(1.0)
        .when(pl.col("call_status").is_in(list(REJECTED_STATUSES)))
        .then(0.0)
        if "call_status" in df.columns
        else pl.lit(None, dtype=pl.Float64)
    )
    accepted = (
        pl.col("accepted").cast(pl.Float64)
        if "accepted" in df.columns
        else pl.lit(None, dtype=pl.Float64)
    )
    return df.select(
        pl.col(ID).cast(pl.String),
        pl.col("tier").cast(pl.String),
        (pl.col("model") if "model" in df.columns else pl.lit(None)).cast(pl.String).alias("model"),
        pl.coalesce(accepted, status).cast(pl.Float64).alias("label"),
        accepted.is_not_null().alias("explicit"),
        (pl.col("cost_usd") if "cost_usd" in df.columns else pl.lit(None))
        .cast(pl.Float64)
        .alias("cost"),
        (pl.col("agree") if "agree" in df.columns else pl.lit(None)).cast(pl.Float64).alias(AGREE),
    )


def from_runs(
    jobs: Sequence[str | Path],
    inputs: pl.DataFrame,
    *,
    id_column: str = "id",
    text_column: str = "text",
    features: Sequence[str] = (),
    tiers: dict[str, str] | None = None,
    feedback: pl.DataFrame | None = None,
) -> TrainingSet:
    """Labels from earlier runs' outputs (each a `<output>/<job_id>` prefix, local or S3);
    text and feature columns from `inputs` (the runs' input rows), joined on id."""
    attempts: list[pl.DataFrame] = [_EMPTY_ATTEMPTS]
    kept: list[pl.DataFrame] = [pl.DataFrame(schema={ID: pl.String, "tier": pl.String})]
    for job in jobs:
        for kind, frames in _read_tables(str(job)).items():
            for df in frames:
                if kind == "results":
                    if {ID, "tier"} <= set(df.columns):
                        kept.append(df.select(pl.col(ID).cast(pl.String), pl.col("tier")))
                elif kind == "errors":
                    if {ID, "tier", "error_type"} <= set(df.columns):
                        bad = df.filter(pl.col("error_type") == "invalid_output")
                        attempts.append(
                            _attempt_labels(bad.with_columns(call_status=pl.col("error_type")))
                        )
                else:  # costs, escalation records, anything shaped like attempts
                    attempts.append(_attempt_labels(df))
    final = pl.concat(kept, how="vertical_relaxed").unique(ID, keep="last", maintain_order=True)
    rec = pl.concat(
        [*attempts, final.with_columns(label=pl.lit(1.0))], how="diagonal_relaxed"
    ).drop_nulls([ID, "tier"])
    if rec.height == 0:
        raise TrainingDataError(f"no results or attempt records under {', '.join(map(str, jobs))}")
    if tiers is None:
        named = rec.drop_nulls("model").group_by("tier", "model").len()
        top = named.sort("len", "model", descending=[True, False]).unique(
            "tier", keep="first", maintain_order=True
        )
        tiers = {t: m for t, m in top.select("tier", "model").iter_rows() if t in TIERS}
    else:  # a tier that pointed at another model then says nothing about this one
        rec = rec.filter(
            pl.col("model").is_null()
            | (pl.col("model") == pl.col("tier").replace_strict(tiers, default=None))
        )
    # An explicit verdict (the cascade's `accepted`) outranks what call statuses suggest.
    rec = rec.with_columns(pl.col("explicit").fill_null(False))
    per = rec.group_by(ID, "tier").agg(
        pl.when(pl.col("explicit").any())
        .then(pl.col("label").filter(pl.col("explicit")).max())
        .otherwise(pl.col("label").max())
        .alias("label"),
        pl.when(pl.col("cost").is_not_null().any()).then(pl.col("cost").sum()).alias("cost"),
        pl.col(AGREE).max(),
    )
    if feedback is not None:
        verdict = final.join(
            feedback.select(pl.col(ID).cast(pl.String), pl.col("correct").cast(pl.Float64)), on=ID
        )
        per = (
            per.join(verdict, on=[ID, "tier"], how="left")
            .with_columns(label=pl.coalesce("correct", "label"))
            .drop("correct")
        )
    frame = inputs.select(
        pl.col(id_column).cast(pl.String).alias(ID),
        pl.col(text_column).cast(pl.String).alias(TEXT),
        *map(pl.col, features),
    ).unique(ID, keep="last", maintain_order=True)
    for tier in [t for t in TIERS if t in tiers]:
        t = per.filter(pl.col("tier") == tier).select(
            ID, pl.col("label").alias(f"correct_{tier}"), pl.col("cost").alias(f"cost_{tier}")
        )
        frame = frame.join(t, on=ID, how="left", maintain_order="left")
    if "correct_cheap" in frame.columns:
        agree = per.filter(pl.col("tier") == "cheap").select(ID, AGREE)
        frame = frame.join(agree, on=ID, how="left", maintain_order="left").with_columns(
            (pl.col(AGREE) * pl.col("correct_cheap")).alias(AGREE_OK)
        )
    labelled = pl.any_horizontal([pl.col(f"correct_{t}").is_not_null() for t in tiers])
    excluded = {"no_outcome": int(frame.select((~labelled).sum()).item())}
    frame = frame.filter(labelled)
    if frame.height == 0:
        raise TrainingDataError("no input row has an outcome in the given runs")
    source = "runs:" + ",".join(map(str, jobs))
    return TrainingSet(frame, dict(tiers), list(features), source, excluded)


_EMPTY_ATTEMPTS = pl.DataFrame(
    schema={
        ID: pl.String,
        "tier": pl.String,
        "model": pl.String,
        "label": pl.Float64,
        "explicit": pl.Boolean,
        "cost": pl.Float64,
        AGREE: pl.Float64,
    }
)


def combine(sets: Sequence[TrainingSet]) -> TrainingSet:
    """Several training sets as one (same tier models and features required)."""
    first = sets[0]
    for other in sets[1:]:
        if other.tiers != first.tiers or other.features != first.features:
            raise TrainingDataError("training sets disagree on tier models or features")
    frame = pl.concat([s.frame for s in sets], how="diagonal_relaxed")
    excluded: dict[str, int] = {}
    for s in sets:
        for k, v in s.excluded.items():
            excluded[k] = excluded.get(k, 0) + v
    return TrainingSet(
        frame, first.tiers, first.features, "+".join(s.source for s in sets), excluded
    )


# --- fitting -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FitOptions:
    decision: Decision = "utility"
    cascade: bool = False  # cheap rows are checked by cheap/mid agreement in the engine
    folds: int = 5  # cross-fitted validation: every training row is validation once
    c: float = 1.0  # inverse L2 strength of each logistic regression
    n_text: int = 2**18
    ngram_max: int = 2
    seed: int = 0
    # The text's shape (question form, code/maths markers, options...): signal that carries
    # over to tasks the router never saw, unlike a benchmark-name column.
    shape: bool = True


def label_column(head: str) -> str:
    return head if head in (AGREE, AGREE_OK) else f"correct_{head}"


def _fit_head(x: object, y: FloatArray, c: float, seed: int) -> Head:
    width = x.shape[1]  # type: ignore[attr-defined]
    if y.size == 0 or np.unique(y).size < 2:
        rate = float(np.clip(y.mean() if y.size else 0.5, 1e-3, 1 - 1e-3))
        return Head(np.zeros(width), float(np.log(rate / (1 - rate))))
    # liblinear: about 10x faster than lbfgs on this wide sparse matrix, same AUC.
    lr = LogisticRegression(C=c, solver="liblinear", max_iter=1000, random_state=seed)
    lr.fit(x, y.astype(np.int64))
    return Head(lr.coef_.ravel().astype(np.float64), float(lr.intercept_[0]))


def _fit_heads(
    frame: pl.DataFrame, spec: FeatureSpec, names: list[str], c: float, seed: int
) -> dict[str, Head]:
    x = featurize(frame, TEXT, spec)
    heads = {}
    for name in names:
        y = frame[label_column(name)].cast(pl.Float64).to_numpy()
        mask = ~np.isnan(y)
        heads[name] = _fit_head(x[mask], y[mask], c, seed)
    return heads


def fit_router(ts: TrainingSet, options: FitOptions | None = None) -> RouterModel:
    """Fit every head on all rows; calibrate thresholds on cross-fitted predictions."""
    opt = options or FitOptions()
    frame = ts.frame
    tiers = [t for t in TIERS if t in ts.tiers and f"correct_{t}" in frame.columns]
    if len(tiers) < 2 or tiers[-1] != "flagship":
        raise TrainingDataError(f"need flagship and at least one cheaper tier; have {tiers}")
    if opt.cascade and (tiers != list(TIERS) or not ts.has_agreement()):
        raise TrainingDataError("cascade needs cheap, mid and flagship and agreement labels")
    names = [*tiers, *((AGREE, AGREE_OK) if opt.cascade else ())]
    tier_cost = {}
    for t in tiers:
        known = frame[f"cost_{t}"].drop_nulls() if f"cost_{t}" in frame.columns else None
        if known is None or known.len() == 0:
            raise TrainingDataError(f"no recorded cost for tier {t!r}")
        tier_cost[t] = float(known.mean())  # type: ignore[arg-type]

    def features(rows: pl.DataFrame) -> FeatureSpec:
        return fit_features(
            rows, TEXT, ts.features, n_text=opt.n_text, ngram_max=opt.ngram_max, shape=opt.shape
        )

    spec = features(frame)
    heads = _fit_heads(frame, spec, names, opt.c, opt.seed)
    n = frame.height
    folds = max(2, min(opt.folds, n))
    oof = {name: np.full(n, np.nan) for name in names}
    for train_idx, val_idx in KFold(folds, shuffle=True, random_state=opt.seed).split(np.arange(n)):
        part = frame[train_idx]
        fold_spec = features(part)
        fold_heads = _fit_heads(part, fold_spec, names, opt.c, opt.seed)
        x_val = featurize(frame[val_idx], TEXT, fold_spec)
        for name, head in fold_heads.items():
            oof[name][val_idx] = head.predict(x_val)
    draft = RouterModel(
        {t: ts.tiers[t] for t in tiers}, spec, heads, tier_cost, opt.decision, opt.cascade
    )
    quality, cost = draft.options(oof)
    outcomes = Outcomes(
        correct=np.column_stack([frame[f"correct_{t}"].cast(pl.Float64).to_numpy() for t in tiers]),
        cost=np.column_stack([frame[f"cost_{t}"].cast(pl.Float64).to_numpy() for t in tiers]),
        agree=frame[AGREE].cast(pl.Float64).to_numpy() if opt.cascade else None,
    )
    curve = sweep(quality, cost, outcomes, decision=opt.decision, cascade=opt.cascade)
    picks = {name: pick(curve, target) for name, target in PRESETS.items()}
    aucs = {}
    for name in names:
        y = frame[label_column(name)].cast(pl.Float64).to_numpy()
        mask = ~np.isnan(y)
        if np.unique(y[mask]).size == 2:
            aucs[name] = round(float(roc_auc_score(y[mask], oof[name][mask])), 4)
    info = {
        "data_sha256": ts.data_hash(),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": ts.source,
        "rows": n,
        "rows_labelled": {
            name: int(frame[label_column(name)].is_not_null().sum()) for name in names
        },
        "excluded": ts.excluded,
        "features": ts.features,
        "options": {
            "decision": opt.decision,
            "cascade": opt.cascade,
            "folds": folds,
            "c": opt.c,
            "n_text": opt.n_text,
            "ngram_max": opt.ngram_max,
            "seed": opt.seed,
            "shape": opt.shape,
        },
        "validation": {
            "method": f"{folds}-fold cross-fitted predictions on the training rows",
            "auc": aucs,
            "presets": {name: p.as_dict() for name, p in picks.items()},
        },
    }
    return RouterModel(
        tiers=draft.tiers,
        features=spec,
        heads=heads,
        tier_cost=tier_cost,
        decision=opt.decision,
        cascade=opt.cascade,
        threshold=picks["balanced"].threshold,
        presets={name: p.threshold for name, p in picks.items()},
        curve=curve,
        info=info,
    )
