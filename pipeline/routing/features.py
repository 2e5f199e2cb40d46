"""How rows become the learned router's sparse feature matrix: fitted once on training rows,
stored in the model file, applied to every unit.

    spec = fit_features(train_df, "text", ["segment"])      # idf, scalings, categories
    x = featurize(df, "text", spec)                          # scipy CSR, one row per row

Blocks: tf-idf of hashed word 1-2-grams, log text length, the metadata columns named by
the caller (categories one-hot, numbers standardised), then the *shape* of the text: cheap
signals that exist in any user's data and carry over between tasks (length of the final
ask, lines, language, question or instruction form, code and maths markers, multiple-choice
options, worked examples before the ask). No column says which benchmark a row came from,
so a router trained on one task does not lean on a name that the next task lacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer

from pipeline.routing.decide import FloatArray, IntArray

# (name, what is counted). Counted on the final block of the text (after the last blank
# line): few-shot prompts repeat the same worked examples first, the ask comes last.
_LAST_BLOCK_COUNTS: tuple[tuple[str, str], ...] = (
    ("non_ascii", r"[^\x00-\x7F]"),  # share: another script or language
    ("digits", r"\d"),
    ("upper", r"[A-Z]"),
    ("punct", r"[^\w\s]"),
)
_LAST_BLOCK_MARKERS: tuple[tuple[str, str], ...] = (
    ("question", r"\?"),
    ("wh_start", r"(?i)^\s*(what|which|who|whom|whose|when|where|why|how|is|are|does|do|can)\b"),
    (
        "imperative",
        r"(?i)^\s*(write|implement|create|generate|explain|describe|summari[sz]e|list|give"
        r"|find|translate|classify|calculate|compute|solve|prove|convert|sort|return|define)\b",
    ),
    ("options", r"(?m)^\s*\(?[A-Ha-h][\).:]\s"),  # multiple-choice lines: A) ... B) ...
    ("code", r"(?m)```|\bdef |\bclass |\breturn\b|\bfunction\b|[{};]\s*$|\bimport |\[PYTHON\]"),
    ("code_words", r"(?i)\b(python|function|array|list|string|integer|code|program|algorithm)\b"),
    ("maths", r"\d\s*[-+*/^=<>]\s*\d|\\frac|\$|(?i:\bsqrt\b|\bequation\b|\bsolve\b)"),
    ("urls", r"https?://"),
)
SHAPE_NAMES: tuple[str, ...] = (
    "log_chars_last",
    "log_lines",
    "log_blocks",
    "mean_word",
    "answer_slots",
    *(n for n, _ in _LAST_BLOCK_COUNTS),
    *(n for n, _ in _LAST_BLOCK_MARKERS),
)
# The shape block is standardised, then scaled so its squared norm (about its width) is
# comparable to the unit-norm tf-idf block: neither drowns the other under one L2 penalty.
SHAPE_WEIGHT = 1.0 / np.sqrt(len(SHAPE_NAMES))


@dataclass(frozen=True)
class FeatureSpec:
    """How rows become a sparse matrix; fitted on training rows, stored in the model file."""

    n_text: int
    ngram_max: int
    idf: FloatArray  # (n_text,), 1.0 for hash buckets never seen in training
    length_mean: float
    length_std: float
    categorical: dict[str, list[str]] = field(default_factory=dict)  # column -> categories
    numeric: dict[str, tuple[float, float]] = field(default_factory=dict)  # column -> mean, std
    shape_mean: FloatArray | None = None  # None: no shape block (model files of version 1)
    shape_std: FloatArray | None = None

    @property
    def columns(self) -> list[str]:
        return [*self.categorical, *self.numeric]

    @property
    def shape_width(self) -> int:
        return 0 if self.shape_mean is None else len(SHAPE_NAMES)

    @property
    def width(self) -> int:
        return (
            self.n_text
            + 1
            + sum(map(len, self.categorical.values()))
            + len(self.numeric)
            + self.shape_width
        )

    def vectorizer(self) -> HashingVectorizer:
        return _vectorizer(self.n_text, self.ngram_max)


def _vectorizer(n_text: int, ngram_max: int) -> HashingVectorizer:
    # Every parameter spelled out: a change of scikit-learn's defaults must not move hashes.
    return HashingVectorizer(
        n_features=n_text,
        ngram_range=(1, ngram_max),
        lowercase=True,
        token_pattern=r"(?u)\b\w\w+\b",
        alternate_sign=False,
        norm=None,
        dtype=np.float64,
    )


@dataclass(frozen=True)
class TextParts:
    """What the features need from each row's text, computed once (nothing fitted in it),
    so a tuner that refits on many subsets of rows hashes every text only once."""

    counts: sp.csr_matrix  # raw hashed n-gram counts (n, n_text)
    log_length: FloatArray  # (n,)
    shape: FloatArray  # (n, len(SHAPE_NAMES)), raw

    def rows(self, idx: IntArray) -> TextParts:
        return TextParts(sp.csr_matrix(self.counts[idx]), self.log_length[idx], self.shape[idx])


def text_counts(texts: list[str], n_text: int, ngram_max: int) -> sp.csr_matrix:
    """Raw hashed n-gram counts (what idf is fitted on)."""
    return sp.csr_matrix(_vectorizer(n_text, ngram_max).transform(texts))


def shape_matrix(texts: list[str]) -> FloatArray:
    """The raw shape values per row, columns in SHAPE_NAMES order (vectorised in polars)."""
    s = pl.Series("t", texts, dtype=pl.String).fill_null("")
    last = s.str.strip_chars().str.split("\n\n").list.last().fill_null("")
    n_last = last.str.len_chars().cast(pl.Float64)
    safe = n_last.clip(lower_bound=1.0)
    words = last.str.count_matches(r"\w+").cast(pl.Float64)
    cols: list[pl.Series] = [
        (n_last + 1.0).log(),
        (s.str.count_matches("\n").cast(pl.Float64) + 1.0).log(),
        (s.str.count_matches("\n\n").cast(pl.Float64) + 2.0).log(),
        (n_last - words) / words.clip(lower_bound=1.0),  # about the mean word length
        (s.str.count_matches(r"(?i)\banswer\s*:").cast(pl.Float64) + 1.0).log(),
    ]
    cols += [last.str.count_matches(p).cast(pl.Float64) / safe for _, p in _LAST_BLOCK_COUNTS]
    cols += [
        (last.str.count_matches(p).cast(pl.Float64) + 1.0).log() for _, p in _LAST_BLOCK_MARKERS
    ]
    return np.column_stack([c.to_numpy() for c in cols]).astype(np.float64)


def text_parts(texts: list[str], n_text: int, ngram_max: int) -> TextParts:
    lengths = np.fromiter((len(t) for t in texts), dtype=np.float64, count=len(texts))
    return TextParts(text_counts(texts, n_text, ngram_max), np.log1p(lengths), shape_matrix(texts))


def fit_features(
    df: pl.DataFrame,
    text_col: str,
    columns: list[str] | None = None,
    *,
    n_text: int = 2**18,
    ngram_max: int = 2,
    max_categories: int = 100,
    shape: bool = False,
    parts: TextParts | None = None,
) -> FeatureSpec:
    """Fit idf, length and shape scaling and metadata encodings on training rows.
    `parts`: the rows' text parts, when already computed (must match n_text, ngram_max)."""
    if parts is None:
        parts = text_parts(_texts(df, text_col), n_text, ngram_max)
    counts, lengths = parts.counts, parts.log_length
    doc_freq = np.bincount(counts.indices, minlength=n_text).astype(np.float64)
    n = max(counts.shape[0], 1)
    idf = np.log((1.0 + n) / (1.0 + doc_freq)) + 1.0  # scikit-learn's smooth idf
    categorical: dict[str, list[str]] = {}
    numeric: dict[str, tuple[float, float]] = {}
    for col in columns or []:
        s = df.get_column(col)
        if s.dtype.is_numeric():
            v = s.cast(pl.Float64).drop_nulls().to_numpy()
            mean = float(v.mean()) if v.size else 0.0
            std = float(v.std()) if v.size else 1.0
            numeric[col] = (mean, std if std > 0 else 1.0)
        else:
            top = s.cast(pl.String).drop_nulls().value_counts(sort=True).head(max_categories)
            categorical[col] = sorted(top.get_column(col).to_list())
    shape_mean = shape_std = None
    if shape:
        raw = parts.shape
        shape_mean = raw.mean(axis=0) if raw.shape[0] else np.zeros(len(SHAPE_NAMES))
        sd = raw.std(axis=0) if raw.shape[0] else np.ones(len(SHAPE_NAMES))
        shape_std = np.where(sd > 1e-12, sd, 1.0)
    return FeatureSpec(
        n_text=n_text,
        ngram_max=ngram_max,
        idf=idf,
        length_mean=float(lengths.mean()) if lengths.size else 0.0,
        length_std=float(lengths.std()) if lengths.size and lengths.std() > 0 else 1.0,
        categorical=categorical,
        numeric=numeric,
        shape_mean=shape_mean,
        shape_std=shape_std,
    )


