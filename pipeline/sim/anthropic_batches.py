"""Anthropic's Message Batches API in the simulator.

    POST /v1/messages/batches   {"requests": [{"custom_id", "params": {messages body}}]}
    GET  /v1/messages/batches[/{id}]   POST .../{id}/cancel   GET .../{id}/results

A batch is `in_progress` while it runs (its request counts all say `processing` until it
ends, as Anthropic's do), `canceling` after a cancel, then `ended`; its `results_url`
then serves JSONL lines `{"custom_id", "result": {"type": "succeeded", "message"} |
{"type": "errored", "error"} | {"type": "canceled"} | {"type": "expired"}}` in an order
of their own. Each request's params are checked when it runs: a bad one is `errored`.
A body over `anthropic_max_bytes` gets 413 and more than `anthropic_max_requests`
requests 400, both naming the limit; the queue limit gets 429.
"""

from __future__ import annotations

import json
import re

from aiohttp import web

from pipeline.sim.batches import BatchJob, Entry, Result, Run
from pipeline.sim.handlers import ANONYMOUS, STATE, CompletionHandler, SimState, key_refused
from pipeline.sim.request import JSON
from pipeline.sim.wire import FORMATS, rfc3339

_WIRE = FORMATS["anthropic"]
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_KINDS = ("succeeded", "errored", "canceled", "expired")


def _error(status: int, message: str) -> web.Response:
    return web.json_response(_WIRE.error(status, message), status=status)


def _authorise(request: web.Request) -> tuple[SimState, str] | web.Response:
    state = request.app[STATE]
    raw = _WIRE.api_key(request.headers)
    if key_refused(state.config, raw):
        return _error(401, "invalid x-api-key")
    if not request.headers.get("anthropic-version"):
        return _error(400, "anthropic-version: header is required")
    return state, raw or ANONYMOUS


def _entries(body: object, max_requests: int) -> list[Entry] | str:
    """The batch's requests, or why the whole creation is refused."""
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        return "requests: a non-empty list of {custom_id, params} is required"
    if len(requests) > max_requests:
        return f"requests: {len(requests)} requests exceed the limit of {max_requests} per batch"
    entries: list[Entry] = []
    seen: set[str] = set()
    for i, item in enumerate(requests):
        custom_id = item.get("custom_id") if isinstance(item, dict) else None
        params = item.get("params") if isinstance(item, dict) else None
        if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
            return f"requests.{i}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$"
        if custom_id in seen:
            return f"requests.{i}.custom_id: {custom_id!r} is used more than once"
        if not isinstance(params, dict):
            return f"requests.{i}.params: an object is required"
        seen.add(custom_id)
        entries.append(Entry(custom_id, params, i + 1))
    return entries


def _runner(handler: CompletionHandler) -> Run:
    def run(job: BatchJob, entry: Entry) -> Result:
        if job.all_errored:  # an injected failure of the whole batch
            return Result("errored", 500, _WIRE.error(500, "simulated batch failure"))
        status, body = handler.answer_batched(_WIRE, entry.body, job.headers, job.api_key)
        return Result("succeeded" if status == 200 else "errored", status, body)

    return run


def batch_json(job: BatchJob, root_url: str) -> JSON:
    """The `MessageBatch` object as Anthropic returns it."""
    phase, ended = job.phase, job.ended_at is not None
    status = "ended" if ended else "canceling" if phase == "cancelling" else "in_progress"
    counts = dict.fromkeys(("processing", *_KINDS), 0)
    if ended:
        for result in job.results:
            if result is not None:
                counts[result.kind] += 1
    else:  # Anthropic moves requests out of `processing` only when the batch ends
        counts["processing"] = len(job.entries)
    stamp = job.created_at
    return {
        "id": job.id,
        "type": "message_batch",
        "processing_status": status,
        "request_counts": counts,
        "ended_at": rfc3339(stamp + job.ended_at) if job.ended_at is not None else None,
        "created_at": rfc3339(stamp),
        "expires_at": rfc3339(stamp + job.timeline.expire_after_s),
        "archived_at": None,
        "cancel_initiated_at": None if job.cancel_at is None else rfc3339(stamp + job.cancel_at),
        "results_url": f"{root_url}/v1/messages/batches/{job.id}/results" if ended else None,
    }


def _result_line(entry: Entry, result: Result) -> JSON:
    if result.kind == "succeeded":
        outcome: JSON = {"type": "succeeded", "message": result.body}
    elif result.kind == "errored":
        outcome = {"type": "errored", "error": result.body}
    else:
        outcome = {"type": result.kind}
    return {"custom_id": entry.custom_id, "result": outcome}


