"""An extract task's fields as the three things the engine needs: the JSON Schema sent to
providers, a pydantic model that validates answers, and the Arrow types of the columns.

    fields = task.schema_fields()
    json_schema(fields)                 # {"type": "object", "properties": {...}, ...}
    Answer = answer_model(fields)       # Answer.model_validate_json(text, strict=True)
    arrow_type(fields["queue"])         # dictionary<values=string, indices=int32>
    typed_columns(fields, ['{"queue":"billing"}', None])   # pa.Table: out_queue, ...

Optional fields are nullable and may be left out; required ones must be given, and not
null. Dates are `YYYY-MM-DD` strings in JSON and date32 in Parquet.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Annotated, Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from schemas.extract import DEFAULT_MAX_ITEMS, DEFAULT_MAX_LENGTH, FieldSpec

COLUMN_PREFIX = "out_"
# Characters a JSON answer spends per field beyond its value: quotes, key, colon, comma.
_KEY_OVERHEAD = 6


def max_length(spec: FieldSpec) -> int:
    return spec.max_length or DEFAULT_MAX_LENGTH


def max_items(spec: FieldSpec) -> int:
    return spec.max_items or DEFAULT_MAX_ITEMS


# --- the JSON Schema providers get ------------------------------------------------------


def _hint(spec: FieldSpec) -> str:
    """Constraints a strict provider schema cannot carry, said in words."""
    if spec.type == "string":
        return f"At most {max_length(spec)} characters."
    if spec.type == "date":
        return "A date as YYYY-MM-DD."
    return ""


def _property(spec: FieldSpec) -> dict[str, Any]:
    prop: dict[str, Any]
    t = spec.type
    if t == "enum":
        prop = {"type": "string", "enum": list(spec.values or [])}
    elif t == "string":
        prop = {"type": "string", "maxLength": max_length(spec)}
    elif t == "date":
        prop = {"type": "string", "format": "date"}
    elif t in ("integer", "number", "boolean"):
        prop = {"type": t}
        if spec.minimum is not None:
            prop["minimum"] = int(spec.minimum) if t == "integer" else spec.minimum
        if spec.maximum is not None:
            prop["maximum"] = int(spec.maximum) if t == "integer" else spec.maximum
    elif t == "list":
        assert spec.items is not None
        prop = {"type": "array", "items": _property(spec.items), "maxItems": max_items(spec)}
    else:
        prop = json_schema(spec.fields or {})
    words = " ".join(w for w in (spec.description.strip(), _hint(spec)) if w)
    if words:
        prop["description"] = words
    if not spec.required:
        prop["type"] = [prop["type"], "null"]
        if "enum" in prop:
            prop["enum"] = [*prop["enum"], None]
    return prop


def json_schema(fields: Mapping[str, FieldSpec]) -> dict[str, Any]:
    """The answer object's JSON Schema (draft 2020-12 subset every provider accepts)."""
    return {
        "type": "object",
        "properties": {name: _property(spec) for name, spec in fields.items()},
        "required": [name for name, spec in fields.items() if spec.required],
        "additionalProperties": False,
    }


# --- the validating model ---------------------------------------------------------------


def _annotation(spec: FieldSpec, name: str) -> Any:
    t = spec.type
    if t == "enum":
        return Literal[tuple(spec.values or ())]
    if t == "string":
        return Annotated[str, StringConstraints(strip_whitespace=True, max_length=max_length(spec))]
    if t == "date":
        return date
    if t == "boolean":
        return bool
    if t in ("integer", "number"):
        base: Any = int if t == "integer" else float
        return Annotated[base, Field(ge=spec.minimum, le=spec.maximum)]
    if t == "list":
        assert spec.items is not None
        item = _annotation(spec.items, name)
        return Annotated[list[item], Field(max_length=max_items(spec))]  # type: ignore[valid-type]
    return answer_model(spec.fields or {}, f"{name}_object")


def answer_model(fields: Mapping[str, FieldSpec], name: str = "Answer") -> type[BaseModel]:
    """A pydantic model of the answer: validate with `model_validate_json(text,
    strict=True)` (no "3" for 3, no 1 for true); keys the schema does not name are ignored."""
    definitions: dict[str, Any] = {}
    for field_name, spec in fields.items():
        ann = _annotation(spec, field_name)
        definitions[field_name] = (ann, ...) if spec.required else (ann | None, None)
    model: type[BaseModel] = create_model(
        name, __config__=ConfigDict(extra="ignore", frozen=True), **definitions
    )
    return model


# --- answer size ------------------------------------------------------------------------


def max_chars(fields: Mapping[str, FieldSpec]) -> int:
    """The longest answer the schema allows, in characters (JSON, generous spacing)."""
    total = 2
    for name, spec in fields.items():
        total += len(name) + _KEY_OVERHEAD + _value_chars(spec)
    return total


def _value_chars(spec: FieldSpec) -> int:
    t = spec.type
    if t == "string":
        return max_length(spec) * 2 + 2  # escapes can double a string's length
    if t == "enum":
        return max(len(v) for v in spec.values or ["null"]) + 2
    if t == "date":
        return 12
    if t in ("integer", "number", "boolean"):
        return 24
    if t == "list":
        assert spec.items is not None
        return max_items(spec) * (_value_chars(spec.items) + 2) + 2
    return max_chars(spec.fields or {})


# --- Arrow columns ----------------------------------------------------------------------


def arrow_type(spec: FieldSpec, top: bool = True) -> pa.DataType:
    """Enums are dictionary strings at the top level (plain strings inside lists and
    structs, which every Parquet reader takes); dates are date32."""
    t = spec.type
    if t == "enum":
        return pa.dictionary(pa.int32(), pa.string()) if top else pa.string()
    if t == "string":
        return pa.string()
    if t == "integer":
        return pa.int64()
    if t == "number":
        return pa.float64()
    if t == "boolean":
        return pa.bool_()
    if t == "date":
        return pa.date32()
    if t == "list":
        assert spec.items is not None
        return pa.list_(arrow_type(spec.items, top=False))
    return pa.struct(
        [pa.field(n, arrow_type(s, top=False)) for n, s in (spec.fields or {}).items()]
    )


def column_fields(fields: Mapping[str, FieldSpec]) -> list[pa.Field]:
    return [pa.field(COLUMN_PREFIX + name, arrow_type(spec)) for name, spec in fields.items()]


def _to_arrow_value(spec: FieldSpec, value: Any) -> Any:
    if value is None:
        return None
    t = spec.type
    if t == "date":
        return date.fromisoformat(value)
    if t == "number":
        return float(value)
    if t == "list":
        assert spec.items is not None
        return [_to_arrow_value(spec.items, v) for v in value]
    if t == "object":
        sub = spec.fields or {}
        return {n: _to_arrow_value(s, value.get(n)) for n, s in sub.items()}
    return value


def typed_columns(fields: Mapping[str, FieldSpec], outputs: Sequence[str | None]) -> pa.Table:
    """One typed column per field from validated answers (canonical JSON; None: no answer)."""
    docs = [json.loads(o) if o else {} for o in outputs]
    arrays = []
    for (name, spec), field in zip(fields.items(), column_fields(fields), strict=True):
        values = [_to_arrow_value(spec, d.get(name)) for d in docs]
        if spec.type == "enum":
            arrays.append(pa.array(values, pa.string()).dictionary_encode())
        else:
            arrays.append(pa.array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(column_fields(fields)))
