"""The `learned` policy: a small model predicts, per tier, the chance that the tier's answer
is good enough, and each row goes to the cheapest tier worth its price.

    model = RouterModel.load("router.npz")
    tiers = route_learned(df, "text", model, threshold=model.preset("balanced"))

Features (pipeline.routing.features): log text length, hashed word 1-2-grams weighted by
tf-idf, the metadata columns the model was trained with (categories one-hot, numbers
standardised) and, from model version 2, the shape of the text (question form, code and
maths markers, options...). One logistic head per tier (optionally two more for the
cheap/mid agreement cascade) is applied as a sparse matrix product over the whole unit.

Two decision rules, fixed when the model is trained (both take one number, `threshold`):

- `threshold`: the cheapest tier whose probability is at least `threshold`; a row no tier
  clears goes to its most probable tier.
- `utility`: the tier maximising `p(tier) - threshold * cost(tier) / cost(flagship)`, i.e.
  pay for a dearer tier only while it buys at least `threshold` accuracy per flagship-cost.

With `cascade`, a row sent to `cheap` is assumed checked by the engine's cheap/mid agreement
test and escalated to flagship on disagreement; its expected quality and cost say so.

The model file is an .npz of plain arrays plus a JSON header, read with
`allow_pickle=False`: loading it never runs code. Pure: no Ray, no HTTP, no downloads.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import polars as pl
import pyarrow.fs as pafs
import scipy.sparse as sp

from pipeline.routing.decide import (
    AGREE,
    AGREE_OK,
    TIERS,
    Curve,
    Decision,
    FloatArray,
    IntArray,
    Target,
    choose,
    expected_options,
    pick,
)
from pipeline.routing.features import FeatureSpec, featurize, fit_features, text_counts
from pipeline.store import Store

# Names other modules and older callers import from here.
__all__ = [
    "AGREE",
    "AGREE_OK",
    "TIERS",
    "Curve",
    "Decision",
    "FeatureSpec",
    "FloatArray",
    "Head",
    "IntArray",
    "RouterFileError",
    "RouterModel",
    "choose",
    "featurize",
    "fit_features",
    "learned_policy",
    "load_model",
    "resolve_threshold",
    "route_learned",
    "text_counts",
    "tier_problems",
]

FORMAT = "tierline-router"
# 2: an optional shape-feature block (pipeline.routing.features); version 1 files still load.
VERSION = 2
READABLE_VERSIONS = (1, 2)
# prepare_unit puts the joined row text here before the policy runs.
TEXT_COLUMN = "__text"


class RouterFileError(ValueError):
    """A router model file that cannot be used (missing, wrong format or version)."""


# --- the model --------------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """One logistic regression: P(label) = sigmoid(x . coef + intercept)."""

    coef: FloatArray
    intercept: float

    def predict(self, x: sp.csr_matrix) -> FloatArray:
        z = np.asarray(x @ self.coef).ravel() + self.intercept
        return cast(FloatArray, 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0))))


@dataclass(frozen=True)
class RouterModel:
    """Everything the `learned` policy needs, as read from (or written to) one file."""

    tiers: dict[str, str]  # tier -> the model it was trained for, cheapest tier first
    features: FeatureSpec
    heads: dict[str, Head]  # one per tier, plus AGREE / AGREE_OK when `cascade`
    tier_cost: dict[str, float]  # mean USD per row, from training
    decision: Decision = "utility"
    cascade: bool = False
    threshold: float | None = None  # the default threshold (preset 'balanced' when trained)
    presets: dict[str, float] = field(default_factory=dict)  # optimize preset -> threshold
    curve: Curve | None = None
    info: dict[str, Any] = field(default_factory=dict)  # data hash, date, rows, metrics

    def tier_names(self) -> list[str]:
        return [t for t in TIERS if t in self.tiers]

    def predict(self, df: pl.DataFrame, text_col: str) -> dict[str, FloatArray]:
        """Every head's probability per row."""
        x = featurize(df, text_col, self.features)
        return {name: head.predict(x) for name, head in self.heads.items()}

    def options(self, probs: dict[str, FloatArray]) -> tuple[FloatArray, FloatArray]:
        """Expected quality and cost (USD) per row and tier, columns in `tier_names()`."""
        return expected_options(probs, self.tier_cost, self.tier_names(), cascade=self.cascade)

    def preset(self, name: str) -> float:
        try:
            return self.presets[name]
        except KeyError:
            raise KeyError(
                f"router model has no preset {name!r} (has: {', '.join(sorted(self.presets))})"
            ) from None

    # --- file ---------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write one .npz file (arrays + JSON header); atomic via a temporary name."""
        f = self.features
        header = {
            "format": FORMAT,
            "version": VERSION,
            "tiers": self.tiers,
            "tier_cost": self.tier_cost,
            "decision": self.decision,
            "cascade": self.cascade,
            "threshold": self.threshold,
            "presets": self.presets,
            "heads": {n: h.intercept for n, h in self.heads.items()},
            "features": {
                "n_text": f.n_text,
                "ngram_max": f.ngram_max,
                "length_mean": f.length_mean,
                "length_std": f.length_std,
                "categorical": f.categorical,
                "numeric": {k: list(v) for k, v in f.numeric.items()},
            },
            "info": self.info,
        }
        arrays: dict[str, np.ndarray[Any, Any]] = {
            "header": np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8),
            "idf": f.idf.astype(np.float32),
        }
        if f.shape_mean is not None and f.shape_std is not None:
            arrays["shape_mean"] = f.shape_mean
            arrays["shape_std"] = f.shape_std
        for name, head in self.heads.items():
            arrays[f"coef_{name}"] = head.coef.astype(np.float32)
        if self.curve is not None:
            for key in ("thresholds", "rel_quality", "rel_cost", "flagship_share"):
                arrays[f"curve_{key}"] = getattr(self.curve, key)
        if _is_uri(path):  # s3://...: one PUT, which S3 makes visible whole or not at all
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
            parent, name = _split_uri(str(path))
            Store.open(parent).write_bytes(name, buf.getvalue())
            return
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, target)

    @classmethod
    def load(cls, path: str | Path) -> RouterModel:
        """Read a model file (a path, or an s3:// URI); RouterFileError when it is not a
        router model of this version."""
        p: Path | str = Path(path) if not _is_uri(path) else str(path)
        try:
            if isinstance(p, str):
                parent, name = _split_uri(p)
                data = np.load(io.BytesIO(Store.open(parent).read_bytes(name)), allow_pickle=False)
            else:
                data = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise RouterFileError(f"{p}: not a router model file ({exc})") from None
        try:
            with data:
                return cls._from_arrays(p, data)
        except RouterFileError:
            raise
        except (ValueError, KeyError, TypeError, OSError) as exc:
            # Object arrays (pickles) land here too: numpy refuses them without allow_pickle.
            raise RouterFileError(f"{p}: not a usable router model file ({exc})") from None

    @classmethod
    def _from_arrays(cls, p: Path | str, data: Any) -> RouterModel:
        """The model from an open npz archive (arrays are read lazily, so errors show here)."""
        if "header" not in data.files:
            raise RouterFileError(f"{p}: not a router model file (no header)")
        header = json.loads(bytes(data["header"]).decode())
        if header.get("format") != FORMAT:
            raise RouterFileError(f"{p}: not a router model file")
        if header.get("version") not in READABLE_VERSIONS:
            raise RouterFileError(
                f"{p}: router model version {header.get('version')!r}; this tierline reads "
                f"versions {', '.join(map(str, READABLE_VERSIONS))}: retrain it with "
                "`tierline router train`"
            )
        hf = header["features"]
        features = FeatureSpec(
            n_text=int(hf["n_text"]),
            ngram_max=int(hf["ngram_max"]),
            idf=data["idf"].astype(np.float64),
            length_mean=float(hf["length_mean"]),
            length_std=float(hf["length_std"]),
            categorical={k: list(v) for k, v in hf["categorical"].items()},
            numeric={k: (float(v[0]), float(v[1])) for k, v in hf["numeric"].items()},
            shape_mean=_optional(data, "shape_mean"),
            shape_std=_optional(data, "shape_std"),
        )
        heads = {
            n: Head(data[f"coef_{n}"].astype(np.float64), float(b))
            for n, b in header["heads"].items()
        }
        curve = None
        if "curve_thresholds" in data.files:
            curve = Curve(
                *(
                    data[f"curve_{k}"].astype(np.float64)
                    for k in ("thresholds", "rel_quality", "rel_cost", "flagship_share")
                )
            )
        return cls(
            tiers=dict(header["tiers"]),
            features=features,
            heads=heads,
            tier_cost={k: float(v) for k, v in header["tier_cost"].items()},
            decision=header["decision"],
            cascade=bool(header["cascade"]),
            threshold=header["threshold"],
            presets={k: float(v) for k, v in header["presets"].items()},
            curve=curve,
            info=dict(header["info"]),
        )


