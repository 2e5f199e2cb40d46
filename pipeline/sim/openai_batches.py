"""OpenAI's Batch API in the simulator (files: `openai_files.py`).

    POST /v1/batches   GET /v1/batches[/{id}]   POST /v1/batches/{id}/cancel

The input file holds one request a line, `{"custom_id", "method": "POST", "url":
"/v1/chat/completions", "body": {...}}`. A file over `openai_max_bytes` is refused at
creation (400, naming the limit); structural faults (bad JSON, duplicate custom_id, a
second model, more than `openai_max_requests` lines) make the batch fail after
validating, with `errors.data` as OpenAI reports them. Output and error files appear when
the batch ends, in an order of their own: match lines by custom_id.
"""

from __future__ import annotations

import json

from aiohttp import web

from pipeline.sim.batches import ENDED, BatchJob, Entry, FileRecord, Result, Run
from pipeline.sim.handlers import CompletionHandler, SimState
from pipeline.sim.openai_files import authorise, error, write_batch_files
from pipeline.sim.request import JSON
from pipeline.sim.wire import FORMATS

ENDPOINT = "/v1/chat/completions"
_WIRE = FORMATS["openai"]


def _validate(data: bytes, max_requests: int) -> tuple[list[Entry], list[JSON], str | None]:
    """(entries, validation errors, the model) of a batch input file."""
    errors: list[JSON] = []
    entries: list[Entry] = []
    seen: set[str] = set()
    model: str | None = None
    lines = [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return [], [{"code": "empty_file", "message": "The file is empty.", "line": None}], None
    if len(lines) > max_requests:
        message = f"The batch input file has {len(lines)} requests; the maximum is {max_requests}."
        return [], [{"code": "too_many_tasks", "message": message, "line": None}], None
    for number, text in enumerate(lines, start=1):
        try:
            line = json.loads(text)
        except ValueError:
            line = None
        if not isinstance(line, dict):
            message = "This line is not parseable as valid JSON."
            errors.append({"code": "invalid_json_line", "message": message, "line": number})
            continue
        custom_id, body = line.get("custom_id"), line.get("body")
        if not isinstance(custom_id, str) or not isinstance(body, dict):
            message = "Each line needs a string 'custom_id' and an object 'body'."
            errors.append({"code": "invalid_request", "message": message, "line": number})
            continue
        if line.get("url") != ENDPOINT or line.get("method") != "POST":
            message = f"The line must be a POST to {ENDPOINT}, the batch's endpoint."
            errors.append({"code": "url_mismatch", "message": message, "line": number})
            continue
        if custom_id in seen:
            message = f"The custom_id {custom_id!r} appears more than once."
            errors.append({"code": "duplicate_custom_id", "message": message, "line": number})
            continue
        seen.add(custom_id)
        line_model = body.get("model")
        if model is None and isinstance(line_model, str):
            model = line_model
        elif line_model != model:
            message = (
                f"The provided model {line_model!r} does not match the model {model!r} of the "
                "other requests in the file. A batch must use one model."
            )
            errors.append({"code": "model_mismatch", "message": message, "line": number})
            continue
        entries.append(Entry(custom_id, body, number))
    return entries, errors, model


def _refusal(state: SimState, key: str, body: JSON, record: FileRecord) -> web.Response | None:
    """The error a batch creation gets before any validation of its lines, if any."""
    settings = state.config.batches
    if body.get("endpoint") != ENDPOINT:
        return error(400, f"The simulator batches only {ENDPOINT}.", "endpoint")
    if body.get("completion_window") != "24h":
        return error(400, "completion_window must be '24h'.", "completion_window")
    if len(record.data) > settings.openai_max_bytes:
        message = (
            f"The batch input file is larger than the {settings.openai_max_bytes} maximum "
            "for this model. Please try again with a smaller batch."
        )
        return error(400, message, "input_file_id")
    queued = settings.max_queued_batches
    if queued is not None and state.batches.unfinished(key, state.clock()) >= queued:
        return error(429, f"Enqueued batch limit reached: {queued} unfinished batches.")
    return None


def _runner(handler: CompletionHandler) -> Run:
    def run(job: BatchJob, entry: Entry) -> Result:
        status, body = handler.answer_batched(_WIRE, entry.body, job.headers, job.api_key)
        return Result("succeeded" if status == 200 else "errored", status, body)

    return run


class BatchRoutes:
    """The `/v1/batches` routes, bound to one simulator's completion handler."""

    def __init__(self, handler: CompletionHandler) -> None:
        self.handler = handler
        self.run = _runner(handler)

    def _advance(self, state: SimState, job: BatchJob) -> BatchJob:
        ended_before = job.ended_at is not None
        state.batches.advance(job, state.clock(), self.run, state.stats)
        if job.ended_at is not None and not ended_before:
            write_batch_files(state, job)
        return job

    async def create(self, request: web.Request) -> web.Response:
        checked = authorise(request)
        if isinstance(checked, web.Response):
            return checked
        state, key = checked
        settings = state.config.batches
        try:
            body = await request.json()
        except ValueError:
            return error(400, "the request body is not valid JSON")
        if not isinstance(body, dict):
            return error(400, "the request body must be a JSON object")
        record = state.batches.files.get(str(body.get("input_file_id")))
        if record is None or record.purpose != "batch":
            state.stats.batches.refused += 1
            message = f"Invalid 'input_file_id': no batch file {body.get('input_file_id')!r}."
            return error(400, message, "input_file_id")
        refusal = _refusal(state, key, body, record)
        if refusal is not None:
            state.stats.batches.refused += 1
            return refusal
        entries, errors, model = _validate(record.data, settings.openai_max_requests)
        job = state.batches.create(
            "openai",
            key,
            entries if not errors else [],
            settings=settings,
            now=state.clock(),
            wall=state.wall_clock(),
            seed=state.config.seed,
            failure=errors or None,
        )
        job.input_file_id, job.endpoint, job.model = record.id, ENDPOINT, model
        metadata = body.get("metadata")
        if isinstance(metadata, dict):
            job.metadata = {str(k): str(v) for k, v in metadata.items()}
        state.stats.batch_submitted([e.custom_id for e in job.entries])
        return web.json_response(batch_json(self._advance(state, job)))

    async def retrieve(self, request: web.Request) -> web.Response:
        found = self._find(request)
        if isinstance(found, web.Response):
            return found
        state, job = found
        return web.json_response(batch_json(self._advance(state, job)))

    async def cancel(self, request: web.Request) -> web.Response:
        found = self._find(request)
        if isinstance(found, web.Response):
            return found
        state, job = found
        self._advance(state, job)
        if job.phase in ENDED:
            return error(400, f"Cannot cancel a batch with status '{job.phase}'.")
        if job.cancel_at is None:
            job.cancel_at = job.elapsed(state.clock())
            state.stats.batches.cancelled += 1
        return web.json_response(batch_json(self._advance(state, job)))

    async def list(self, request: web.Request) -> web.Response:
        checked = authorise(request)
        if isinstance(checked, web.Response):
            return checked
        state, _ = checked
        jobs = [j for j in reversed(state.batches.jobs.values()) if j.wire == "openai"]
        after = request.query.get("after")
        if after is not None:
            ids = [j.id for j in jobs]
            jobs = jobs[ids.index(after) + 1 :] if after in ids else []
        try:
            limit = max(1, min(100, int(request.query.get("limit", "20"))))
        except ValueError:
            return error(400, "limit must be an integer", "limit")
        page = [batch_json(self._advance(state, j)) for j in jobs[:limit]]
        return web.json_response(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(jobs) > limit,
            }
        )

    def _find(self, request: web.Request) -> tuple[SimState, BatchJob] | web.Response:
        checked = authorise(request)
        if isinstance(checked, web.Response):
            return checked
        state, _ = checked
        batch_id = request.match_info["batch_id"]
        job = state.batches.jobs.get(batch_id)
        if job is None or job.wire != "openai":
            return error(404, f"No batch found with id '{batch_id}'.", "batch_id")
        return state, job


