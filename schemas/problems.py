"""One line per spec mistake: the field path, the reason, and what to write instead.

    spec_problem(JobSpec, {"loc": ("input", "id_colum"), "type": "extra_forbidden", ...})
    # "input.id_colum: unknown field; did you mean id_column? (input takes: uri, ...)"

pydantic says "Extra inputs are not permitted" and "Field required"; a new user needs the
field they meant and what the missing one is for, so both are looked up in the models.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Union

from pydantic import BaseModel


def spec_problem(root: type[BaseModel], err: Mapping[str, Any]) -> str:
    """'field.path: reason' for one pydantic error of `root`, with a fix where one is known."""
    loc: Sequence[str | int] = err["loc"]
    where = ".".join(str(p) for p in loc) or "(spec)"
    msg = str(err["msg"]).removeprefix("Value error, ")
    kind = err.get("type")
    if kind == "extra_forbidden" and loc:
        owner = _model_at(root, loc[:-1])
        if owner is not None:
            known = list(owner.model_fields)
            near = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            guess = f"did you mean {near[0]}? " if near else ""
            section = ".".join(str(p) for p in loc[:-1]) or "the spec"
            return f"{where}: unknown field; {guess}({section} takes: {', '.join(known)})"
        return f"{where}: unknown field"
    if kind == "missing" and loc:
        owner = _model_at(root, loc[:-1])
        field = owner.model_fields.get(str(loc[-1])) if owner is not None else None
        what = f" ({field.description})" if field is not None and field.description else ""
        return f"{where}: required field is missing; add it{what}"
    return f"{where}: {msg}"


def _model_at(root: type[BaseModel], path: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class whose fields sit at `path` (list indices, dict keys and the tags
    of tagged unions are stepped over), or None when the path leads elsewhere."""
    current: Any = root
    for part in path:
        tp = _strip(current)
        if _is_union(tp):  # a tagged union: the member whose `kind` is the tag
            members = [m for m in typing.get_args(tp) if _is_model(m)]
            tagged = [m for m in members if part in _kinds(m)]
            if not tagged:
                return None
            current = tagged[0]
        elif _is_model(tp):
            field = tp.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(tp) in (list, tuple) and typing.get_args(tp):
            current = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict and len(typing.get_args(tp)) == 2:
            current = typing.get_args(tp)[1]
        else:
            return None
    tp = _strip(current)
    return tp if _is_model(tp) else None


def _strip(tp: Any) -> Any:
    """Without Annotated[...] and Optional: `Faults | None` -> Faults."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif _is_union(tp):
            rest = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(rest) != 1:
                return tp
            tp = rest[0]
        else:
            return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _kinds(model: type[BaseModel]) -> tuple[Any, ...]:
    kind = model.model_fields.get("kind")
    return typing.get_args(kind.annotation) if kind is not None else ()


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def reason(exc: BaseException) -> str:
    """The whole message of `exc` on one line (a problem is one line; its first line alone
    often names only the field or the model, not why or what to do)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines) if lines else type(exc).__name__
