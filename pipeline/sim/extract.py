"""The simulator's answers to extract requests: JSON that fits the request's schema,
chosen deterministically from the user's text.

    extract_answer(schema, "URGENT: invoice INV-7 charged twice on 2026-11-03")
    # {'queue': 'billing', 'priority': 'high', 'due': '2026-11-03', ...}

The schema comes from the request: OpenAI `response_format` (json_schema), an Anthropic
tool's `input_schema` under a forced `tool_choice` or Anthropic's `output_config.format`,
or a system line `JSON Schema: {...}` (the prompt modes); `schema_refs.plain` first
inlines the `$ref`s and nullable `anyOf`s the SDKs write from pydantic models. Per property:

- enum: the value whose keywords the text uses most. A value's keywords are its own
  words and those the description gives it as `value: word, word;` (e.g. "high: urgent,
  blocking; low: question"). No match: a value named other / normal / unknown / none,
  else the last value (null when optional).
- string: the sentence sharing the most words with the property's name and description,
  else the first sentence (extractive), cut to maxLength or "At most N characters".
- integer / number: the first number in the text within the bounds; boolean: whether
  the text uses a word of the name or description; date: the first date in the text
  (2026-11-03, 3 November 2026, November 3, 2026). Lists take every match; objects recurse.

`spoil` injects the bad answers `ExtractFaults` asks for: JSON cut off, a required field
left out, an enum value that is not allowed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from datetime import date
from functools import lru_cache
from typing import Any

from pipeline.sim.generate import Msg, stable_fraction
from schemas.sim import ExtractFaults

SCHEMA_LINE = re.compile(r"^JSON Schema: (\{.*\})\s*$", re.MULTILINE)
_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\s*\n+\s*")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")
_AT_MOST = re.compile(r"at most (\d+) characters", re.IGNORECASE)
_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_DMY = re.compile(r"\b(\d{1,2}) (" + "|".join(_MONTHS) + r"),? (\d{4})\b", re.IGNORECASE)
_MDY = re.compile(r"\b(" + "|".join(_MONTHS) + r") (\d{1,2}),? (\d{4})\b", re.IGNORECASE)
_FALLBACKS = ("other", "normal", "unknown", "none")
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "or",
        "the",
        "of",
        "to",
        "in",
        "on",
        "for",
        "is",
        "are",
        "be",
        "it",
        "its",
        "this",
        "that",
        "with",
        "as",
        "by",
    ]
)
NOT_ALLOWED = "not-a-listed-value"
_MIN_WORDS = 3  # shorter "sentences" (P.S., a sign-off) are never a string's value


def schema_in_prompt(messages: Sequence[Msg]) -> dict[str, Any] | None:
    """The schema a system message carries on a `JSON Schema: {...}` line, if any."""
    for role, content in messages:
        if role == "system" and (m := SCHEMA_LINE.search(content)):
            try:
                doc = json.loads(m.group(1))
            except ValueError:
                return None
            return doc if isinstance(doc, dict) else None
    return None


def row_text(messages: Sequence[Msg]) -> str:
    """The row's text: the first user message (a re-ask adds turns after it)."""
    return next((content for role, content in messages if role == "user"), "")


# The same texts and schemas come back field after field and request after request:
# cached, an answer takes about a tenth of the time (the simulator must not be what a
# benchmark of the pipeline measures).
@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


@lru_cache(maxsize=256)
def _stems(text: str, stop: bool = True) -> tuple[str, ...]:
    """Word stems; `stop` drops function words (not for enum keywords: a language's
    keywords are its function words)."""
    return tuple(_stem(w) for w in _WORD.findall(text.lower()) if not (stop and w in _STOP))


def _keys(name: str, prop: dict[str, Any]) -> frozenset[str]:
    """Words that point at a property: its name's and description's content words."""
    return _content_words(name.replace("_", " ") + " " + str(prop.get("description", "")))


@lru_cache(maxsize=1024)
def _content_words(text: str) -> frozenset[str]:
    return frozenset(w for w in _stems(text) if len(w) >= 4)