def _usage(job: BatchJob) -> JSON | None:
    """Tokens of the answered requests, in the shape of `Batch.usage`."""
    tokens = [0, 0, 0]
    for result in job.results:
        usage = result.body.get("usage") if result and result.body else None
        if isinstance(usage, dict):
            details = usage.get("prompt_tokens_details")
            cached = details.get("cached_tokens", 0) if isinstance(details, dict) else 0
            for i, value in enumerate(
                (usage.get("prompt_tokens"), cached, usage.get("completion_tokens"))
            ):
                tokens[i] += value if isinstance(value, int) else 0
    if not any(tokens):
        return None
    return {
        "input_tokens": tokens[0],
        "input_tokens_details": {"cached_tokens": tokens[1]},
        "output_tokens": tokens[2],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": tokens[0] + tokens[2],
    }


def batch_json(job: BatchJob) -> JSON:
    """The `Batch` object as OpenAI returns it."""
    tl, phase, ended = job.timeline, job.phase, job.ended_at
    started = phase not in ("validating", "failed") and (
        job.cancel_at is None or job.cancel_at >= tl.validate_s
    )
    succeeded = sum(1 for r in job.results if r is not None and r.kind == "succeeded")
    failed = sum(1 for r in job.results if r is not None and r.kind != "succeeded")
    errors = {"object": "list", "data": job.failure} if job.failure is not None else None
    return {
        "id": job.id,
        "object": "batch",
        "endpoint": job.endpoint,
        "model": job.model,
        "errors": errors,
        "input_file_id": job.input_file_id,
        "completion_window": "24h",
        "status": phase,
        "output_file_id": job.output_file_id,
        "error_file_id": job.error_file_id,
        "created_at": job.at(0.0),
        "in_progress_at": job.at(tl.validate_s) if started else None,
        "expires_at": job.at(tl.expire_after_s),
        "finalizing_at": job.at(tl.work_end) if phase in ("finalizing", "completed") else None,
        "completed_at": job.at(ended) if phase == "completed" and ended is not None else None,
        "failed_at": job.at(ended) if phase == "failed" and ended is not None else None,
        "expired_at": job.at(ended) if phase == "expired" and ended is not None else None,
        "cancelling_at": job.at(job.cancel_at) if job.cancel_at is not None else None,
        "cancelled_at": job.at(ended) if phase == "cancelled" and ended is not None else None,
        "request_counts": {"total": len(job.entries), "completed": succeeded, "failed": failed},
        "usage": _usage(job),
        "metadata": job.metadata,
    }


def add_routes(app: web.Application, handler: CompletionHandler) -> None:
    routes = BatchRoutes(handler)
    app.router.add_post("/v1/batches", routes.create)
    app.router.add_get("/v1/batches", routes.list)
    app.router.add_get("/v1/batches/{batch_id}", routes.retrieve)
    app.router.add_post("/v1/batches/{batch_id}/cancel", routes.cancel)