class MessageBatchRoutes:
    """The `/v1/messages/batches` routes of one simulator."""

    def __init__(self, handler: CompletionHandler) -> None:
        self.run = _runner(handler)

    def _advance(self, state: SimState, job: BatchJob) -> BatchJob:
        return state.batches.advance(job, state.clock(), self.run, state.stats)

    def _find(self, request: web.Request) -> tuple[SimState, BatchJob] | web.Response:
        checked = _authorise(request)
        if isinstance(checked, web.Response):
            return checked
        state, _ = checked
        batch_id = request.match_info["batch_id"]
        job = state.batches.jobs.get(batch_id)
        if job is None or job.wire != "anthropic":
            return _error(404, f"message batch {batch_id} was not found")
        return state, self._advance(state, job)

    async def create(self, request: web.Request) -> web.Response:
        checked = _authorise(request)
        if isinstance(checked, web.Response):
            return checked
        state, key = checked
        settings = state.config.batches
        raw = await request.read()
        if len(raw) > settings.anthropic_max_bytes:
            state.stats.batches.refused += 1
            message = f"request body exceeds the limit of {settings.anthropic_max_bytes} bytes"
            return _error(413, message)
        try:
            entries = _entries(json.loads(raw), settings.anthropic_max_requests)
        except ValueError:
            entries = "the request body is not valid JSON"
        queued = settings.max_queued_batches
        if isinstance(entries, str):
            state.stats.batches.refused += 1
            return _error(400, entries)
        if queued is not None and state.batches.unfinished(key, state.clock()) >= queued:
            state.stats.batches.refused += 1
            return _error(429, f"too many batches in progress: the limit is {queued}")
        version = request.headers["anthropic-version"]
        job = state.batches.create(
            "anthropic",
            key,
            entries,
            settings=settings,
            now=state.clock(),
            wall=state.wall_clock(),
            seed=state.config.seed,
            headers={"anthropic-version": version},
        )
        state.stats.batch_submitted([e.custom_id for e in entries])
        return web.json_response(batch_json(self._advance(state, job), _root(request)))

    async def retrieve(self, request: web.Request) -> web.Response:
        found = self._find(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response(batch_json(found[1], _root(request)))

    async def cancel(self, request: web.Request) -> web.Response:
        found = self._find(request)
        if isinstance(found, web.Response):
            return found
        state, job = found
        if job.ended_at is None and job.cancel_at is None:  # an ended batch stays as it is
            job.cancel_at = job.elapsed(state.clock())
            state.stats.batches.cancelled += 1
            self._advance(state, job)
        return web.json_response(batch_json(job, _root(request)))

    async def results(self, request: web.Request) -> web.Response:
        found = self._find(request)
        if isinstance(found, web.Response):
            return found
        _, job = found
        if job.ended_at is None:
            return _error(400, f"message batch {job.id} is still processing; no results yet")
        lines = []
        for i in job.output_order():
            result = job.results[i]
            if result is not None:
                lines.append(json.dumps(_result_line(job.entries[i], result)))
        body = ("\n".join(lines) + "\n").encode() if lines else b""
        return web.Response(body=body, content_type="application/x-jsonl")

    async def list(self, request: web.Request) -> web.Response:
        checked = _authorise(request)
        if isinstance(checked, web.Response):
            return checked
        state, _ = checked
        jobs = [j for j in reversed(state.batches.jobs.values()) if j.wire == "anthropic"]
        after = request.query.get("after_id")
        if after is not None:
            ids = [j.id for j in jobs]
            jobs = jobs[ids.index(after) + 1 :] if after in ids else []
        try:
            limit = max(1, min(1000, int(request.query.get("limit", "20"))))
        except ValueError:
            return _error(400, "limit: an integer is required")
        page = [batch_json(self._advance(state, j), _root(request)) for j in jobs[:limit]]
        first, last = (page[0]["id"], page[-1]["id"]) if page else (None, None)
        return web.json_response(
            {"data": page, "has_more": len(jobs) > limit, "first_id": first, "last_id": last}
        )


def _root(request: web.Request) -> str:
    """Scheme and host the client used, so results_url points back at this server."""
    return str(request.url.origin())


def add_routes(app: web.Application, handler: CompletionHandler) -> None:
    routes = MessageBatchRoutes(handler)
    app.router.add_post("/v1/messages/batches", routes.create)
    app.router.add_get("/v1/messages/batches", routes.list)
    app.router.add_get("/v1/messages/batches/{batch_id}", routes.retrieve)
    app.router.add_post("/v1/messages/batches/{batch_id}/cancel", routes.cancel)
    app.router.add_get("/v1/messages/batches/{batch_id}/results", routes.results)
