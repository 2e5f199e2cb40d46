"""The simulator serves the models a provider serves and accepts what their APIs accept:
404 for a model it does not serve, OpenAI's reasoning models refusing `max_tokens` and a
temperature, and hidden reasoning tokens billed as output."""

from __future__ import annotations

from typing import Any

from pipeline.sim import SimConfig
from tests.unit.test_sim_server import ANTHROPIC, chat, run, sim


def test_a_model_not_served_is_the_providers_404_in_both_formats() -> None:
    async def go() -> None:
        async with sim(SimConfig()) as client:
            resp = await client.post("/v1/chat/completions", json=chat("x", model="gpt-9-ultra"))
            error = (await resp.json())["error"]
            assert resp.status == 404 and error["code"] == "model_not_found"
            assert error["type"] == "invalid_request_error" and "gpt-9-ultra" in error["message"]
            ask = {
                "model": "claude-9",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "x"}],
            }
            resp = await client.post("/v1/messages", json=ask, headers=ANTHROPIC)
            body = await resp.json()
            assert resp.status == 404 and body["error"]["type"] == "not_found_error"
            # Dated snapshots and aliases of table models are served, as the providers do.
            snapshot = await client.post(
                "/v1/chat/completions", json=chat("x", model="gpt-4o-2024-08-06", max_tokens=8)
            )
            assert snapshot.status == 200
        async with sim(SimConfig(served_models=["my-finetune"])) as client:
            mine = await client.post("/v1/chat/completions", json=chat("x", model="my-finetune"))
            assert mine.status == 200

    run(go)


def refusal(body: dict[str, Any]) -> tuple[str, str]:
    return body["error"]["code"], body["error"]["param"]


def test_reasoning_models_refuse_max_tokens_and_temperature_as_openai_does() -> None:
    async def go() -> None:
        async with sim(SimConfig()) as client:
            old = await client.post(
                "/v1/chat/completions", json=chat("x", model="gpt-5", max_tokens=64)
            )
            assert old.status == 400
            assert refusal(await old.json()) == ("unsupported_parameter", "max_tokens")
            assert "max_completion_tokens" in (await old.json())["error"]["message"]
            cold = chat("x", model="o4-mini", max_completion_tokens=64, temperature=0)
            resp = await client.post("/v1/chat/completions", json=cold)
            assert resp.status == 400
            assert refusal(await resp.json()) == ("unsupported_value", "temperature")
            effort = chat("x", model="gpt-4o", max_tokens=8, reasoning_effort="low")
            resp = await client.post("/v1/chat/completions", json=effort)
            assert resp.status == 400
            assert refusal(await resp.json()) == ("unsupported_parameter", "reasoning_effort")

    run(go)


def test_hidden_reasoning_is_billed_as_output_and_can_starve_the_answer() -> None:
    async def go() -> None:
        async with sim(SimConfig()) as client:
            ask = chat(
                "I was billed twice",
                model="gpt-5-mini",
                max_completion_tokens=600,
                reasoning_effort="low",
            )
            body = await (await client.post("/v1/chat/completions", json=ask)).json()
            usage, choice = body["usage"], body["choices"][0]
            hidden = usage["completion_tokens_details"]["reasoning_tokens"]
            assert hidden == 64 and usage["completion_tokens"] > hidden
            assert choice["message"]["content"] == "billing" and choice["finish_reason"] == "stop"
            more = {**ask, "reasoning_effort": "high", "max_completion_tokens": 2000}
            body = await (await client.post("/v1/chat/completions", json=more)).json()
            assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 768
            # A cap the thinking eats whole: empty answer, cut for length, all of it billed.
            tight = {**ask, "max_completion_tokens": 16}
            body = await (await client.post("/v1/chat/completions", json=tight)).json()
            choice, usage = body["choices"][0], body["usage"]
            assert choice["message"]["content"] == "" and choice["finish_reason"] == "length"
            assert usage["completion_tokens"] == 16
            assert usage["completion_tokens_details"]["reasoning_tokens"] == 16

    run(go)
