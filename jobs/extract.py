"""Structured extraction: fill the task's fields from each row's text, as one JSON object.

    job = ExtractJob(task)                     # task: schemas.extract.ExtractTask
    job.parse('```json\\n{"queue": "billing"}\\n```')   # ok; output is canonical JSON
    job.parse('{"queue": "sales"}').reason     # 'fields failed: queue (queue: Input ...)'
    job.typed_columns(outputs)                 # out_<field> columns, typed (results files)

The system message lists each field with its type, allowed values and description; the
JSON Schema itself travels with the request (`output_schema`), sent natively or written
into the prompt as the provider option `structured_output` says. Parsing tolerates what
real models wrap JSON in (code fences, a line before it, text after it) and nothing more:
no repair of broken JSON, no "3" for 3. A failing answer's `Parsed.reask` quotes the
validation errors; the executor asks once more on the same deployment with it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

import pyarrow as pa
from pydantic import BaseModel, ValidationError

from jobs.base import Parsed
from jobs.extract_fields import answer_model, json_schema, max_chars, max_length, typed_columns
from jobs.prompts import Variants
from pipeline.providers.base import Message, OutputSchema
from schemas.extract import ExtractTask, FieldSpec

DEFAULT_INSTRUCTIONS = "Extract the fields below from the user's text."
ANSWER_RULE = (
    "Answer with one JSON object holding these fields, spelled as listed; use null for an "
    "optional field the text does not give. No other text."
)
REASK_RULE = "Answer again with the corrected JSON object only."
SCHEMA_NAME = "extract"
CHARS_PER_TOKEN = 4
# How much longer than the schema's longest answer a raw answer may be (fences, prose).
_SLACK_CHARS = 400
_FENCE = re.compile(r"```[A-Za-z]*\s*\n?(.*?)```", re.DOTALL)
_SHOWN_CHARS = 80
_DECODER = json.JSONDecoder()


class ExtractJob:
    kind = "extract"

    def __init__(self, task: ExtractTask) -> None:
        if not isinstance(task, ExtractTask):
            raise TypeError(f"ExtractJob needs an ExtractTask, got {type(task).__name__}")
        self.task = task
        self.fields: dict[str, FieldSpec] = task.schema_fields()
        self.model: type[BaseModel] = answer_model(self.fields)
        self.schema = json_schema(self.fields)
        self._schema = OutputSchema(SCHEMA_NAME, json.dumps(self.schema, ensure_ascii=False))
        self.max_chars = max_chars(self.fields)
        self._field_lines = "\n".join(_field_line(n, s) for n, s in self.fields.items())
        self.prompt = Variants(task, DEFAULT_INSTRUCTIONS)

    def build_messages(self, text: str, model: str | None = None) -> tuple[Message, ...]:
        system = "\n".join([self.prompt(model).text, "Fields:", self._field_lines, ANSWER_RULE])
        return (Message("system", system), Message("user", text))

    def output_schema(self) -> OutputSchema:
        return self._schema

    def max_output_tokens(self) -> int:
        if self.task.max_output_tokens is not None:
            return self.task.max_output_tokens
        # The longest valid answer plus room; real answers are far shorter.
        return min(32768, math.ceil(self.max_chars / CHARS_PER_TOKEN) + 64)

    def estimate_output_tokens(self) -> int:
        # Strings fill about a third of their allowance; keys and the rest in full.
        chars = 2
        for name, spec in self.fields.items():
            chars += len(name) + 6
            chars += max_length(spec) // 3 if spec.type == "string" else 10
        return math.ceil(chars / CHARS_PER_TOKEN) + 1

    def typed_columns(self, outputs: Sequence[str | None]) -> pa.Table:
        return typed_columns(self.fields, outputs)

    def parse(self, raw: str) -> Parsed:
        if len(raw) > self.max_chars + _SLACK_CHARS:
            return _reject(
                f"answer is {len(raw)} characters, far longer than the schema allows "
                f"(at most about {self.max_chars})",
                [],
            )
        found, problem = _json_object(raw)
        if found is None:
            return _reject(problem or "no JSON object", [])
        try:
            answer = self.model.model_validate_json(found, strict=True)
        except ValidationError as exc:
            problems = [_problem(err) for err in exc.errors(include_url=False)]
            names = list(dict.fromkeys(str(err["loc"][0]) for err in exc.errors() if err["loc"]))
            return _reject("; ".join(problems), names)
        values = answer.model_dump(mode="json")
        output = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
        return Parsed(ok=True, output=output, values=values)


def _field_line(name: str, spec: FieldSpec) -> str:
    kind: str = spec.type
    if spec.type == "enum":
        kind = "one of " + " | ".join(spec.values or [])
    elif spec.type == "list" and spec.items is not None:
        kind = f"list of {spec.items.type}"
    elif spec.type == "object":
        kind = "object with " + ", ".join(spec.fields or {})
    need = "required" if spec.required else "optional"
    line = f"- {name} ({kind}; {need})"
    return f"{line}: {spec.description.strip()}" if spec.description.strip() else line


def _json_object(raw: str) -> tuple[str | None, str | None]:
    """(the JSON object's text in `raw`, None), or (None, why there is none). The object
    may sit in a code fence, after a lead-in line, before trailing text. Its text (not
    the decoded value) is returned so it is validated as JSON, where dates are strings."""
    text = raw.strip()
    fence = _FENCE.search(text)
    if fence is not None:
        text = fence.group(1).strip()
    start = text.find("{")
    if start < 0:
        shown = text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."
        return None, (f"answer {shown!r} holds no JSON object" if text else "empty answer")
    try:
        _, end = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        return None, f"answer is not valid JSON: {exc.msg} at character {exc.pos - start}"
    return text[start:end], None


def _problem(err: object) -> str:
    assert isinstance(err, dict)
    where = ".".join(str(p) for p in err["loc"]) or "answer"
    if err["type"] == "missing":
        return f"{where}: required field is missing"
    given = err.get("input")
    shown = json.dumps(given, ensure_ascii=False) if given is not None else "null"
    if len(shown) > _SHOWN_CHARS:
        shown = shown[: _SHOWN_CHARS - 3] + "..."
    return f"{where}: {err['msg']} (got {shown})"


def _reject(problem: str, names: list[str]) -> Parsed:
    reason = f"fields failed: {', '.join(names)} ({problem})" if names else problem
    reask = f"Your answer did not pass validation: {problem}. {REASK_RULE}"
    return Parsed(ok=False, reason=reason, reask=reask)
