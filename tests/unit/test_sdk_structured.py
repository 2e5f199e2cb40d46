"""Structured output through the official SDKs, against the simulator: OpenAI's strict
`json_schema` response format (by hand, and `chat.completions.parse` with a pydantic
model), Anthropic's forced tool use and its `messages.parse`, and both inside batches.

The schemas are the ones the SDKs write from a pydantic model (`$defs`, `$ref`s, nullable
`anyOf`), so the simulator must read them as the providers do; every answer is parsed
back into the model by the SDK or by pydantic, as a user's code would.
"""

from __future__ import annotations

import json
from datetime import date
from enum import StrEnum
from typing import Any, Literal

import pytest
from anthropic.types import ToolUseBlock
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, Field

from pipeline.sim import BatchBehaviour, SimConfig
from tests.unit.test_sdk_conformance import Env, clients, strict

TEXT = (
    "URGENT: I was charged $42.50 twice for invoice INV-7, due 2026-11-03. "
    "Please refund the second charge."
)
HAIKU = "claude-haiku-4-5"
TIMING = BatchBehaviour(validate_s=10, turnaround_s=100, finalize_s=10, cancel_s=10, time_scale=10)


class Queue(StrEnum):
    billing = "billing"
    technical = "technical"
    account = "account"
    other = "other"


class Contact(BaseModel):
    email: str | None = Field(description="The customer's email address, if given.")


class Ticket(BaseModel):
    queue: Queue = Field(
        description="billing: invoice, charged, refund; technical: crash, error; "
        "account: password, login"
    )
    priority: Literal["high", "normal"] = Field(description="high: urgent, blocking")
    amount: float | None = Field(description="The amount charged, in dollars.")
    due: date | None = Field(description="When the invoice is due, YYYY-MM-DD.")
    summary: str = Field(description="The problem, in one sentence.")
    contact: Contact


def expected(ticket: Ticket) -> None:
    assert (ticket.queue, ticket.priority) == (Queue.billing, "high")
    assert (ticket.amount, ticket.due) == (42.5, date(2026, 11, 3))
    assert ticket.summary and ticket.contact.email is None


@pytest.fixture
def env() -> Any:
    with clients(SimConfig(batches=TIMING)) as both:
        yield both


def json_schema_format() -> dict[str, Any]:
    """`response_format` written by hand, as OpenAI's strict mode wants it: every field
    required (optional ones nullable), no other properties."""
    contact = {
        "type": "object",
        "properties": {"email": {"type": ["string", "null"]}},
        "required": ["email"],
        "additionalProperties": False,
    }
    properties = {
        "queue": {
            "type": "string",
            "enum": [q.value for q in Queue],
            "description": Ticket.model_fields["queue"].description,
        },
        "priority": {"type": "string", "enum": ["high", "normal"], "description": "high: urgent"},
        "amount": {"type": ["number", "null"], "description": "The amount charged."},
        "due": {"type": ["string", "null"], "format": "date"},
        "summary": {"type": "string"},
        "contact": contact,
    }
    schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    return {
        "type": "json_schema",
        "json_schema": {"name": "ticket", "strict": True, "schema": schema},
    }


def tool() -> dict[str, Any]:
    return {
        "name": "record_ticket",
        "description": "Record the fields of the ticket.",
        "input_schema": Ticket.model_json_schema(),
    }


ASK: Any = [{"role": "user", "content": TEXT}]
FORCED: Any = {"type": "tool", "name": "record_ticket"}


def test_openai_strict_json_schema_by_hand_and_by_parse(env: Env) -> None:
    answer = strict(
        env.oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=ASK,
            response_format=json_schema_format(),  # type: ignore[arg-type]
        )
    )
    assert answer.choices[0].finish_reason == "stop"
    expected(Ticket.model_validate_json(answer.choices[0].message.content or ""))
    parsed = env.oai.chat.completions.parse(
        model="gpt-4o-mini", messages=ASK, response_format=Ticket
    )
    message = parsed.choices[0].message
    assert isinstance(message.parsed, Ticket) and message.refusal is None
    expected(message.parsed)


def test_anthropic_forced_tool_use_and_parse(env: Env) -> None:
    answer = strict(
        env.ant.messages.create(
            model=HAIKU, max_tokens=256, messages=ASK, tools=[tool()], tool_choice=FORCED
        )
    )
    assert answer.stop_reason == "tool_use" and len(answer.content) == 1
    block = answer.content[0]
    assert isinstance(block, ToolUseBlock) and block.name == "record_ticket"
    assert block.id.startswith("toolu_")
    expected(Ticket.model_validate(block.input))
    parsed = env.ant.messages.parse(model=HAIKU, max_tokens=256, messages=ASK, output_format=Ticket)
    assert parsed.stop_reason == "end_turn" and isinstance(parsed.parsed_output, Ticket)
    expected(parsed.parsed_output)


def test_openai_batch_lines_with_a_response_format(env: Env) -> None:
    body = {"model": "gpt-4o-mini", "messages": ASK, "response_format": json_schema_format()}
    line = {"custom_id": "t1", "method": "POST", "url": "/v1/chat/completions", "body": body}
    uploaded = env.oai.files.create(file=("in.jsonl", json.dumps(line).encode()), purpose="batch")
    batch = env.oai.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    env.clock.now += 20
    done = env.oai.batches.retrieve(batch.id)
    assert done.status == "completed" and done.output_file_id is not None
    (out,) = [json.loads(x) for x in env.oai.files.content(done.output_file_id).text.splitlines()]
    completion = ChatCompletion.model_validate(out["response"]["body"])
    expected(Ticket.model_validate_json(completion.choices[0].message.content or ""))


def test_anthropic_batch_requests_with_a_forced_tool(env: Env) -> None:
    params = {
        "model": HAIKU,
        "max_tokens": 256,
        "messages": ASK,
        "tools": [tool()],
        "tool_choice": FORCED,
    }
    batch = env.ant.messages.batches.create(requests=[{"custom_id": "t1", "params": params}])
    env.clock.now += 20
    assert env.ant.messages.batches.retrieve(batch.id).processing_status == "ended"
    (result,) = list(env.ant.messages.batches.results(batch.id))
    assert result.result.type == "succeeded"
    block = result.result.message.content[0]
    assert isinstance(block, ToolUseBlock)
    expected(Ticket.model_validate(block.input))