def _types(prop: dict[str, Any]) -> list[str]:
    t = prop.get("type", "string")
    return [x for x in (t if isinstance(t, list) else [t]) if x != "null"]


@lru_cache(maxsize=1024)
def _enum_keywords(values: tuple[str, ...], description: str) -> list[set[str]]:
    out = []
    for v in values:
        words = set(_stems(v, stop=False))
        m = re.search(rf"(?:^|[;,.(]\s*|\s){re.escape(v)}\s*:\s*([^;.)]*)", description, re.I)
        if m:
            words |= set(_stems(m.group(1), stop=False))
        out.append(words)
    return out


@lru_cache(maxsize=64)
def _word_counts(text: str) -> Counter[str]:
    return Counter(_stems(text, stop=False))


def _enum_scores(values: list[str], description: str, text: str) -> list[int]:
    counts = _word_counts(text)
    keywords = _enum_keywords(tuple(values), description)
    return [sum(counts[k] for k in keys) for keys in keywords]


def _enum(prop: dict[str, Any], text: str, required: bool) -> str | None:
    values = [v for v in prop.get("enum", []) if isinstance(v, str)]
    if not values:
        return None
    scores = _enum_scores(values, str(prop.get("description", "")), text)
    best = max(range(len(values)), key=lambda i: (scores[i], -i))
    if scores[best] > 0:
        return values[best]
    if not required:
        return None
    lowered = [v.lower() for v in values]
    return next((values[lowered.index(f)] for f in _FALLBACKS if f in lowered), values[-1])


@lru_cache(maxsize=64)
def _sentences(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in _SENTENCE.split(text) if s.strip())


@lru_cache(maxsize=64)
def _candidates(text: str) -> tuple[tuple[str, frozenset[str]], ...]:
    """A string's candidate values (sentences of a few words at least, else any) with
    their content words, once per text."""
    every = _sentences(text)
    long = [s for s in every if len(s.split()) >= _MIN_WORDS] or every
    return tuple((s, frozenset(_stems(s))) for s in long)


def _string(name: str, prop: dict[str, Any], text: str, required: bool) -> str | None:
    candidates = _candidates(text)
    if not candidates:
        return "" if required else None
    sentences = [s for s, _ in candidates]
    keys = _keys(name, prop)
    scores = [len(words & keys) for _, words in candidates]
    best = max(range(len(sentences)), key=lambda i: (scores[i], -i))
    if scores[best] == 0 and not required:
        return None
    chosen = sentences[best] if scores[best] else sentences[0]
    limit = prop.get("maxLength")
    if limit is None and (m := _AT_MOST.search(str(prop.get("description", "")))):
        limit = int(m.group(1))
    if isinstance(limit, int) and len(chosen) > limit:
        chosen = chosen[:limit].rsplit(" ", 1)[0] if " " in chosen[:limit] else chosen[:limit]
    return chosen


def _numbers(prop: dict[str, Any], text: str, integer: bool) -> list[float | int]:
    lo, hi = prop.get("minimum"), prop.get("maximum")
    out: list[float | int] = []
    for m in _NUMBER.finditer(text):
        raw = m.group(0)
        if integer and "." in raw:
            continue
        value: float | int = int(raw) if integer else float(raw)
        if (lo is None or value >= lo) and (hi is None or value <= hi):
            out.append(value)
    return out


def _dates(text: str) -> list[str]:
    found: list[tuple[int, str]] = []
    for m in _ISO.finditer(text):
        found.append((m.start(), f"{m.group(1)}-{m.group(2)}-{m.group(3)}"))
    for m in _DMY.finditer(text):
        month = _MONTHS.index(m.group(2).lower()) + 1
        found.append((m.start(), f"{m.group(3)}-{month:02d}-{int(m.group(1)):02d}"))
    for m in _MDY.finditer(text):
        month = _MONTHS.index(m.group(1).lower()) + 1
        found.append((m.start(), f"{m.group(3)}-{month:02d}-{int(m.group(2)):02d}"))
    out = []
    for _, iso in sorted(found):
        try:
            date.fromisoformat(iso)
        except ValueError:
            continue
        out.append(iso)
    return out


