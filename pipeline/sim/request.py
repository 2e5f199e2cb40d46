"""Reading a completion request body into one `SimRequest`, whatever its wire format.

    messages, marks = read_messages(body["messages"], roles={"user": "user"})
    SimRequest("gpt-x", tuple(messages), max_tokens=16, cache_key="job-7")

Message content is a string or a list of text blocks; a block may carry Anthropic's
`cache_control: {"type": "ephemeral", "ttl": "5m" | "1h"}`, which becomes a `Breakpoint`
(where the cached prefix ends). Anything malformed raises `WireError`, answered 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

from pipeline.sim.generate import Msg
from pipeline.sim.prompt_cache import Breakpoint, Ttl

JSON = dict[str, object]
MAX_BREAKPOINTS = 4  # Anthropic's limit of blocks with cache_control per request
_TTLS: tuple[Ttl, ...] = ("5m", "1h")


class WireError(Exception):
    """A request the format cannot accept (answered 400)."""


@dataclass(frozen=True, slots=True)
class SimRequest:
    model: str
    messages: tuple[Msg, ...]
    max_tokens: int | None
    logprobs: bool = False  # the client asked for token log-probabilities (OpenAI only)
    cache_key: str | None = None  # OpenAI `prompt_cache_key`
    marks: tuple[Breakpoint, ...] = ()  # Anthropic `cache_control` blocks, system first
    # OpenAI caches every long prefix by itself; Anthropic only up to marked blocks.
    caching: Literal["automatic", "marked"] = "automatic"
    # OpenAI's parameters its reasoning models treat differently (see catalogue.py): the
    # name the cap came under, the temperature sent (None: not sent), the effort asked.
    cap_field: str | None = None
    temperature: float | None = None
    reasoning_effort: str | None = None
    # Structured output: the JSON Schema the answer must match (OpenAI response_format,
    # an Anthropic tool's input_schema), and the tool to answer with (Anthropic).
    schema: JSON | None = None
    tool: str | None = None


def _mark(block: Mapping[str, object], where: str) -> Ttl | None:
    """The ttl a block's `cache_control` asks for, or None without one."""
    control = block.get("cache_control")
    if control is None:
        return None
    if not isinstance(control, dict) or control.get("type") != "ephemeral":
        raise WireError(f"{where}.cache_control: type must be 'ephemeral'")
    ttl = control.get("ttl", "5m")
    if ttl not in _TTLS:
        raise WireError(f"{where}.cache_control.ttl: must be '5m' or '1h'")
    return cast(Ttl, ttl)


def read_content(content: object, where: str) -> tuple[str, list[tuple[int, Ttl]]]:
    """(text, [(characters up to the end of a marked block, ttl)]) of one content value."""
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise WireError(f"{where}: content must be a string or a list of text blocks")
    parts: list[str] = []
    marks: list[tuple[int, Ttl]] = []
    size = 0
    for i, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("text"), str):
            raise WireError(f"{where}: content blocks must be objects with a 'text' string")
        text = block["text"]
        parts.append(text)
        size += len(text)
        ttl = _mark(block, f"{where}.content[{i}]")
        if ttl is not None:
            marks.append((size, ttl))
    return "".join(parts), marks


def positive_int(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WireError(f"{name} must be a positive integer")
    return value


def common(body: object) -> tuple[JSON, str, list[object]]:
    """(body, model, raw messages) after the checks both formats make."""
    if not isinstance(body, dict):
        raise WireError("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise WireError("'model' is required and must be a non-empty string")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise WireError("'messages' is required and must be a non-empty list")
    return body, model, messages


def read_messages(
    raw: list[object], roles: Mapping[str, str], *, first: int = 0
) -> tuple[list[Msg], list[Breakpoint]]:
    """Messages as (role, text) and their cache marks; `first` is the index the first
    message will have in the request (1 when a system message goes before them)."""
    out: list[Msg] = []
    marks: list[Breakpoint] = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise WireError(f"{where} must be an object")
        role = message.get("role")
        if not isinstance(role, str) or role not in roles:
            raise WireError(f"{where}.role must be one of {', '.join(roles)}")
        text, ends = read_content(message.get("content"), where)
        out.append((roles[role], text))
        marks.extend(Breakpoint(first + i, end, ttl) for end, ttl in ends)
    return out, marks


def response_format(value: object) -> JSON | None:
    """The schema of OpenAI's `response_format` (None: free text or plain JSON mode)."""
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in (
        "text",
        "json_object",
        "json_schema",
    ):
        raise WireError("response_format.type must be text, json_object or json_schema")
    if value["type"] != "json_schema":
        return None
    spec = value.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise WireError("response_format.json_schema.schema must be an object")
    if not isinstance(spec.get("name"), str):
        raise WireError("response_format.json_schema.name is required")
    return cast(JSON, spec["schema"])


def forced_tool(tools: object, choice: object) -> tuple[JSON | None, str | None]:
    """(input schema, name) of the tool an Anthropic request forces, else (None, None)."""
    if tools is None:
        return None, None
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise WireError("tools must be a list of objects")
    for i, t in enumerate(tools):
        if not isinstance(t.get("name"), str) or not isinstance(t.get("input_schema"), dict):
            raise WireError(f"tools.{i}: name and input_schema are required")
    if not isinstance(choice, dict) or choice.get("type") != "tool":
        return None, None  # the model may answer in text: the sim does
    tool = next((t for t in tools if t["name"] == choice.get("name")), None)
    if tool is None:
        raise WireError(f"tool_choice.name {choice.get('name')!r} is not one of the tools")
    return cast(JSON, tool["input_schema"]), str(tool["name"])


def output_format(body: JSON) -> JSON | None:
    """The schema of Anthropic's structured output (`output_config.format`, or the beta's
    top-level `output_format`): the answer is a text block of that JSON."""
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else body.get("output_format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise WireError("output_config.format.type: must be 'json_schema'")
    if not isinstance(fmt.get("schema"), dict):
        raise WireError("output_config.format.schema: must be an object")
    return cast(JSON, fmt["schema"])


def check_marks(marks: list[Breakpoint]) -> tuple[Breakpoint, ...]:
    if len(marks) > MAX_BREAKPOINTS:
        raise WireError(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(marks)}."
        )
    return tuple(marks)
