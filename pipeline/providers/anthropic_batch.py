"""Anthropic's Message Batches: one POST with every request, poll, read the results JSONL.

    batches = AnthropicBatch(name="anthropic", base_url="https://api.anthropic.com/v1",
                             api_key_env="ANTHROPIC_API_KEY", timeouts=Timeouts(total_s=600))
    status = await batches.submit(session, items)     # {"requests": [{custom_id, params}]}

Each request's `params` is the body a direct call would send (`anthropic.messages_body`,
cache breakpoints included) and each succeeded result's message is parsed like a direct
answer (`anthropic.parse_answer`), so cache reads and writes land in `Usage` the same way.
Models may mix; at most 100,000 requests and 256 MB a batch, custom_ids of 1-64 letters,
digits, `_` or `-`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import aiohttp

from pipeline.errors import BadRequest, ProviderUnavailable
from pipeline.providers.anthropic import auth_headers, messages_body, parse_answer
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
from schemas.job import Timeouts

log = logging.getLogger(__name__)
ANTHROPIC_LIMITS = BatchLimits(
    max_requests=100_000, max_bytes=256_000_000, one_model_per_batch=False
)
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ENVELOPE = len('{"requests":[]}')
_STATES: dict[str, BatchState] = {
    "in_progress": "in_progress",
    "canceling": "cancelling",
    "ended": "ended",
}
# Anthropic names an error by type; the status it stands for picks our error class.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def _request(item: BatchItem) -> dict[str, Any]:
    return {"custom_id": item.custom_id, "params": messages_body(item.request)}


def _unix(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


class AnthropicBatch:
    """The `/messages/batches` endpoints under one Anthropic base URL."""

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key_env: str | None,
        timeouts: Timeouts,
        limits: BatchLimits = ANTHROPIC_LIMITS,
    ) -> None:
        self.name = name
        self.url = base_url.rstrip("/") + "/messages/batches"
        self.api_key_env = api_key_env
        self.timeouts = timeouts
        self.limits = limits

    def __repr__(self) -> str:  # never show a key, only where it comes from
        return f"AnthropicBatch(name={self.name!r}, url={self.url!r}, key from ${self.api_key_env})"

    def split(self, items: Sequence[BatchItem]) -> list[list[BatchItem]]:
        # A request costs its JSON plus the comma that joins it to the next one.
        def size(item: BatchItem) -> int:
            return len(json.dumps(_request(item), ensure_ascii=False).encode()) + 1

        return split_items(items, self.limits, size, overhead=_ENVELOPE, where=self.name)

    async def _send(
        self, session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
    ) -> dict[str, Any]:
        headers = auth_headers(resolve_key(self.api_key_env, self.name))
        where = f"{self.name} {method} {url.removeprefix(self.url) or '/messages/batches'}"
        body, _ = await request_json(
            session, method, url, headers=headers, timeouts=self.timeouts, where=where, **kwargs
        )
        return body

    async def submit(
        self,
        session: aiohttp.ClientSession,
        items: Sequence[BatchItem],
        *,
        metadata: Mapping[str, str] | None = None,  # Anthropic batches carry none
    ) -> BatchStatus:
        check_items(items, self.name)
        for item in items:
            if not _CUSTOM_ID.match(item.custom_id):
                raise BadRequest(
                    f"{self.name}: custom_id {item.custom_id!r} must be 1-64 letters, digits, "
                    "'_' or '-'",
                    custom_id=item.custom_id,
                )
        payload = {"requests": [_request(item) for item in items]}
        return self._status(await self._send(session, "POST", self.url, json_body=payload))

    async def retrieve(self, session: aiohttp.ClientSession, batch_id: str) -> BatchStatus:
        return self._status(await self._send(session, "GET", f"{self.url}/{batch_id}"))

    async def cancel(self, session: aiohttp.ClientSession, batch_id: str) -> BatchStatus:
        return self._status(await self._send(session, "POST", f"{self.url}/{batch_id}/cancel"))

    async def recent(self, session: aiohttp.ClientSession, since: float) -> list[BatchStatus]:
        async def page(after: str | None) -> tuple[list[BatchStatus], bool]:
            query = "?limit=100" + (f"&after_id={after}" if after else "")
            body = await self._send(session, "GET", self.url + query)
            return [self._status(b) for b in body.get("data") or []], bool(body.get("has_more"))

        return await created_since(page, since)

    async def results(
        self,
        session: aiohttp.ClientSession,
        batch_id: str,
        *,
        expected: Collection[str] | None = None,
    ) -> list[BatchOutcome]:
        body = await self._send(session, "GET", f"{self.url}/{batch_id}")
        status = self._status(body)
        where = f"{self.name} batch {batch_id}"
        results_url = body.get("results_url")
        if not status.ended or not isinstance(results_url, str):
            raise ProviderUnavailable(f"{where} has not ended: {status.provider_status}")
        headers = auth_headers(resolve_key(self.api_key_env, self.name))
        data, _ = await request_bytes(
            session, "GET", results_url, headers=headers, timeouts=self.timeouts, where=where
        )
        outcomes = []
        for text in data.decode("utf-8", "replace").splitlines():
            outcome = _outcome(text, where) if text.strip() else None
            if outcome is not None:
                outcomes.append(outcome)
        return match_outcomes(outcomes, expected, where)

    def _status(self, body: Mapping[str, Any]) -> BatchStatus:
        try:
            provider_status = str(body["processing_status"])
            counts = body.get("request_counts") or {}
            kinds = ("succeeded", "errored", "expired", "canceled", "processing")
            n = {kind: int(counts.get(kind, 0)) for kind in kinds}
            return BatchStatus(
                id=str(body["id"]),
                state=_STATES.get(provider_status, "in_progress"),
                provider_status=provider_status,
                counts=BatchCounts(total=sum(n.values()), **n),
                created_at=_unix(body.get("created_at")),
                expires_at=_unix(body.get("expires_at")),
                ended_at=_unix(body.get("ended_at")),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ProviderUnavailable(f"{self.name}: batch answer is malformed") from None


def _outcome(text: str, where: str) -> BatchOutcome | None:
    """One results line as an outcome (None, logged, when unreadable)."""
    try:
        line = json.loads(text)
        custom_id, result = line["custom_id"], line["result"]
        kind = result["type"]
    except (ValueError, KeyError, TypeError):
        log.warning("%s: skipped an unreadable result line: %.200s", where, text)
        return None
    here = f"{where} {custom_id}"
    if kind == "succeeded":
        try:
            message = result["message"]
            answer = parse_answer(message, str(message.get("model", "")), here)
        except ProviderUnavailable as exc:
            return BatchOutcome(custom_id, "errored", error=exc)
        except (KeyError, TypeError, AttributeError):
            unreadable = ProviderUnavailable(f"{here}: succeeded without a message")
            return BatchOutcome(custom_id, "errored", error=unreadable)
        return BatchOutcome(custom_id, "succeeded", response=answer)
    if kind in ("expired", "canceled"):
        reason = f"{here}: the batch {'expired' if kind == 'expired' else 'was canceled'} first"
        return BatchOutcome(custom_id, kind, error=ProviderUnavailable(reason))
    detail = (result.get("error") or {}).get("error") or {}
    status = _ERROR_STATUS.get(str(detail.get("type")), 500)
    error = status_error(status, json.dumps(result.get("error")), {}, here)
    return BatchOutcome(custom_id, "errored", error=error)
