"""A request's JSON Schema in the plain form the simulator's extractor reads: local `$ref`s
inlined, one-branch `allOf` merged, nullable unions (`anyOf: [X, {"type": "null"}]`) as a
type list.

    plain(Ticket.model_json_schema())["properties"]["queue"]   # the enum itself, not a $ref

The providers' SDKs write schemas this way: pydantic models become `$defs` with `$ref`s
(an Enum, a nested model) and `X | None` becomes `anyOf`, both in OpenAI's
`chat.completions.parse` and in a tool's `input_schema` built from a model.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

_MAX_DEPTH = 32  # a recursive schema ($ref to itself) stops here: deeper levels are empty
_DEFS = ("$defs", "definitions")
_UNIONS = ("anyOf", "oneOf")


def plain(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` inlined (a shared, cached value: read it, do not change it)."""
    return _plain(json.dumps(schema, sort_keys=True))


@lru_cache(maxsize=256)  # a job sends one schema with every request
def _plain(text: str) -> dict[str, Any]:
    root = json.loads(text)
    defs: dict[str, Any] = {}
    for key in _DEFS:
        found = root.get(key)
        if isinstance(found, dict):
            defs.update(found)
    out = _walk(root, defs, 0)
    return out if isinstance(out, dict) else {}


def _walk(node: Any, defs: dict[str, Any], depth: int) -> Any:
    if isinstance(node, list):
        return [_walk(x, defs, depth + 1) for x in node]
    if not isinstance(node, dict):
        return node
    if depth > _MAX_DEPTH:
        return {}
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(("#/$defs/", "#/definitions/")):
        target = defs.get(ref.rsplit("/", 1)[1])
        if isinstance(target, dict):
            # Keys beside the $ref (a field's description) win over the definition's.
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return _walk(merged, defs, depth + 1)
    out = {k: _walk(v, defs, depth + 1) for k, v in node.items() if k not in _DEFS}
    parts = out.get("allOf")
    if isinstance(parts, list) and len(parts) == 1 and isinstance(parts[0], dict):
        out = {**parts[0], **{k: v for k, v in out.items() if k != "allOf"}}
    for key in _UNIONS:
        out = _union(out, key)
    return out


def _union(node: dict[str, Any], key: str) -> dict[str, Any]:
    """One real branch and null: that branch, nullable. Other unions stay as they are."""
    options = node.get(key)
    if not isinstance(options, list):
        return node
    real = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
    if len(real) != 1 or not isinstance(real[0], dict):
        return node
    merged = {**real[0], **{k: v for k, v in node.items() if k != key}}
    if len(real) < len(options):
        kind = merged.get("type", "string")
        kinds = kind if isinstance(kind, list) else [kind]
        merged["type"] = [*kinds, "null"] if "null" not in kinds else kinds
    return merged