def _value(name: str, prop: dict[str, Any], text: str, required: bool) -> Any:
    types = _types(prop)
    kind = types[0] if types else "string"
    if "enum" in prop:
        return _enum(prop, text, required)
    if kind == "object":
        sub = extract_answer(prop, text)
        return sub if required or any(v is not None for v in sub.values()) else None
    if kind == "array":
        return _list(name, prop, text)
    if kind in ("integer", "number"):
        found = _numbers(prop, text, kind == "integer")
        if found:
            return found[0]
        return (prop.get("minimum") or 0) if required else None
    if kind == "boolean":
        keys = _keys(name, prop)
        return any(w in keys for w in _stems(text))
    if prop.get("format") == "date" or "YYYY-MM-DD" in str(prop.get("description", "")):
        dates = _dates(text)
        return dates[0] if dates else (date(2026, 1, 1).isoformat() if required else None)
    return _string(name, prop, text, required)


def _list(name: str, prop: dict[str, Any], text: str) -> list[Any]:
    items = prop.get("items") if isinstance(prop.get("items"), dict) else {}
    assert isinstance(items, dict)
    limit = prop.get("maxItems") if isinstance(prop.get("maxItems"), int) else 50
    kind = (_types(items) or ["string"])[0]
    found: list[Any]
    if "enum" in items:
        values = [v for v in items["enum"] if isinstance(v, str)]
        scores = _enum_scores(values, str(items.get("description", "")), text)
        found = [v for v, s in zip(values, scores, strict=True) if s > 0]
    elif kind in ("integer", "number"):
        found = _numbers(items, text, kind == "integer")
    elif items.get("format") == "date":
        found = _dates(text)
    else:
        keys = _keys(name, prop)
        found = [s for s in _sentences(text) if any(w in keys for w in _stems(s))]
    return found[:limit]


def extract_answer(schema: dict[str, Any], text: str) -> dict[str, Any]:
    """A value for every property of `schema` (null for optional ones the text lacks)."""
    props = schema.get("properties")
    if not isinstance(props, dict):
        return {}
    required = set(schema.get("required") or [])
    out: dict[str, Any] = {}
    for name, prop in props.items():
        if isinstance(prop, dict):
            out[name] = _value(name, prop, text, name in required and not _nullable(prop))
    return out


def _nullable(prop: object) -> bool:
    kinds = prop.get("type") if isinstance(prop, dict) else None
    return isinstance(kinds, list) and "null" in kinds


def spoil(
    answer: dict[str, Any],
    schema: dict[str, Any],
    faults: ExtractFaults,
    *parts: object,
) -> str:
    """The answer as JSON text, spoiled as `faults` draws for this request (`parts`)."""
    text = json.dumps(answer, ensure_ascii=False)
    draw = stable_fraction(*parts, "extract-fault")
    edge = faults.invalid_json_rate
    if draw < edge:
        return text[: max(1, len(text) // 2)]
    edge += faults.missing_required_rate
    if draw < edge:
        # A strict schema (OpenAI) lists every property as required, the optional ones
        # nullable: leaving one of those out spoils nothing, so the first non-nullable goes.
        names = schema.get("required")
        props = schema.get("properties") or {}
        required = (
            [r for r in names if r in answer and not _nullable(props.get(r))]
            if isinstance(names, list)
            else []
        )
        if required:
            answer = {k: v for k, v in answer.items() if k != required[0]}
        return json.dumps(answer, ensure_ascii=False)
    edge += faults.wrong_enum_rate
    if draw < edge:
        props = schema.get("properties") or {}
        enums = [n for n, p in props.items() if isinstance(p, dict) and "enum" in p]
        if enums:
            answer = {**answer, enums[0]: NOT_ALLOWED}
        return json.dumps(answer, ensure_ascii=False)
    return text