def _optional(data: Any, key: str) -> FloatArray | None:
    return data[key].astype(np.float64) if key in data.files else None


# --- deciding ---------------------------------------------------------------------------


def route_learned(
    df: pl.DataFrame, text_col: str, model: RouterModel, threshold: float
) -> pl.Series:
    """One tier per row (a String series named `tier`), decided for the whole frame at once.

    route_learned(pl.DataFrame({"text": ["2+2?"]}), "text", model, 0.2)   # ['cheap']
    """
    if df.height == 0:
        return pl.Series("tier", [], dtype=pl.String)
    quality, cost = model.options(model.predict(df, text_col))
    picked = choose(quality, cost, threshold, model.decision)
    names = np.array(model.tier_names(), dtype=object)
    return pl.Series("tier", names[picked].tolist(), dtype=pl.String)


def tier_problems(model: RouterModel, spec_models: dict[str, str | None]) -> list[str]:
    """What a spec check should say when a job's tiers differ from the model's training.

    tier_problems(model, {"cheap": "gpt-4o-mini", "mid": None, "flagship": "gpt-4o"})
    """
    problems = []
    for tier, trained in model.tiers.items():
        used = spec_models.get(tier)
        if used is None:
            problems.append(f"routing: the router model can pick tier {tier!r}, which is empty")
        elif used != trained:
            problems.append(
                f"routing: the router model learned {tier}={trained}; this job's {tier} is "
                f"{used} (retrain for it, or expect other quality)"
            )
    return problems


