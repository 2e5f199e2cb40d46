"""What a job kind provides, and the registry that finds one for a task.

    kind = get_job_kind(spec.task)
    messages = kind.build_messages(text, model)        # (system, user), model's variant
    kind.prompt(model).version                         # 'p-1a2b3c4d' (jobs.prompts)
    request = ChatRequest(model=m, messages=messages, max_tokens=kind.max_output_tokens())
    parsed = kind.parse(response.text)                 # Parsed(ok, output, reason)
    kind.output_schema()                               # extract: the answer's JSON Schema
    kind.typed_columns(outputs)                        # extract: out_<field> columns

A job kind is pure: no I/O, no clocks, no provider calls. It turns a row's text into
messages and a model's answer into a normalised output or a reason it failed validation
(the engine writes that reason as an `invalid_output` error row, or escalates the row).

A row's text is its `text_columns` joined with a blank line; `join_text` does it for one
row and `text_expr` for a whole polars frame, with the same result.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import polars as pl

if TYPE_CHECKING:
    import pyarrow as pa

    from jobs.prompts import Prompt
    from pipeline.providers.base import Message, OutputSchema
    from schemas.job import AnyTask

TEXT_SEPARATOR = "\n\n"
# Stripped from each part before joining. Spelled out (not str.strip()'s default) so the
# scalar and polars versions agree on exactly which characters count as blank.
_BLANK = " \t\n\r\f\v"


@dataclass(frozen=True, slots=True)
class Parsed:
    """A model's answer after validation: the normalised output, or why it was rejected.
    Structured answers (extract) also carry their `values` by field, which agreement and
    votes compare one field at a time, and a rejected one the `reask` message that
    quotes its validation errors to the model."""

    ok: bool
    output: str | None = None
    reason: str | None = None
    values: Mapping[str, object] | None = None
    reask: str | None = None

    @classmethod
    def accept(cls, output: str) -> Parsed:
        return cls(ok=True, output=output, reason=None)

    @classmethod
    def reject(cls, reason: str) -> Parsed:
        return cls(ok=False, output=None, reason=reason)


@runtime_checkable
class JobKind(Protocol):
    """One kind of work (classify, summarise): prompt building and output validation."""

    kind: str

    def build_messages(self, text: str, model: str | None = None) -> tuple[Message, ...]:
        """The system message (task, constraints) and the user message (the row's text),
        with the prompt variant `model` gets (None: the default variant)."""
        ...

    def prompt(self, model: str | None = None) -> Prompt:
        """The prompt variant `model` gets: its key, text as sent and version."""
        ...

    def max_output_tokens(self) -> int:
        """Cap on the answer's tokens, sent as the request's `max_tokens`."""
        ...

    def parse(self, raw: str) -> Parsed:
        """Normalise and validate the model's raw answer."""
        ...

    def estimate_output_tokens(self) -> int:
        """A typical answer's length in tokens, for forecasting a job's cost."""
        ...

    def output_schema(self) -> OutputSchema | None:
        """The JSON Schema answers must match, sent with each request (None: free text)."""
        ...

    def typed_columns(self, outputs: Sequence[str | None]) -> pa.Table | None:
        """Typed result columns of these validated outputs (None: only `output`)."""
        ...


# --- registry ---------------------------------------------------------------------------

# task kind -> 'module:Class' of its JobKind; the class takes the task spec.
_KINDS: dict[str, str] = {
    "classify": "jobs.classify:ClassifyJob",
    "summarise": "jobs.summarise:SummariseJob",
    "generate": "jobs.generate:GenerateJob",
    "extract": "jobs.extract:ExtractJob",
}


def known_kinds() -> list[str]:
    return sorted(_KINDS)


def register(kind: str, target: str) -> None:
    """Register a job kind given as 'module:Class' (the class is built from the task)."""
    if ":" not in target:
        raise ValueError(f"job kind target {target!r} must be 'module:Class'")
    _KINDS[kind] = target
    _load.cache_clear()


@cache
def _load(target: str) -> Callable[[AnyTask], JobKind]:
    module_name, cls_name = target.split(":", 1)
    factory: Callable[[AnyTask], JobKind] = getattr(importlib.import_module(module_name), cls_name)
    return factory


def get_job_kind(task: AnyTask) -> JobKind:
    """The job kind for a task spec.

    get_job_kind(ClassifyTask(kind="classify", labels=["a", "b"])).kind   # 'classify'
    """
    try:
        target = _KINDS[task.kind]
    except KeyError:
        raise ValueError(
            f"unknown task kind {task.kind!r}; known kinds: {', '.join(known_kinds())}"
        ) from None
    return _load(target)(task)


# --- request size ---------------------------------------------------------------------


def framing_tokens(kind: JobKind, model: str, family: str | None = None) -> int:
    """Tokens a request spends around the row's text: instructions, chat framing, and an
    output schema (providers bill a structured-output schema as input, whether it travels
    as response_format, a tool or in the prompt).

        framing_tokens(kind, "gpt-4o-mini")     # + the text's tokens = the call's input
    """
    from pipeline.tokens import chat_overhead_tokens, count_tokens

    msgs = kind.build_messages("", model)
    tokens = sum(count_tokens(m.content, model, family) for m in msgs)
    schema = kind.output_schema()
    if schema is not None:
        tokens += count_tokens(schema.schema, model, family)
    return tokens + chat_overhead_tokens(len(msgs))


# --- row text ---------------------------------------------------------------------------


def join_text(values: Sequence[str | None]) -> str | None:
    """Join one row's text columns with a blank line, skipping null and blank parts.

    >>> join_text(["Refund", None, "  I was charged twice. "])
    'Refund\\n\\nI was charged twice.'
    >>> join_text([None, "  "]) is None
    True
    """
    parts = [v.strip(_BLANK) for v in values if v is not None]
    text = TEXT_SEPARATOR.join(p for p in parts if p)
    return text or None


def text_expr(columns: Sequence[str]) -> pl.Expr:
    """`join_text` over a frame: one String value per row, null when every part is blank.

    df.with_columns(text_expr(["subject", "body"]))     # adds column 'text'
    """
    if not columns:
        raise ValueError("text_expr needs at least one column")
    # Blank parts become null so the separator skips them; `replace` rather than
    # when/then, which would evaluate each stripped part twice (2.4x slower).
    parts = [pl.col(n).cast(pl.String).str.strip_chars(_BLANK).replace("", None) for n in columns]
    joined = pl.concat_str(parts, separator=TEXT_SEPARATOR, ignore_nulls=True)
    return joined.replace("", None).alias("text")
