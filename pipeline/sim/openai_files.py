"""OpenAI's Files API in the simulator, and the output files of ended batches.

    POST /v1/files (multipart: purpose, file)   GET /v1/files/{id}   GET /v1/files/{id}/content
    write_batch_files(state, job)     # an ended batch gets output_file_id / error_file_id

Output lines are `{"id", "custom_id", "response": {"status_code", "request_id", "body"},
"error": null}`; the error file holds the answers that were not 200 and, with
`response: null`, the requests the batch never ran (`batch_expired`, `batch_cancelled`).
"""

from __future__ import annotations

import json

from aiohttp import web

from pipeline.sim.batches import BatchJob
from pipeline.sim.handlers import ANONYMOUS, STATE, SimState, key_refused
from pipeline.sim.request import JSON
from pipeline.sim.wire import FORMATS

_WIRE = FORMATS["openai"]
_UNFINISHED_CODES = {  # error-file codes of requests a batch never ran
    "expired": ("batch_expired", "The request could not be executed before the batch expired."),
    "canceled": ("batch_cancelled", "The batch was cancelled before this request executed."),
}


def error(status: int, message: str, param: str | None = None) -> web.Response:
    """An error answer in OpenAI's shape, naming the parameter at fault."""
    body = _WIRE.error(status, message)
    detail = body["error"]
    if isinstance(detail, dict):
        detail["param"] = param
    return web.json_response(body, status=status)


def authorise(request: web.Request) -> tuple[SimState, str] | web.Response:
    """(state, API key) of an authorised request, or the 401 to send."""
    state = request.app[STATE]
    raw = _WIRE.api_key(request.headers)
    if key_refused(state.config, raw):
        return error(401, "missing or unknown API key")
    return state, raw or ANONYMOUS


def _file_json(record_id: str, state: SimState) -> JSON:
    record = state.batches.files[record_id]
    return {
        "id": record.id,
        "object": "file",
        "bytes": len(record.data),
        "created_at": record.created_at,
        "filename": record.filename,
        "purpose": record.purpose,
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }


async def upload_file(request: web.Request) -> web.Response:
    checked = authorise(request)
    if isinstance(checked, web.Response):
        return checked
    state, _ = checked
    if not request.content_type.startswith("multipart/"):
        return error(400, "files must be uploaded as multipart/form-data")
    form = await request.post()
    purpose, upload = form.get("purpose"), form.get("file")
    if not isinstance(purpose, str) or not purpose:
        return error(400, "'purpose' is a required property", "purpose")
    if not isinstance(upload, web.FileField):
        return error(400, "'file' is a required property", "file")
    data = upload.file.read()
    record = state.batches.add_file(upload.filename, purpose, data, int(state.wall_clock()))
    return web.json_response(_file_json(record.id, state))


async def get_file(request: web.Request) -> web.StreamResponse:
    checked = authorise(request)
    if isinstance(checked, web.Response):
        return checked
    state, _ = checked
    file_id = request.match_info["file_id"]
    record = state.batches.files.get(file_id)
    if record is None:
        return error(404, f"No such File object: {file_id}", "id")
    if request.path.endswith("/content"):
        return web.Response(body=record.data, content_type="application/octet-stream")
    return web.json_response(_file_json(file_id, state))


def write_batch_files(state: SimState, job: BatchJob) -> None:
    """The output and error files of an ended batch (none for a failed one)."""
    if job.failure is not None:
        return
    output: list[str] = []
    errors: list[str] = []
    for i in job.output_order():
        result, entry = job.results[i], job.entries[i]
        if result is None:
            continue
        line_id = state.batches.new_id("batch_req_")
        line: JSON = {"id": line_id, "custom_id": entry.custom_id}
        if result.kind in _UNFINISHED_CODES:
            code, message = _UNFINISHED_CODES[result.kind]
            line |= {"response": None, "error": {"code": code, "message": message}}
        else:
            request_id = f"req_{line_id.removeprefix('batch_req_')}"
            response = {"status_code": result.status, "request_id": request_id}
            line |= {"response": {**response, "body": result.body}, "error": None}
        (output if result.status == 200 else errors).append(json.dumps(line))
    created = job.at(job.ended_at or 0.0)
    for lines, attr in ((output, "output_file_id"), (errors, "error_file_id")):
        if lines:
            data = ("\n".join(lines) + "\n").encode()
            name = f"batch_{job.id}_{attr.removesuffix('_file_id')}.jsonl"
            record = state.batches.add_file(name, "batch_output", data, created)
            setattr(job, attr, record.id)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/files", upload_file)
    app.router.add_get("/v1/files/{file_id}", get_file)
    app.router.add_get("/v1/files/{file_id}/content", get_file)
