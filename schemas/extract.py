"""The extract task's part of the spec: the fields each row's answer must fill.

    task:
      kind: extract
      instructions: "Read the support ticket."
      fields:
        queue: {type: enum, values: [billing, technical, account, other],
                description: "The team that should handle the ticket."}
        summary: {type: string, max_length: 200, description: "The request in one sentence."}
        due: {type: date, required: false, description: "A date the customer asks for."}

Types: string (max_length), enum (values), integer and number (minimum, maximum),
boolean, date (YYYY-MM-DD), list (items: one of the scalar types; max_items), object
(fields: scalars or lists, one level). Or `schema_uri: schemas/ticket.json`, a JSON Schema
file of the same shapes (`fields_from_json_schema` reads it). A field's name becomes the
result column `out_<name>`, so it must be a valid column name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from schemas.base import Strict
from schemas.prompts import PROMPTS_DESCRIPTION, prompt_problems

# How a provider is asked for JSON (ProviderSpec.structured_output; the adapters read it).
StructuredMode = Literal["native", "json_object", "prompt"]
FieldType = Literal["string", "enum", "integer", "number", "boolean", "date", "list", "object"]
SCALARS: tuple[str, ...] = ("string", "enum", "integer", "number", "boolean", "date")
FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,59}$")
DEFAULT_MAX_LENGTH = 1000
DEFAULT_MAX_ITEMS = 50

# Which settings each type takes; any other set setting is a spec error naming it.
_SETTINGS: dict[str, frozenset[str]] = {
    "string": frozenset({"max_length"}),
    "enum": frozenset({"values"}),
    "integer": frozenset({"minimum", "maximum"}),
    "number": frozenset({"minimum", "maximum"}),
    "boolean": frozenset(),
    "date": frozenset(),
    "list": frozenset({"items", "max_items"}),
    "object": frozenset({"fields"}),
}
_OPTIONAL = ("max_length", "values", "minimum", "maximum", "items", "max_items", "fields")


class FieldSpec(Strict):
    """One field of the answer: its type, constraints, and the description the model reads."""

    type: FieldType = Field(
        description="string | enum | integer | number | boolean | date | list | object."
    )
    description: str = Field(default="", description="What the field holds; sent in the prompt.")
    required: bool = Field(
        default=True, description="The answer must give a value (else it may be null)."
    )
    max_length: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description=f"string: at most this many characters (default {DEFAULT_MAX_LENGTH}).",
    )
    values: list[str] | None = Field(default=None, description="enum: the allowed values.")
    minimum: float | None = Field(default=None, description="integer, number: lowest value.")
    maximum: float | None = Field(default=None, description="integer, number: highest value.")
    items: FieldSpec | None = Field(default=None, description="list: the type of its items.")
    max_items: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description=f"list: at most this many items (default {DEFAULT_MAX_ITEMS}).",
    )
    fields: dict[str, FieldSpec] | None = Field(
        default=None, description="object: its fields (scalars or lists; one level)."
    )

    @model_validator(mode="after")
    def _settings_fit_type(self) -> FieldSpec:
        allowed = _SETTINGS[self.type]
        extra = [s for s in _OPTIONAL if getattr(self, s) is not None and s not in allowed]
        if extra:
            raise ValueError(
                f"{', '.join(extra)} does not apply to a {self.type} field "
                f"(it takes: {', '.join(sorted(allowed)) or 'no settings'})"
            )
        if self.type == "enum":
            values = [v.strip() for v in self.values or []]
            if not values or any(not v for v in values):
                raise ValueError("an enum field needs `values`: a list of non-empty strings")
            if len(set(values)) != len(values):
                raise ValueError("enum values must be unique")
        if self.type == "list":
            if self.items is None:
                raise ValueError("a list field needs `items`, e.g. {type: string}")
            if self.items.type not in SCALARS:
                raise ValueError(f"list items must be one of {', '.join(SCALARS)}")
        if self.type == "object":
            if not self.fields:
                raise ValueError("an object field needs `fields`")
            for name, sub in self.fields.items():
                if sub.type == "object" or (sub.items is not None and sub.items.type == "object"):
                    raise ValueError(f"fields.{name}: objects nest one level only")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError("minimum is above maximum")
        return self

    @field_validator("fields")
    @classmethod
    def _names(cls, v: dict[str, FieldSpec] | None) -> dict[str, FieldSpec] | None:
        if v is not None:
            check_names(v)
        return v


def check_names(fields: dict[str, FieldSpec]) -> None:
    bad = [name for name in fields if not FIELD_NAME.match(name)]
    if bad:
        raise ValueError(
            f"field name {bad[0]!r} is not a valid column name: use 1-60 lower-case letters, "
            "digits and '_', starting with a letter (e.g. 'due_date')"
        )


class ExtractTask(Strict):
    """Fill a typed schema per row: one validated JSON object, written as typed columns."""

    kind: Literal["extract"] = Field(description="Task kind: one typed record per row.")
    fields: dict[str, FieldSpec] | None = Field(
        default=None,
        description="The fields to fill, by name (the result column is out_<name>).",
    )
    schema_uri: str | None = Field(
        default=None,
        description="A JSON Schema file (local path) of the answer object, instead of `fields`.",
    )
    instructions: str = Field(default="", description="What the text is and how to read it.")
    prompts: dict[str, str] = Field(default_factory=dict, description=PROMPTS_DESCRIPTION)
    reasks: int = Field(
        default=1,
        ge=0,
        le=3,
        description="Times a failing answer is asked again on the same deployment, with the "
        "validation errors quoted, before the row escalates (or fails).",
    )
    max_output_tokens: int | None = Field(
        default=None,
        ge=1,
        le=32768,
        description="Cap on the answer's tokens; default derived from the fields' sizes.",
    )

    PLACEHOLDERS: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _read_schema_file(cls, data: object) -> object:
        if not isinstance(data, dict) or not data.get("schema_uri"):
            return data
        uri = str(data["schema_uri"])
        path = Path(uri.removeprefix("file://"))
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            if data.get("fields"):  # already read where the spec was loaded
                return data
            raise ValueError(f"schema_uri: cannot read {uri}: {exc.strerror}") from None
        except ValueError as exc:
            raise ValueError(f"schema_uri: {uri} is not valid JSON: {exc}") from None
        fields = fields_from_json_schema(doc)
        given = data.get("fields")
        if given and _specs(given) != _specs(fields):  # equal: a spec read back from JSON
            raise ValueError("set `fields` or `schema_uri`, not both")
        return {**data, "fields": fields}

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: dict[str, FieldSpec] | None) -> dict[str, FieldSpec] | None:
        if v is not None:
            if not v:
                raise ValueError("an extract task needs at least one field")
            check_names(v)
        return v

    @field_validator("prompts")
    @classmethod
    def _prompts(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        problems = prompt_problems(v, str(info.data.get("instructions", "")), cls.PLACEHOLDERS)
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @model_validator(mode="after")
    def _has_fields(self) -> ExtractTask:
        if not self.fields:
            raise ValueError("an extract task needs `fields` (or `schema_uri`, a JSON Schema)")
        return self

    def placeholder_values(self) -> dict[str, str]:
        return {}

    def schema_fields(self) -> dict[str, FieldSpec]:
        assert self.fields is not None  # the validator above
        return self.fields

    def compared_fields(self) -> list[str]:
        """The fields agreement and votes check by default: all but free text (strings,
        lists of strings, objects), where two good answers rarely match word for word."""
        return [
            name
            for name, spec in self.schema_fields().items()
            if spec.type not in ("string", "object")
            and not (spec.items is not None and spec.items.type == "string")
        ]


def _specs(fields: object) -> dict[str, FieldSpec] | None:
    if not isinstance(fields, dict):
        return None
    return {str(k): FieldSpec.model_validate(v) for k, v in fields.items()}


# --- JSON Schema files ------------------------------------------------------------------

_JSON_TYPES = {"string", "integer", "number", "boolean", "array", "object"}


def fields_from_json_schema(doc: object) -> dict[str, object]:
    """The `fields` mapping of a JSON Schema object (the subset tierline supports);
    ValueError names the schema path of anything it cannot use."""
    if not isinstance(doc, dict) or doc.get("type", "object") != "object":
        raise ValueError("schema_uri: the schema must be an object with `properties`")
    return _properties(doc, "properties", depth=0)


def _properties(doc: dict[str, object], where: str, depth: int) -> dict[str, object]:
    props = doc.get("properties")
    if not isinstance(props, dict) or not props:
        raise ValueError(f"schema_uri: {where}: the object needs `properties`")
    required = doc.get("required", [])
    if not isinstance(required, list):
        raise ValueError(f"schema_uri: {where}: `required` must be a list of names")
    out: dict[str, object] = {}
    for name, prop in props.items():
        out[str(name)] = _field(prop, f"{where}.{name}", str(name) in required, depth)
    return out


def _field(prop: object, where: str, required: bool, depth: int) -> dict[str, object]:
    if not isinstance(prop, dict):
        raise ValueError(f"schema_uri: {where}: must be an object")
    spec: dict[str, object] = {"required": required}
    if isinstance(prop.get("description"), str):
        spec["description"] = prop["description"]
    kind = prop.get("type")
    if isinstance(kind, list):  # ["string", "null"]: nullable
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else kind
    if "enum" in prop:
        values = (
            [v for v in prop["enum"] if v is not None] if isinstance(prop["enum"], list) else []
        )
        if not values or not all(isinstance(v, str) for v in values):
            raise ValueError(f"schema_uri: {where}.enum: give a list of strings")
        return {**spec, "type": "enum", "values": values}
    if kind == "string" and prop.get("format") == "date":
        return {**spec, "type": "date"}
    if not isinstance(kind, str) or kind not in _JSON_TYPES:
        raise ValueError(
            f"schema_uri: {where}.type: {kind!r} is not supported; use one of "
            f"{', '.join(sorted(_JSON_TYPES))} (string with format date for dates)"
        )
    if kind == "string" and "maxLength" in prop:
        spec["max_length"] = prop["maxLength"]
    if kind in ("integer", "number"):
        for src, dst in (("minimum", "minimum"), ("maximum", "maximum")):
            if src in prop:
                spec[dst] = prop[src]
    if kind == "array":
        spec["items"] = _field(prop.get("items"), f"{where}.items", True, depth + 1)
        if "maxItems" in prop:
            spec["max_items"] = prop["maxItems"]
        return {**spec, "type": "list"}
    if kind == "object":
        if depth >= 1:
            raise ValueError(f"schema_uri: {where}: objects nest one level only")
        return {**spec, "type": "object", "fields": _properties(prop, where, depth + 1)}
    return {**spec, "type": kind}
