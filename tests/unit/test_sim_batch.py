"""The simulator's batch APIs over HTTP: OpenAI files + batches and Anthropic message
batches, their state machines on a fake clock, limits, faults and stats."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from pipeline.sim import BatchBehaviour, Faults, ModelBehaviour, SimConfig, build_app
from pipeline.sim.batches import BatchTimeline

SYSTEM = "Classify the ticket.\nAllowed labels: billing | technical | account | other"
ANTHROPIC = {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant"}
WALL = 1_700_000_000.0
# 10 provider seconds of validation, 100 of answering, 10 of finalizing; every clock
# second is 10 provider seconds.
TIMING = BatchBehaviour(validate_s=10, turnaround_s=100, finalize_s=10, cancel_s=10, time_scale=10)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Client = TestClient[Any, Any]


@asynccontextmanager
async def sim(config: SimConfig, clock: FakeClock) -> AsyncIterator[Client]:
    app = build_app(config, clock, wall_clock=lambda: WALL)
    async with TestClient(TestServer(app)) as client:
        yield client


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def body(text: str, model: str = "gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
    return {"model": model, "messages": messages, "max_tokens": 16, **extra}


def line(custom_id: str, text: str, model: str = "gpt-4o-mini") -> dict[str, Any]:
    url = "/v1/chat/completions"
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body(text, model)}


async def upload(client: Client, lines: list[dict[str, Any]]) -> str:
    form = aiohttp.FormData()
    form.add_field("purpose", "batch")
    data = "".join(json.dumps(x) + "\n" for x in lines).encode()
    form.add_field("file", data, filename="in.jsonl", content_type="application/jsonl")
    resp = await client.post("/v1/files", data=form)
    assert resp.status == 200
    record = await resp.json()
    assert record["object"] == "file" and record["bytes"] == len(data)
    return str(record["id"])


async def create(client: Client, lines: list[dict[str, Any]]) -> dict[str, Any]:
    file_id = await upload(client, lines)
    payload = {"input_file_id": file_id, "endpoint": "/v1/chat/completions"}
    resp = await client.post("/v1/batches", json={**payload, "completion_window": "24h"})
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def get(client: Client, path: str) -> dict[str, Any]:
    resp = await client.get(path)
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def jsonl(client: Client, file_id: str | None) -> dict[str, dict[str, Any]]:
    """A file's lines by custom_id ({} when there is no file)."""
    if file_id is None:
        return {}
    resp = await client.get(f"/v1/files/{file_id}/content")
    rows = [json.loads(x) for x in (await resp.text()).splitlines()]
    return {row["custom_id"]: row for row in rows}


def test_timeline_spreads_answers_and_expires_with_what_it_reached() -> None:
    tl = BatchTimeline.of(TIMING, total=4)
    assert [tl.answered_by(t) for t in (0, 9.9, 10, 35, 60, 110, 500)] == [0, 0, 0, 1, 2, 4, 4]
    assert not tl.expires and tl.work_end == 110
    half = BatchTimeline.of(TIMING.model_copy(update={"complete_fraction_before_expiry": 0.5}), 4)
    assert half.expires and half.work_end == TIMING.expire_after_s
    assert half.answered_by(10_000) == 2
    slow = BatchTimeline.of(
        TIMING.model_copy(update={"turnaround_s": 200, "expire_after_s": 110}), 4
    )
    assert slow.expires and slow.answered_by(110) == 2


def test_openai_batch_runs_validating_to_completed_and_answers_like_direct_calls() -> None:
    async def go() -> None:
        clock = FakeClock()
        async with sim(SimConfig(batches=TIMING), clock) as client:
            texts = ["I was billed twice", "the app crashes", "reset my password", "hello"]
            batch = await create(client, [line(f"r{i}", t) for i, t in enumerate(texts)])
            assert batch["status"] == "validating" and batch["object"] == "batch"
            assert batch["request_counts"] == {"total": 4, "completed": 0, "failed": 0}
            assert batch["expires_at"] == int(WALL + 86_400) and batch["model"] == "gpt-4o-mini"
            seen = []
            for step in (4, 9.5, 11.5, 12.5):  # clock seconds after creation
                clock.now = 1000.0 + step
                now = await get(client, f"/v1/batches/{batch['id']}")
                seen.append((now["status"], now["request_counts"]["completed"]))
            assert seen == [
                ("in_progress", 1),
                ("in_progress", 3),
                ("finalizing", 4),
                ("completed", 4),
            ]
            assert now["completed_at"] == int(WALL + 120) and now["error_file_id"] is None
            out = await jsonl(client, now["output_file_id"])
            assert sorted(out) == ["r0", "r1", "r2", "r3"]
            direct = await (await client.post("/v1/chat/completions", json=body(texts[0]))).json()
            answer = out["r0"]["response"]
            assert answer["status_code"] == 200 and out["r0"]["error"] is None
            assert answer["body"]["choices"] == direct["choices"]
            assert answer["body"]["usage"] == direct["usage"]
            assert now["usage"]["input_tokens"] == sum(
                o["response"]["body"]["usage"]["prompt_tokens"] for o in out.values()
            )
            listed = await get(client, "/v1/batches?limit=5")
            assert [b["id"] for b in listed["data"]] == [batch["id"]]

    run(go)


