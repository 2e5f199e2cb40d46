"""Asking a provider for JSON of a given schema, the way its wire format takes it.

    body["response_format"] = openai_response_format(schema)   # OpenAI, native
    body["tools"], body["tool_choice"] = anthropic_tool(schema)  # Anthropic, native
    messages = with_schema_in_prompt(messages, schema)         # json_object / prompt modes

Native modes constrain decoding (OpenAI `strict: true`) or hand the schema to the model as
a tool's input schema (Anthropic); other OpenAI-compatible servers get the schema in the
system message, after a line `JSON Schema: {...}` (the simulator reads that exact line).
OpenAI's strict mode wants every property listed in `required` (optional ones are
nullable instead) and refuses some keywords (`maxLength`, `format`); those stay in the
description and are checked by tierline's own validation after the answer.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.providers.base import Message, OutputSchema

SCHEMA_LINE = "JSON Schema: "
SCHEMA_RULE = "Answer with one JSON object that matches this JSON Schema, and nothing else."
_STRICT_DROPS = frozenset({"maxLength", "minLength", "format", "pattern", "default"})


def schema_dict(schema: OutputSchema) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(schema.schema)
    return doc


def openai_response_format(schema: OutputSchema) -> dict[str, Any]:
    """`response_format` for the mode: a strict JSON schema (native) or JSON mode."""
    if schema.mode == "json_object":
        return {"type": "json_object"}
    return {
        "type": "json_schema",
        "json_schema": {
            "name": schema.name,
            "strict": True,
            "schema": _strict(schema_dict(schema)),
        },
    }


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items() if k not in _STRICT_DROPS}
    if out.get("type") == "object" or "properties" in out:
        out["required"] = list(out.get("properties", {}))
        out["additionalProperties"] = False
    return out


def anthropic_tool(schema: OutputSchema) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(tools, tool_choice): one tool whose input is the answer, and the model must call it."""
    tool = {
        "name": schema.name,
        "description": "Record the values extracted from the user's text.",
        "input_schema": schema_dict(schema),
    }
    return [tool], {"type": "tool", "name": schema.name}


def with_schema_in_prompt(
    messages: tuple[Message, ...], schema: OutputSchema
) -> tuple[Message, ...]:
    """The messages with the schema rule appended to the first system message (or a new
    system message first, when there is none)."""
    block = f"{SCHEMA_RULE}\n{SCHEMA_LINE}{schema.schema}"
    for i, m in enumerate(messages):
        if m.role == "system":
            joined = Message("system", f"{m.content}\n{block}")
            return (*messages[:i], joined, *messages[i + 1 :])
    return (Message("system", block), *messages)


def schema_in_prompt(schema: OutputSchema | None) -> bool:
    return schema is not None and schema.mode != "native"
