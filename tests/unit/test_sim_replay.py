"""Replay mode: recorded answers only, 404 for anything not recorded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipeline.sim import SimConfig, build_app
from pipeline.sim.replay import ReplayDataError, ReplayTable

ROUTERBENCH = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "routerbench"
ANTHROPIC = {"anthropic-version": "2023-06-01"}


def write_pair(folder: Path) -> Path:
    prompts = {
        "sample_id": ["s1", "s2", "s3"],
        "eval_name": ["arc", "arc", "mbpp"],
        "split": ["train", "test", "test"],
        "prompt": ["What is 2+2?\nAnswer:", "Name a prime.", "What is 2+2?\nAnswer:"],
    }
    responses = {
        "sample_id": ["s1", "s1", "s2", "s3"],
        "model": ["small", "big", "big", "small"],
        "response": ["5", "4", "7", "four"],
        "correct": [0.0, 1.0, 1.0, 1.0],
        "cost_usd": [0.0001, 0.002, 0.003, 0.0001],
    }
    pq.write_table(pa.table(prompts), folder / "prompts.parquet")
    pq.write_table(pa.table(responses), folder / "responses.parquet")
    return folder


@asynccontextmanager
async def replaying(folder: Path) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(build_app(SimConfig(replay_dir=folder)))) as client:
        yield client


def chat(model: str, prompt: str) -> dict[str, Any]:
    messages = [{"role": "system", "content": "Answer."}, {"role": "user", "content": prompt}]
    return {"model": model, "messages": messages}


def test_recorded_answer_is_served_with_its_cost(tmp_path: Path) -> None:
    async def go() -> None:
        async with replaying(write_pair(tmp_path)) as client:
            resp = await client.post("/v1/chat/completions", json=chat("big", "Name a prime."))
            assert resp.status == 200
            body = await resp.json()
            assert body["choices"][0]["message"]["content"] == "7"
            assert body["tierline"] == {"recorded_cost_usd": 0.003, "sample_id": "s2"}
            assert float(resp.headers["x-tierline-recorded-cost-usd"]) == 0.003
            question = {"role": "user", "content": "What is 2+2?\nAnswer:"}
            anthropic = {"model": "small", "max_tokens": 10, "messages": [question]}
            resp = await client.post("/v1/messages", json=anthropic, headers=ANTHROPIC)
            body = await resp.json()
            # Two samples share this prompt: the first in prompts.parquet wins.
            assert body["content"][0]["text"] == "5"
            assert body["tierline"]["sample_id"] == "s1"

    asyncio.run(go())


def test_anything_not_recorded_is_404_never_an_invented_answer(tmp_path: Path) -> None:
    async def go() -> None:
        async with replaying(write_pair(tmp_path)) as client:
            resp = await client.post("/v1/chat/completions", json=chat("small", "Name a prime."))
            assert resp.status == 404
            error = (await resp.json())["error"]
            assert error["type"] == "not_found"
            assert error["message"] == "no recorded answer for model small and this prompt"
            resp = await client.post("/v1/chat/completions", json=chat("big", "Unknown?"))
            assert resp.status == 404
            models = await (await client.get("/v1/models")).json()
            assert [m["id"] for m in models["data"]] == ["big", "small"]

    asyncio.run(go())


def test_unusable_replay_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReplayDataError, match=r"prompts\.parquet"):
        ReplayTable.load(tmp_path)
    write_pair(tmp_path)
    pq.write_table(pa.table({"sample_id": ["s1"]}), tmp_path / "responses.parquet")
    with pytest.raises(ReplayDataError, match="lacks column"):
        ReplayTable.load(tmp_path)

    async def go() -> None:
        async with TestClient(TestServer(build_app(SimConfig()))) as client:
            resp = await client.post("/admin/config", json={"replay_dir": str(tmp_path)})
            assert resp.status == 400
            assert "lacks column" in (await resp.json())["error"]["message"]
            assert (
                await client.post("/v1/chat/completions", json=chat("gpt-4o-mini", "x"))
            ).status == 200

    asyncio.run(go())


@pytest.mark.skipif(not ROUTERBENCH.is_dir(), reason="shared RouterBench data not present")
def test_routerbench_answers_are_replayed() -> None:
    prompts = pq.read_table(ROUTERBENCH / "prompts.parquet").slice(0, 3).to_pylist()
    responses = pq.read_table(ROUTERBENCH / "responses.parquet").to_pylist()
    model = "gpt-4-1106-preview"
    recorded = {r["sample_id"]: r for r in responses if r["model"] == model}

    async def go() -> None:
        async with replaying(ROUTERBENCH) as client:
            for row in prompts:
                resp = await client.post("/v1/chat/completions", json=chat(model, row["prompt"]))
                assert resp.status == 200
                body = await resp.json()
                expected = recorded[row["sample_id"]]
                assert body["choices"][0]["message"]["content"] == expected["response"]
                assert body["tierline"]["recorded_cost_usd"] == expected["cost_usd"]
            resp = await client.post(
                "/v1/chat/completions", json=chat("gpt-5", prompts[0]["prompt"])
            )
            assert resp.status == 404

    asyncio.run(go())