def test_openai_output_order_differs_from_input_so_clients_match_by_custom_id() -> None:
    async def go() -> None:
        clock = FakeClock()
        async with sim(SimConfig(batches=TIMING), clock) as client:
            batch = await create(client, [line(f"r{i}", f"text {i}") for i in range(12)])
            clock.now += 100
            done = await get(client, f"/v1/batches/{batch['id']}")
            resp = await client.get(f"/v1/files/{done['output_file_id']}/content")
            order = [json.loads(x)["custom_id"] for x in (await resp.text()).splitlines()]
            assert sorted(order) == sorted(f"r{i}" for i in range(12))
            assert order != [f"r{i}" for i in range(12)]

    run(go)


def test_per_request_faults_and_bad_bodies_go_to_the_error_file() -> None:
    async def go() -> None:
        clock = FakeClock()
        broken = ModelBehaviour(faults=Faults(error_rates={503: 1.0}))
        config = SimConfig(batches=TIMING, models={"broken": broken})
        async with sim(config, clock) as client:
            bad = line("bad", "x")
            bad["body"]["max_tokens"] = 0
            batch = await create(client, [line("ok", "billed twice"), bad])
            clock.now += 100
            done = await get(client, f"/v1/batches/{batch['id']}")
            assert done["request_counts"] == {"total": 2, "completed": 1, "failed": 1}
            errors = await jsonl(client, done["error_file_id"])
            assert errors["bad"]["response"]["status_code"] == 400
            assert "max_tokens" in errors["bad"]["response"]["body"]["error"]["message"]
            other = await create(client, [line("b1", "x", model="broken")])
            clock.now += 100
            done = await get(client, f"/v1/batches/{other['id']}")
            assert done["output_file_id"] is None  # nothing succeeded, as OpenAI reports it
            errors = await jsonl(client, done["error_file_id"])
            assert errors["b1"]["response"]["status_code"] == 503

    run(go)


def test_mixed_models_and_bad_lines_fail_the_batch_with_errors() -> None:
    async def go() -> None:
        clock = FakeClock()
        async with sim(SimConfig(batches=TIMING), clock) as client:
            lines = [
                line("a", "x", "gpt-4o-mini"),
                line("b", "x", "gpt-4o"),
                line("a", "y", "gpt-4o-mini"),
            ]
            batch = await create(client, lines)
            assert batch["status"] == "validating"
            clock.now += 1
            failed = await get(client, f"/v1/batches/{batch['id']}")
            assert failed["status"] == "failed" and failed["failed_at"] == int(WALL + 10)
            codes = [(e["code"], e["line"]) for e in failed["errors"]["data"]]
            assert codes == [("model_mismatch", 2), ("duplicate_custom_id", 3)]
            assert "one model" in failed["errors"]["data"][0]["message"]
            assert failed["output_file_id"] is None and failed["error_file_id"] is None

    run(go)


def test_openai_limits_answer_as_openai_does() -> None:
    async def go() -> None:
        clock = FakeClock()
        limits = TIMING.model_copy(update={"openai_max_bytes": 2000, "openai_max_requests": 2})
        async with sim(SimConfig(batches=limits), clock) as client:
            file_id = await upload(client, [line(f"r{i}", "x" * 1000) for i in range(3)])
            payload = {"input_file_id": file_id, "endpoint": "/v1/chat/completions"}
            resp = await client.post("/v1/batches", json={**payload, "completion_window": "24h"})
            assert resp.status == 400
            assert "larger than the 2000 maximum" in (await resp.json())["error"]["message"]
            batch = await create(client, [line(f"r{i}", "x") for i in range(3)])
            clock.now += 1
            failed = await get(client, f"/v1/batches/{batch['id']}")
            assert failed["errors"]["data"][0]["code"] == "too_many_tasks"
            stats = await get(client, "/stats")
            assert stats["batches"]["refused"] == 1 and stats["batches"]["failed"] == 1

    run(go)