# --- the policy adapter -----------------------------------------------------------------


class LearnedRouting(Protocol):
    """The routing spec fields the learned policy reads."""

    model: str | None
    threshold: float | None
    target: object | None  # {max_flagship_share: x} | {min_quality: y}
    optimize: str | None


def resolve_threshold(
    model: RouterModel,
    *,
    threshold: float | None = None,
    target: object | None = None,
    optimize: str | None = None,
) -> float:
    """The threshold a run uses: explicit, else a target resolved on the model's validation
    curve, else an `optimize` preset, else the model's default."""
    if threshold is not None:
        return float(threshold)
    if target is not None:
        if model.curve is None:
            raise ValueError("router model has no validation curve to resolve a target on")
        return pick(model.curve, Target.parse(target)).threshold
    if optimize is not None:
        return model.preset(optimize)
    if model.threshold is None:
        raise ValueError("router model has no default threshold: set routing.threshold")
    return model.threshold


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int, size: int) -> RouterModel:
    return RouterModel.load(path)


def load_model(path: str | Path) -> RouterModel:
    """Load once per process (per file version): every unit of a job shares it."""
    if _is_uri(path):
        parent, name = _split_uri(str(path))
        store = Store.open(parent)
        info = store.fs.get_file_info(store.full(name))
        if info.type != pafs.FileType.File:
            raise RouterFileError(f"{path}: no such router model file")
        stamp = int(info.mtime.timestamp() * 1e9) if info.mtime is not None else 0
        return _load_cached(str(path), stamp, info.size or 0)
    st = os.stat(path)
    return _load_cached(str(path), st.st_mtime_ns, st.st_size)


def _is_uri(path: str | Path) -> bool:
    return isinstance(path, str) and "://" in path and not path.startswith("file://")


def _split_uri(uri: str) -> tuple[str, str]:
    parent, _, name = uri.rstrip("/").rpartition("/")
    return parent, name


def learned_policy(df: pl.DataFrame, routing: object) -> pl.Series:
    """`POLICIES["learned"]`: reads routing.model / threshold / target / optimize."""
    spec = cast(LearnedRouting, routing)
    path = getattr(spec, "model", None)
    if not path:
        raise ValueError("routing.policy 'learned' needs routing.model (a router model file)")
    model = load_model(path)
    threshold = resolve_threshold(
        model,
        threshold=getattr(spec, "threshold", None),
        target=getattr(spec, "target", None),
        optimize=getattr(spec, "optimize", None),
    )
    return route_learned(df, TEXT_COLUMN, model, threshold)
