"""The official `openai` and `anthropic` SDKs as clients of the simulator.

Our adapters agreeing with our simulator proves little; the providers' own SDKs parsing
every answer does. Each SDK object is also re-validated strictly (`strict`): the SDKs
build objects leniently, so a missing required field or a wrong literal would otherwise
pass unnoticed. The simulator runs in its own thread on a fake clock the test moves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anthropic
import openai
import pytest
from anthropic.types import Message as AnthropicMessage
from anthropic.types import ModelInfo
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse
from openai.types import Batch, FileObject, Model
from openai.types.chat import ChatCompletion

from pipeline.sim import BatchBehaviour, ModelBehaviour, SimConfig, run_in_thread

SYSTEM = "Classify the ticket.\nAllowed labels: billing | technical | account | other"
POLICY = SYSTEM + "\n" + "Weigh every sentence of the ticket before you answer. " * 120
# 10 s validating, 100 s answering, 10 s finalizing, in provider seconds; 10x the clock.
TIMING = BatchBehaviour(validate_s=10, turnaround_s=100, finalize_s=10, cancel_s=10, time_scale=10)
CONFIG = SimConfig(batches=TIMING, models={"gpt-4o-mini": ModelBehaviour()})
T = TypeVar("T", bound=Any)
HAIKU = "claude-3-5-haiku"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    oai: openai.OpenAI
    ant: anthropic.Anthropic
    clock: FakeClock


@contextmanager
def clients(config: SimConfig, *, retries: int = 0, key: str = "sk-test") -> Iterator[Env]:
    """Both SDKs on a simulator in its own thread, on a fake clock the test moves."""
    clock = FakeClock()
    base_url, stop = run_in_thread(config, clock=clock)
    oai = openai.OpenAI(base_url=base_url, api_key=key, max_retries=retries)
    ant = anthropic.Anthropic(
        base_url=base_url.removesuffix("/v1"), api_key=key, max_retries=retries
    )
    try:
        yield Env(oai, ant, clock)
    finally:
        oai.close()
        ant.close()
        stop()


@pytest.fixture
def env() -> Iterator[Env]:
    with clients(CONFIG) as both:
        yield both


def strict(obj: T) -> T:
    """`obj` validated again from what the server sent: required fields, literals, types."""
    return type(obj).model_validate(obj.to_dict(mode="json"))


def chat_line(custom_id: str, text: str, model: str = "gpt-4o-mini") -> str:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
    body = {"model": model, "messages": messages, "max_tokens": 16}
    line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions"}
    return json.dumps({**line, "body": body}) + "\n"


def test_openai_chat_completion_and_models(env: Env) -> None:
    messages: Any = [{"role": "system", "content": POLICY}, {"role": "user", "content": "x"}]
    first = strict(env.oai.chat.completions.create(model="gpt-4o-mini", messages=messages))
    assert isinstance(first, ChatCompletion) and first.choices[0].finish_reason == "stop"
    assert first.usage is not None and first.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    messages[1]["content"] = "I was billed twice"
    second = env.oai.chat.completions.create(
        model="gpt-4o-mini", messages=messages, prompt_cache_key="job-1"
    )
    assert second.choices[0].message.content == "billing"
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    assert second.usage.prompt_tokens_details.cached_tokens == 0  # a new cache key
    third = env.oai.chat.completions.create(
        model="gpt-4o-mini", messages=messages, prompt_cache_key="job-1"
    )
    assert third.usage is not None and third.usage.prompt_tokens_details is not None
    cached = third.usage.prompt_tokens_details.cached_tokens
    assert cached is not None and cached >= 1024 and cached % 128 == 0
    models = [strict(m) for m in env.oai.models.list()]
    assert "gpt-4o-mini" in [m.id for m in models] and isinstance(models[0], Model)


def test_openai_files_and_batches(env: Env) -> None:
    data = "".join(chat_line(f"r{i}", t) for i, t in enumerate(["billed twice", "a fault"]))
    uploaded = strict(env.oai.files.create(file=("in.jsonl", data.encode()), purpose="batch"))
    assert isinstance(uploaded, FileObject) and uploaded.bytes == len(data)
    assert strict(env.oai.files.retrieve(uploaded.id)).purpose == "batch"
    batch = strict(
        env.oai.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"job": "conformance"},
        )
    )
    assert isinstance(batch, Batch) and batch.status == "validating"
    assert batch.metadata == {"job": "conformance"}
    env.clock.now += 7  # 70 provider seconds: one of two answered
    running = strict(env.oai.batches.retrieve(batch.id))
    assert running.status == "in_progress" and running.request_counts is not None
    assert running.request_counts.completed == 1 and running.request_counts.total == 2
    other = env.oai.files.create(file=("b.jsonl", chat_line("x", "y").encode()), purpose="batch")
    doomed = env.oai.batches.create(
        input_file_id=other.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert strict(env.oai.batches.cancel(doomed.id)).status == "cancelling"
    env.clock.now += 10
    done = strict(env.oai.batches.retrieve(batch.id))
    assert done.status == "completed" and done.request_counts is not None
    assert done.request_counts.completed == 2 and done.output_file_id is not None
    assert done.usage is not None and done.usage.input_tokens > 0
    assert strict(env.oai.batches.retrieve(doomed.id)).status == "cancelled"
    listed = [strict(b) for b in env.oai.batches.list(limit=10)]
    assert {b.id for b in listed} == {batch.id, doomed.id}
    lines = [json.loads(x) for x in env.oai.files.content(done.output_file_id).text.splitlines()]
    answers = {x["custom_id"]: ChatCompletion.model_validate(x["response"]["body"]) for x in lines}
    assert answers["r0"].choices[0].message.content == "billing"


def test_openai_mixed_models_fail_the_batch(env: Env) -> None:
    data = chat_line("a", "x") + chat_line("b", "y", model="gpt-4o")
    uploaded = env.oai.files.create(file=("in.jsonl", data.encode()), purpose="batch")
    batch = env.oai.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    env.clock.now += 2
    failed = strict(env.oai.batches.retrieve(batch.id))
    assert failed.status == "failed" and failed.errors is not None and failed.errors.data
    assert failed.errors.data[0].code == "model_mismatch" and failed.errors.data[0].line == 2


def test_openai_unknown_ids_raise_typed_errors(env: Env) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        env.oai.batches.retrieve("batch_does_not_exist")
    assert caught.value.status_code == 404
    with pytest.raises(openai.NotFoundError):
        env.oai.files.retrieve("file-does-not-exist")


def test_anthropic_messages_cache_and_models(env: Env) -> None:
    system: Any = [{"type": "text", "text": POLICY, "cache_control": {"type": "ephemeral"}}]
    ask: Any = [{"role": "user", "content": "I was billed twice"}]
    first = strict(env.ant.messages.create(model=HAIKU, max_tokens=16, system=system, messages=ask))
    assert isinstance(first, AnthropicMessage) and first.stop_reason == "end_turn"
    written = first.usage.cache_creation_input_tokens
    assert written is not None and written >= 1024 and first.usage.cache_read_input_tokens == 0
    assert first.usage.cache_creation is not None
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == written
    second = env.ant.messages.create(model=HAIKU, max_tokens=16, system=system, messages=ask)
    assert second.usage.cache_read_input_tokens == written
    assert second.content[0].type == "text" and second.content[0].text == "billing"
    models = [strict(m) for m in env.ant.models.list()]
    assert "claude-haiku-4-5" in [m.id for m in models] and isinstance(models[0], ModelInfo)


def test_anthropic_message_batches(env: Env) -> None:
    def request(custom_id: str, text: str, **params: Any) -> Any:
        body = {"model": HAIKU, "max_tokens": 16, "system": SYSTEM}
        messages = [{"role": "user", "content": text}]
        return {"custom_id": custom_id, "params": {**body, "messages": messages, **params}}

    requests = [request("r0", "billed twice"), request("r1", "a fault"), request("bad", "x")]
    requests[2]["params"]["messages"] = []  # refused when it runs: an errored result
    batch = strict(env.ant.messages.batches.create(requests=requests))
    assert isinstance(batch, MessageBatch) and batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 3 and batch.results_url is None
    doomed = env.ant.messages.batches.create(requests=[request("d0", "x")])
    assert strict(env.ant.messages.batches.cancel(doomed.id)).processing_status == "canceling"
    env.clock.now += 12
    done = strict(env.ant.messages.batches.retrieve(batch.id))
    assert done.processing_status == "ended" and done.ended_at is not None
    assert (done.request_counts.succeeded, done.request_counts.errored) == (2, 1)
    results = {r.custom_id: strict(r) for r in env.ant.messages.batches.results(batch.id)}
    assert all(isinstance(r, MessageBatchIndividualResponse) for r in results.values())
    ok = results["r0"].result
    assert ok.type == "succeeded" and ok.message.content[0].type == "text"
    assert ok.message.usage.service_tier == "batch"
    bad = results["bad"].result
    assert bad.type == "errored" and bad.error.error.type == "invalid_request_error"
    canceled = list(env.ant.messages.batches.results(doomed.id))
    assert [r.result.type for r in canceled] == ["canceled"]
    assert {b.id for b in env.ant.messages.batches.list()} == {batch.id, doomed.id}


def test_anthropic_unknown_batch_raises_typed_error(env: Env) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        env.ant.messages.batches.retrieve("msgbatch_does_not_exist")
    assert caught.value.status_code == 404