def test_expiry_keeps_what_was_answered_and_reports_the_rest_expired() -> None:
    async def go() -> None:
        clock = FakeClock()
        timing = TIMING.model_copy(update={"complete_fraction_before_expiry": 0.5})
        async with sim(SimConfig(batches=timing), clock) as client:
            batch = await create(client, [line(f"r{i}", f"text {i}") for i in range(4)])
            clock.now += 1000  # not yet 24 provider hours
            assert (await get(client, f"/v1/batches/{batch['id']}"))["status"] == "in_progress"
            clock.now += 86_400 / 10
            done = await get(client, f"/v1/batches/{batch['id']}")
            assert done["status"] == "expired" and done["expired_at"] == int(WALL + 86_400)
            assert done["request_counts"] == {"total": 4, "completed": 2, "failed": 2}
            out = await jsonl(client, done["output_file_id"])
            errors = await jsonl(client, done["error_file_id"])
            assert sorted(out) == ["r0", "r1"] and sorted(errors) == ["r2", "r3"]
            assert errors["r2"]["response"] is None
            assert errors["r2"]["error"]["code"] == "batch_expired"

    run(go)


def test_cancel_keeps_what_was_answered() -> None:
    async def go() -> None:
        clock = FakeClock()
        async with sim(SimConfig(batches=TIMING), clock) as client:
            batch = await create(client, [line(f"r{i}", f"text {i}") for i in range(4)])
            clock.now += 4  # 40 provider seconds: one answered
            resp = await client.post(f"/v1/batches/{batch['id']}/cancel")
            cancelling = await resp.json()
            assert cancelling["status"] == "cancelling"
            assert cancelling["cancelling_at"] == int(WALL + 40)
            clock.now += 100
            done = await get(client, f"/v1/batches/{batch['id']}")
            assert done["status"] == "cancelled" and done["cancelled_at"] == int(WALL + 50)
            assert sorted(await jsonl(client, done["output_file_id"])) == ["r0"]
            errors = await jsonl(client, done["error_file_id"])
            assert {e["error"]["code"] for e in errors.values()} == {"batch_cancelled"}
            again = await client.post(f"/v1/batches/{batch['id']}/cancel")
            assert again.status == 400  # an ended batch cannot be cancelled
            missing = await client.get("/v1/batches/batch_nope")
            assert missing.status == 404

    run(go)