def featurize(
    df: pl.DataFrame, text_col: str, spec: FeatureSpec, parts: TextParts | None = None
) -> sp.csr_matrix:
    """One sparse row per frame row: [tf-idf n-grams | log length | categories | numbers |
    shape]. `parts`: the rows' text parts when already computed (text_col is then unused)."""
    if parts is None:
        parts = text_parts(_texts(df, text_col), spec.n_text, spec.ngram_max)
    if parts.counts.shape[1] != spec.n_text:
        raise ValueError(f"text parts hashed to {parts.counts.shape[1]} columns, not {spec.n_text}")
    x = parts.counts.copy()
    x.data = 1.0 + np.log(x.data)  # sublinear tf
    x = sp.csr_matrix(x @ sp.diags(spec.idf))
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    x = sp.csr_matrix(sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ x)
    n = x.shape[0]
    blocks = [x, sp.csr_matrix(((parts.log_length - spec.length_mean) / spec.length_std)[:, None])]
    for col, cats in spec.categorical.items():
        index = {c: i for i, c in enumerate(cats)}
        values = df.get_column(col).cast(pl.String).to_list()
        rows = [r for r, v in enumerate(values) if v in index]
        cols = [index[cast(str, values[r])] for r in rows]
        blocks.append(sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, len(cats))))
    for col, (mean, std) in spec.numeric.items():
        v = df.get_column(col).cast(pl.Float64).fill_null(mean).to_numpy()
        blocks.append(sp.csr_matrix(((v - mean) / std)[:, None]))
    if spec.shape_mean is not None and spec.shape_std is not None:
        z = (parts.shape - spec.shape_mean) / spec.shape_std * SHAPE_WEIGHT
        blocks.append(sp.csr_matrix(z))
    return sp.csr_matrix(sp.hstack(blocks, format="csr"))


def _texts(df: pl.DataFrame, text_col: str) -> list[str]:
    return df.get_column(text_col).cast(pl.String).fill_null("").to_list()
