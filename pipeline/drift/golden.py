"""The canary's golden set: a small labelled file, read and checked without a call.

    golden = load_golden(spec)            # ConfigError naming the file and the fix
    golden.ids, golden.texts, golden.labels
    golden_problems(spec)                 # [] or one line per problem, for `validate`

The file has the job's id column, its text columns (joined as the job joins them) and a
label column (`routing.canary.label_column`, default `label`). A classify task's labels
must be among `task.labels` (case-insensitive; they are stored as the task spells them).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from dataclasses import dataclass

import polars as pl

from jobs.base import join_text
from pipeline.errors import ConfigError
from pipeline.routing.policy import sensitive_mask
from pipeline.routing.rules import predicate_columns
from pipeline.store import Store
from schemas.job import ClassifyTask, JobSpec
from schemas.problems import reason

# A canary is a handful of rows asked of every deployment; a big file is a mistake that
# would multiply the spend by the number of deployments.
MAX_ROWS = 10_000


@dataclass(frozen=True)
class GoldenSet:
    source: str  # the file, as the user wrote it (for messages)
    ids: list[str]
    texts: list[str]
    labels: list[str]  # the right answers, spelled as the task spells them
    sensitive: list[bool]  # rows only routing.sensitive.allowed_providers may see

    @property
    def rows(self) -> int:
        return len(self.ids)

    def fingerprint(self, min_accuracy: float, targets: list[str]) -> str:
        """What a passed canary vouches for: these rows, this floor, these deployments."""
        doc = [self.ids, self.texts, self.labels, min_accuracy, sorted(targets)]
        return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]


def _fail(source: str, problem: str) -> ConfigError:
    return ConfigError(f"routing.canary.data: {source}: {problem}")


FORMATS = {".parquet": "parquet", ".jsonl": "json", ".ndjson": "json", ".csv": "csv"}


def read_labelled(uri: str) -> pl.DataFrame:
    """A labelled file (.parquet, .jsonl/.ndjson or .csv; local or s3://) as a frame; the
    canary's and `tierline eval`'s golden sets are read here. Every CSV column is text
    (ids like 007 and labels like 1 stay as written); an empty file is an empty frame.
    Raises FileNotFoundError, or ValueError naming the formats for any other suffix."""
    suffix = next((s for s in FORMATS if uri.lower().endswith(s)), None)
    if suffix is None:
        raise ValueError("unknown format; name it .parquet, .jsonl or .csv")
    parent, _, name = uri.rstrip("/").rpartition("/")
    store = Store.open(parent or ".")
    if not store.exists(name):
        raise FileNotFoundError(name)
    data = store.read_bytes(name)
    match FORMATS[suffix]:
        case "parquet":
            return pl.read_parquet(io.BytesIO(data))
        case "json":
            return pl.read_ndjson(io.BytesIO(data)) if data.strip() else pl.DataFrame()
        case _:
            return (
                pl.read_csv(io.BytesIO(data), infer_schema=False)
                if data.strip()
                else pl.DataFrame()
            )


def load_golden(spec: JobSpec) -> GoldenSet:
    """Read and check the golden set; raises ConfigError (one line: the file, what is
    wrong, how to fix it). Needs `routing.canary` to be set."""
    canary = spec.routing.canary
    if canary is None:
        raise ValueError("the spec has no routing.canary")
    src = canary.data
    try:
        df = read_labelled(src)
    except FileNotFoundError:
        raise _fail(
            src,
            "file not found; give the golden set's path (relative paths are taken from the "
            "current directory) or remove routing.canary",
        ) from None
    except (OSError, pl.exceptions.PolarsError, ValueError) as exc:
        why = f"cannot be read ({reason(exc)}); write it as Parquet, JSONL or CSV"
        raise _fail(src, why) from None
    id_col, label_col = spec.input.id_column, canary.label_column
    needed = [id_col, *spec.input.text_columns, label_col]
    if spec.routing.sensitive is not None and spec.routing.sensitive.when:
        needed += predicate_columns(spec.routing.sensitive.when)
    missing = [c for c in dict.fromkeys(needed) if c not in df.columns]
    if missing:
        hint = (
            ", or set routing.canary.label_column to the column holding the right answers"
            if label_col in missing
            else ""
        )
        raise _fail(
            src,
            f"missing column(s) {', '.join(repr(c) for c in missing)} (has: "
            f"{', '.join(df.columns) or 'none'}); add them{hint}",
        )
    if df.height == 0:
        raise _fail(src, "holds no rows; add labelled rows or remove routing.canary")
    if df.height > MAX_ROWS:
        limit = f"at most {MAX_ROWS:,}"
        raise _fail(src, f"holds {df.height:,} rows; a canary is a small set ({limit})")
    return _checked(spec, df, src)


def _checked(spec: JobSpec, df: pl.DataFrame, src: str) -> GoldenSet:
    canary = spec.routing.canary
    assert canary is not None
    ids = [None if v is None else str(v) for v in df[spec.input.id_column].to_list()]
    if any(i is None or not i.strip() for i in ids):
        raise _fail(src, f"column {spec.input.id_column!r} has empty ids; give every row an id")
    counts = Counter(ids)
    repeated = [str(i) for i, n in counts.items() if n > 1]
    if repeated:
        raise _fail(src, f"ids repeat ({', '.join(repeated[:3])}); make each row's id unique")
    cols = [df[c].cast(pl.String).to_list() for c in spec.input.text_columns]
    texts = [join_text(parts) for parts in zip(*cols, strict=True)]
    blank = [i for i, t in zip(ids, texts, strict=True) if t is None]
    if blank:
        raise _fail(src, f"rows {', '.join(str(b) for b in blank[:3])} have no text; fill them in")
    raw = [None if v is None else str(v).strip() for v in df[canary.label_column].to_list()]
    unlabelled = [i for i, lab in zip(ids, raw, strict=True) if not lab]
    if unlabelled:
        raise _fail(
            src,
            f"rows {', '.join(str(u) for u in unlabelled[:3])} have no "
            f"{canary.label_column!r}; label every row",
        )
    labels = [lab or "" for lab in raw]
    if isinstance(spec.task, ClassifyTask):
        known = {lab.casefold(): lab for lab in spec.task.labels}
        unknown = sorted({lab for lab in labels if lab.casefold() not in known})
        if unknown:
            raise _fail(
                src,
                f"labels {', '.join(repr(u) for u in unknown[:5])} are not among task.labels "
                f"({', '.join(spec.task.labels)}); fix the label column or the task's labels",
            )
        labels = [known[lab.casefold()] for lab in labels]
    frame = df.with_columns(pl.Series("__text", texts, dtype=pl.String))
    sensitive = sensitive_mask(frame, spec.routing, "__text").to_list()
    return GoldenSet(src, [str(i) for i in ids], [t or "" for t in texts], labels, sensitive)


def golden_problems(spec: JobSpec) -> list[str]:
    """The golden set's problems as `validate` lists them; [] without a canary."""
    if spec.routing.canary is None:
        return []
    try:
        load_golden(spec)
    except ConfigError as exc:
        return [exc.message]
    return []