def anthropic_request(custom_id: str, text: str, **params: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": text}]
    base = {"model": "claude-3-5-haiku", "system": SYSTEM, "messages": messages, "max_tokens": 16}
    return {"custom_id": custom_id, "params": {**base, **params}}


def test_anthropic_batch_counts_stay_processing_until_it_ends() -> None:
    async def go() -> None:
        clock = FakeClock()
        async with sim(SimConfig(batches=TIMING), clock) as client:
            requests = [anthropic_request(f"r{i}", f"billed twice {i}") for i in range(3)]
            requests.append(anthropic_request("bad", "x", max_tokens=None))
            resp = await client.post(
                "/v1/messages/batches", json={"requests": requests}, headers=ANTHROPIC
            )
            batch = await resp.json()
            assert resp.status == 200 and batch["type"] == "message_batch"
            assert batch["processing_status"] == "in_progress" and batch["results_url"] is None
            path = f"/v1/messages/batches/{batch['id']}"
            clock.now += 8
            mid = await (await client.get(path, headers=ANTHROPIC)).json()
            assert mid["request_counts"]["processing"] == 4 and mid["ended_at"] is None
            early = await client.get(f"{path}/results", headers=ANTHROPIC)
            assert early.status == 400
            clock.now += 8
            done = await (await client.get(path, headers=ANTHROPIC)).json()
            assert done["processing_status"] == "ended"
            assert done["request_counts"] == {
                "processing": 0,
                "succeeded": 3,
                "errored": 1,
                "canceled": 0,
                "expired": 0,
            }
            assert done["results_url"].endswith(f"{path}/results")
            text = await (await client.get(f"{path}/results", headers=ANTHROPIC)).text()
            results = {r["custom_id"]: r["result"] for r in map(json.loads, text.splitlines())}
            assert results["r0"]["type"] == "succeeded"
            assert results["r0"]["message"]["content"] == [{"type": "text", "text": "billing"}]
            assert results["r0"]["message"]["usage"]["service_tier"] == "batch"
            error = results["bad"]["error"]
            assert results["bad"]["type"] == "errored" and error["type"] == "error"
            assert error["error"]["type"] == "invalid_request_error"

    run(go)


def test_anthropic_cancel_and_limits() -> None:
    async def go() -> None:
        clock = FakeClock()
        timing = TIMING.model_copy(update={"anthropic_max_requests": 3, "max_queued_batches": 1})
        async with sim(SimConfig(batches=timing), clock) as client:
            url = "/v1/messages/batches"
            four = [anthropic_request(f"r{i}", "x") for i in range(4)]
            resp = await client.post(url, json={"requests": four}, headers=ANTHROPIC)
            assert resp.status == 400 and "limit of 3" in (await resp.json())["error"]["message"]
            bad_id = [anthropic_request("no spaces allowed", "x")]
            resp = await client.post(url, json={"requests": bad_id}, headers=ANTHROPIC)
            assert resp.status == 400
            resp = await client.post(url, json={"requests": four[:3]}, headers=ANTHROPIC)
            batch = await resp.json()
            queued = await client.post(url, json={"requests": four[:1]}, headers=ANTHROPIC)
            assert queued.status == 429
            clock.now += 6  # 60 provider seconds: r0 answered
            cancel = await client.post(f"{url}/{batch['id']}/cancel", headers=ANTHROPIC)
            assert (await cancel.json())["processing_status"] == "canceling"
            clock.now += 2
            done = await (await client.get(f"{url}/{batch['id']}", headers=ANTHROPIC)).json()
            assert done["processing_status"] == "ended"
            counts = done["request_counts"]
            assert (counts["succeeded"], counts["canceled"]) == (1, 2)
            small = timing.model_copy(update={"anthropic_max_bytes": 100})
            await client.post("/admin/config", data=SimConfig(batches=small).model_dump_json())
            resp = await client.post(url, json={"requests": four[:1]}, headers=ANTHROPIC)
            assert resp.status == 413
            assert (await resp.json())["error"]["type"] == "request_too_large"

    run(go)


def test_stats_count_batches_custom_ids_and_rows_paid_twice() -> None:
    async def go() -> None:
        clock = FakeClock()
        timing = TIMING.model_copy(update={"complete_fraction_before_expiry": 0.5})
        async with sim(SimConfig(batches=timing), clock) as client:
            first = await create(client, [line(f"r{i}", f"text {i}") for i in range(4)])
            clock.now += 10_000
            done = await get(client, f"/v1/batches/{first['id']}")
            expired = sorted(await jsonl(client, done["error_file_id"]))
            assert expired == ["r2", "r3"]
            # Resubmit only the expired ones, as a careful caller does, to a faster provider.
            await client.post("/admin/config", data=SimConfig(batches=TIMING).model_dump_json())
            again = await create(client, [line(c, f"text {c[1:]}") for c in expired])
            clock.now += 100
            assert (await get(client, f"/v1/batches/{again['id']}"))["status"] == "completed"
            stats = await get(client, "/stats")
            batches = stats["batches"]
            assert batches["created"] == 2 and batches["requests"] == 6
            assert (batches["succeeded"], batches["expired"]) == (4, 2)
            assert batches["repeated_custom_ids"] == 2
            assert batches["custom_ids_answered_twice"] == 0 and stats["repeated_answers"] == 0
            assert stats["total"]["batched"] == 4 and stats["total"]["ok"] == 4

    run(go)


def test_fail_rate_fails_whole_batches_in_each_format() -> None:
    async def go() -> None:
        clock = FakeClock()
        timing = TIMING.model_copy(update={"fail_rate": 1.0})
        async with sim(SimConfig(batches=timing), clock) as client:
            batch = await create(client, [line("r0", "x")])
            requests = [anthropic_request("a0", "x")]
            resp = await client.post(
                "/v1/messages/batches", json={"requests": requests}, headers=ANTHROPIC
            )
            message_batch = await resp.json()
            clock.now += 20
            failed = await get(client, f"/v1/batches/{batch['id']}")
            assert failed["status"] == "failed"
            assert failed["errors"]["data"][0]["code"] == "batch_failed"
            path = f"/v1/messages/batches/{message_batch['id']}/results"
            text = await (await client.get(path, headers=ANTHROPIC)).text()
            result = json.loads(text)["result"]
            assert result["type"] == "errored" and result["error"]["error"]["type"] == "api_error"
            stats = await get(client, "/stats")
            assert stats["total"]["requests"] == 0  # nothing ran, nothing was billed

    run(go)
