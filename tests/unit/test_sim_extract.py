"""The simulator's structured answers, and the adapters that ask for them in each mode."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from jobs.extract import ExtractJob
from pipeline.providers.anthropic import AnthropicMessages, messages_body
from pipeline.providers.base import ChatRequest, OutputSchema
from pipeline.providers.openai import OpenAIChat, chat_body
from pipeline.sim import SimServer
from pipeline.sim.extract import extract_answer, spoil
from schemas.extract import ExtractTask
from schemas.job import Timeouts
from schemas.sim import ExtractFaults, ModelBehaviour, SimConfig

TASK = ExtractTask.model_validate(
    {
        "kind": "extract",
        "fields": {
            "queue": {
                "type": "enum",
                "values": ["billing", "technical", "other"],
                "description": "Team (billing: invoice, refund, charged; technical: error).",
            },
            "priority": {
                "type": "enum",
                "values": ["low", "normal", "high"],
                "description": "high: urgent, blocking; low: question",
            },
            "due": {"type": "date", "required": False, "description": "Deadline."},
            "seats": {"type": "integer", "minimum": 1, "maximum": 1000, "required": False},
            "summary": {"type": "string", "max_length": 30},
            "tags": {"type": "list", "items": {"type": "date"}, "required": False},
        },
    }
)
JOB = ExtractJob(TASK)
SCHEMA = json.loads(JOB.output_schema().schema)
TEXT = (
    "URGENT: our invoice was charged twice for 25 seats\n\n"
    "We were charged twice on 3 November 2026 and need the refund by 2026-12-01."
)


def test_values_come_from_the_text_deterministically() -> None:
    answer = extract_answer(SCHEMA, TEXT)
    assert answer["queue"] == "billing"
    assert answer["priority"] == "high"
    assert answer["due"] == "2026-11-03"  # the first date, whatever its spelling
    assert answer["seats"] == 25  # the first integer within the bounds
    assert answer["tags"] == ["2026-11-03", "2026-12-01"]
    assert TEXT.startswith(answer["summary"]) and len(answer["summary"]) <= 30
    assert extract_answer(SCHEMA, TEXT) == answer
    assert JOB.parse(json.dumps(answer)).ok


def test_nothing_matched_gives_the_fallback_value_or_null() -> None:
    answer = extract_answer(SCHEMA, "Hello there, how are you doing today")
    assert answer["queue"] == "other" and answer["priority"] == "normal"
    assert answer["due"] is None and answer["seats"] is None
    assert JOB.parse(json.dumps(answer)).ok


def test_faults_spoil_the_share_asked_for() -> None:
    answer = extract_answer(SCHEMA, TEXT)
    every = ExtractFaults(invalid_json_rate=1.0)
    assert not JOB.parse(spoil(answer, SCHEMA, every, 0, "m", "x")).ok
    missing = JOB.parse(spoil(answer, SCHEMA, ExtractFaults(missing_required_rate=1.0), 0, "x"))
    assert missing.reason is not None and "queue: required field is missing" in missing.reason
    # A strict schema lists optional fields as required (nullable): a truly required one goes.
    props = {"seats": {"type": ["integer", "null"]}, **SCHEMA["properties"]}
    strict = {**SCHEMA, "properties": props, "required": list(props)}
    missing = JOB.parse(spoil(answer, strict, ExtractFaults(missing_required_rate=1.0), 0, "x"))
    assert missing.reason is not None and "queue: required field is missing" in missing.reason
    wrong = JOB.parse(spoil(answer, SCHEMA, ExtractFaults(wrong_enum_rate=1.0), 0, "x"))
    assert wrong.reason is not None and wrong.reason.startswith("fields failed: queue")
    five = ExtractFaults(invalid_json_rate=0.05)
    bad = sum(not JOB.parse(spoil(answer, SCHEMA, five, 0, "m", i)).ok for i in range(2000))
    assert 60 <= bad <= 140  # 5% of 2,000, drawn by a stable hash


def test_openai_strict_schema_lists_every_property_and_drops_unsupported_keywords() -> None:
    request = ChatRequest("m", JOB.build_messages(TEXT), 64, output_schema=JOB.output_schema())
    body = chat_body(request)
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["required"] == list(schema["properties"]) and not schema["additionalProperties"]
    assert "maxLength" not in schema["properties"]["summary"]
    assert "At most 30 characters" in schema["properties"]["summary"]["description"]
    prompt = chat_body(
        ChatRequest("m", JOB.build_messages(TEXT), 64, output_schema=_mode("prompt"))
    )
    assert "response_format" not in prompt
    assert "\nJSON Schema: {" in prompt["messages"][0]["content"]
    assert chat_body(ChatRequest("m", (), 1, output_schema=_mode("json_object")))[
        "response_format"
    ] == {"type": "json_object"}


def test_anthropic_asks_with_a_forced_tool() -> None:
    body = messages_body(
        ChatRequest("c", JOB.build_messages(TEXT), 64, output_schema=JOB.output_schema())
    )
    assert body["tool_choice"] == {"type": "tool", "name": "extract"}
    assert body["tools"][0]["input_schema"]["properties"]["queue"]["enum"][0] == "billing"


def _mode(mode: str) -> OutputSchema:
    schema = JOB.output_schema()
    return OutputSchema(schema.name, schema.schema, mode)  # type: ignore[arg-type]


@asynccontextmanager
async def sim(config: SimConfig) -> AsyncIterator[tuple[SimServer, aiohttp.ClientSession]]:
    async with SimServer(config) as server, aiohttp.ClientSession() as session:
        yield server, session


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


@pytest.mark.parametrize(
    ("adapter", "mode"),
    [
        (OpenAIChat, "native"),
        (OpenAIChat, "json_object"),
        (OpenAIChat, "prompt"),
        (AnthropicMessages, "native"),
        (AnthropicMessages, "prompt"),
    ],
)
def test_the_simulator_answers_every_wire_format_and_mode(adapter: type, mode: str) -> None:
    async def go() -> None:
        async with sim(SimConfig(served_models=["m"])) as (server, session):
            provider = adapter(
                name="sim", base_url=server.base_url, api_key_env=None, timeouts=Timeouts()
            )
            request = ChatRequest(
                "m", JOB.build_messages(TEXT), JOB.max_output_tokens(), output_schema=_mode(mode)
            )
            answer = await provider.complete(session, request)
            parsed = JOB.parse(answer.text)
            assert parsed.ok and parsed.values is not None
            assert parsed.values["queue"] == "billing" and parsed.values["priority"] == "high"

    run(go)


def test_faults_are_per_model() -> None:
    async def go() -> None:
        broken = ModelBehaviour(extract=ExtractFaults(invalid_json_rate=1.0))
        async with sim(SimConfig(models={"cheap-*": broken}, served_models=["big-1"])) as (
            server,
            session,
        ):
            provider = OpenAIChat(
                name="sim", base_url=server.base_url, api_key_env=None, timeouts=Timeouts()
            )
            for model, ok in (("cheap-1", False), ("big-1", True)):
                request = ChatRequest(
                    model, JOB.build_messages(TEXT), 500, output_schema=JOB.output_schema()
                )
                answer = await provider.complete(session, request)
                assert JOB.parse(answer.text).ok is ok

    run(go)


def test_schemas_with_refs_and_nullable_unions_are_read_as_their_targets() -> None:
    from pipeline.sim.schema_refs import plain

    schema = {
        "type": "object",
        "properties": {
            "queue": {"$ref": "#/$defs/Queue", "description": "billing: invoice"},
            "amount": {"anyOf": [{"type": "number"}, {"type": "null"}]},
            "parent": {"$ref": "#/$defs/Node"},  # a schema that refers to itself
        },
        "required": ["queue", "amount", "parent"],
        "$defs": {
            "Queue": {"enum": ["billing", "other"], "type": "string"},
            "Node": {"type": "object", "properties": {"parent": {"$ref": "#/$defs/Node"}}},
        },
    }
    flat = plain(schema)
    assert flat["properties"]["queue"] == {
        "enum": ["billing", "other"],
        "type": "string",
        "description": "billing: invoice",
    }
    assert flat["properties"]["amount"] == {"type": ["number", "null"]}
    answer = extract_answer(flat, "The invoice was 12.5 dollars.")
    assert (answer["queue"], answer["amount"]) == ("billing", 12.5)
