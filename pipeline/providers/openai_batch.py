"""OpenAI's Batch API (also the simulator's): upload a JSONL file, create a batch, poll it,
read its output and error files.

    batches = OpenAIBatch(name="openai", base_url="https://api.openai.com/v1",
                          api_key_env="OPENAI_API_KEY", timeouts=Timeouts(total_s=600))
    status = await batches.submit(session, items, metadata={"job": "nightly"})

Each line is `{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}`
with the body a direct call would send (`openai.chat_body`); each output line's body is
parsed like a direct answer (`openai.parse_answer`). One model per file, at most 50,000
lines and 200 MB: `split` keeps to that.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import aiohttp

from pipeline.errors import BadRequest, CallTimeout, ProviderUnavailable, TierlineError
from pipeline.providers.batch import (
    BatchCounts,
    BatchItem,
    BatchLimits,
    BatchOutcome,
    BatchState,
    BatchStatus,
    check_items,
    created_since,
    match_outcomes,
    split_items,
)
from pipeline.providers.http import request_bytes, request_json, resolve_key, status_error
from pipeline.providers.openai import auth_headers, chat_body, parse_answer
from schemas.job import Timeouts

log = logging.getLogger(__name__)
ENDPOINT = "/v1/chat/completions"
OPENAI_LIMITS = BatchLimits(max_requests=50_000, max_bytes=209_715_200, one_model_per_batch=True)
_STATES: dict[str, BatchState] = {
    "validating": "submitted",
    "in_progress": "in_progress",
    "finalizing": "in_progress",
    "cancelling": "cancelling",
    "completed": "ended",
    "failed": "ended",
    "expired": "ended",
    "cancelled": "ended",
}
# Codes of a failed batch that sending it again may cure; any other code is the input's
# fault (model_mismatch, too_many_tasks, invalid_json_line, ...) and terminal.
_TRANSIENT_FAILURES = frozenset({"batch_failed", "server_error", "token_limit_exceeded"})


def _line(item: BatchItem) -> str:
    line = {"custom_id": item.custom_id, "method": "POST", "url": ENDPOINT}
    return json.dumps({**line, "body": chat_body(item.request)}, ensure_ascii=False) + "\n"


def _unix(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


class OpenAIBatch:
    """Files + batches endpoints under one OpenAI-compatible base URL."""

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key_env: str | None,
        timeouts: Timeouts,
        limits: BatchLimits = OPENAI_LIMITS,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.timeouts = timeouts
        self.limits = limits

    def __repr__(self) -> str:  # never show a key, only where it comes from
        return (
            f"OpenAIBatch(name={self.name!r}, url={self.base_url!r}, key from ${self.api_key_env})"
        )

    def split(self, items: Sequence[BatchItem]) -> list[list[BatchItem]]:
        return split_items(items, self.limits, lambda i: len(_line(i).encode()), where=self.name)

    async def _send(
        self, session: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
    ) -> dict[str, Any]:
        headers = auth_headers(resolve_key(self.api_key_env, self.name))
        where = f"{self.name} {method} {path}"
        url = self.base_url + path
        body, _ = await request_json(
            session, method, url, headers=headers, timeouts=self.timeouts, where=where, **kwargs
        )
        return body

    async def submit(
        self,
        session: aiohttp.ClientSession,
        items: Sequence[BatchItem],
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> BatchStatus:
        check_items(items, self.name)
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        data = "".join(_line(item) for item in items).encode()
        form.add_field("file", data, filename="batch.jsonl", content_type="application/jsonl")
        uploaded = await self._send(session, "POST", "/files", data=form)
        payload: dict[str, Any] = {
            "input_file_id": uploaded.get("id"),
            "endpoint": ENDPOINT,
            "completion_window": "24h",
        }
        if metadata:
            payload["metadata"] = dict(metadata)
        return self._status(await self._send(session, "POST", "/batches", json_body=payload))

    async def retrieve(self, session: aiohttp.ClientSession, batch_id: str) -> BatchStatus:
        return self._status(await self._send(session, "GET", f"/batches/{batch_id}"))

    async def cancel(self, session: aiohttp.ClientSession, batch_id: str) -> BatchStatus:
        return self._status(await self._send(session, "POST", f"/batches/{batch_id}/cancel"))

    async def recent(self, session: aiohttp.ClientSession, since: float) -> list[BatchStatus]:
        async def page(after: str | None) -> tuple[list[BatchStatus], bool]:
            query = "?limit=100" + (f"&after={after}" if after else "")
            body = await self._send(session, "GET", "/batches" + query)
            return [self._status(b) for b in body.get("data") or []], bool(body.get("has_more"))

        return await created_since(page, since)

    async def results(
        self,
        session: aiohttp.ClientSession,
        batch_id: str,
        *,
        expected: Collection[str] | None = None,
    ) -> list[BatchOutcome]:
        body = await self._send(session, "GET", f"/batches/{batch_id}")
        status = self._status(body)
        where = f"{self.name} batch {batch_id}"
        if status.provider_status == "failed":
            raise _failure(status, where)
        if not status.ended:
            raise ProviderUnavailable(f"{where} has not ended: {status.provider_status}")
        outcomes: list[BatchOutcome] = []
        for file_id in (body.get("output_file_id"), body.get("error_file_id")):
            if isinstance(file_id, str) and file_id:
                outcomes.extend(await self._file_outcomes(session, file_id, where))
        return match_outcomes(outcomes, expected, where)

    async def _file_outcomes(
        self, session: aiohttp.ClientSession, file_id: str, where: str
    ) -> list[BatchOutcome]:
        headers = auth_headers(resolve_key(self.api_key_env, self.name))
        url = f"{self.base_url}/files/{file_id}/content"
        data, _ = await request_bytes(
            session, "GET", url, headers=headers, timeouts=self.timeouts, where=where
        )
        outcomes = []
        for text in data.decode("utf-8", "replace").splitlines():
            outcome = _outcome(text, where) if text.strip() else None
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def _status(self, body: Mapping[str, Any]) -> BatchStatus:
        try:
            provider_status = str(body["status"])
            counts = body.get("request_counts") or {}
            total, done = int(counts.get("total", 0)), int(counts.get("completed", 0))
            failed = int(counts.get("failed", 0))
            errors = (body.get("errors") or {}).get("data") or []
            ended = [body.get(k) for k in ("completed_at", "failed_at", "expired_at")]
            ended.append(body.get("cancelled_at"))
            return BatchStatus(
                id=str(body["id"]),
                state=_STATES.get(provider_status, "in_progress"),
                provider_status=provider_status,
                counts=BatchCounts(total, done, failed, processing=max(0, total - done - failed)),
                created_at=_unix(body.get("created_at")),
                expires_at=_unix(body.get("expires_at")),
                ended_at=next((t for t in map(_unix, ended) if t is not None), None),
                errors=tuple(f"{e.get('code')}: {e.get('message')}" for e in errors),
                metadata=_metadata(body.get("metadata")),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ProviderUnavailable(f"{self.name}: batch answer is malformed") from None


def _metadata(value: object) -> dict[str, str] | None:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else None


def _failure(status: BatchStatus, where: str) -> TierlineError:
    """The error of a batch the provider failed whole (terminal unless the code says not)."""
    message = f"{where} failed: {'; '.join(status.errors) or 'no reason given'}"
    codes = {error.split(":", 1)[0] for error in status.errors}
    if codes and codes <= _TRANSIENT_FAILURES:
        return ProviderUnavailable(message)
    return BadRequest(message)


def _outcome(text: str, where: str) -> BatchOutcome | None:
    """One output or error file line as an outcome (None, logged, when unreadable)."""
    try:
        line = json.loads(text)
        custom_id = line["custom_id"]
    except (ValueError, KeyError, TypeError):
        log.warning("%s: skipped an unreadable result line: %.200s", where, text)
        return None
    here = f"{where} {custom_id}"
    response = line.get("response")
    if isinstance(response, dict):
        code, body = int(response.get("status_code") or 0), response.get("body")
        if code == 200 and isinstance(body, dict):
            try:
                answer = parse_answer(body, str(body.get("model", "")), here)
            except ProviderUnavailable as exc:
                return BatchOutcome(custom_id, "errored", error=exc)
            return BatchOutcome(custom_id, "succeeded", response=answer)
        return BatchOutcome(
            custom_id, "errored", error=status_error(code, json.dumps(body), {}, here)
        )
    error = line.get("error") or {}
    reason = f"{here}: {error.get('code')}: {error.get('message')}"
    if error.get("code") == "batch_expired":
        return BatchOutcome(custom_id, "expired", error=ProviderUnavailable(reason))
    if error.get("code") == "batch_cancelled":
        return BatchOutcome(custom_id, "canceled", error=ProviderUnavailable(reason))
    if error.get("code") == "request_timeout":
        return BatchOutcome(custom_id, "errored", error=CallTimeout(reason))
    return BatchOutcome(custom_id, "errored", error=ProviderUnavailable(reason))
