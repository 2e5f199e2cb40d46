"""What the wire-format adapters share: sending JSON and mapping failures to the error
tree, in one place (the only place aiohttp exceptions are caught).

    body, rate = await post_json(session, url, payload, headers, timeouts, "openai/gpt-x")
    body, _ = await request_json(session, "GET", url, headers=h, timeouts=t, where=w)
    data = await request_bytes(session, "GET", url, headers=h, timeouts=t, where=w)
"""

from __future__ import annotations

import json
import os
from typing import Any

import aiohttp

from pipeline.errors import (
    AuthFailed,
    BadRequest,
    CallTimeout,
    ConfigError,
    ConnectionFailed,
    ProviderUnavailable,
    QuotaExhausted,
    RateLimited,
    TierlineError,
)
from schemas.job import Timeouts

RATE_HEADER_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-", "retry-after")


def resolve_key(api_key_env: str | None, provider: str) -> str | None:
    """Read a key at the moment of the call; only the variable's name ever travels."""
    if api_key_env is None:
        return None
    value = os.environ.get(api_key_env)
    if not value:
        raise ConfigError(f"provider {provider!r}: environment variable {api_key_env} is not set")
    return value


def parse_retry_after(headers: Any) -> float | None:
    millis = headers.get("retry-after-ms")  # the more precise form, where sent
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after") or headers.get("Retry-After")
    if raw is None:
        raw = headers.get("x-ratelimit-reset-requests") or headers.get("x-ratelimit-reset-tokens")
        return _parse_duration(raw) if raw else None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def _parse_duration(text: str) -> float | None:
    """OpenAI style reset values: '1s', '6m0s', '250ms'."""
    total, num = 0.0, ""
    i = 0
    try:
        while i < len(text):
            ch = text[i]
            if ch.isdigit() or ch == ".":
                num += ch
            elif text.startswith("ms", i):
                total += float(num) / 1000
                num = ""
                i += 1
            elif ch in "hms":
                total += float(num) * {"h": 3600, "m": 60, "s": 1}[ch]
                num = ""
            i += 1
        if num:
            total += float(num)
    except ValueError:
        return None
    return total


def status_error(status: int, body: str, headers: Any, where: str) -> TierlineError:
    snippet = body[:300].replace("\n", " ")
    msg = f"{where}: HTTP {status}: {snippet}"
    if status == 402 or (status == 429 and "insufficient_quota" in body):
        return QuotaExhausted(msg, status=status)
    if status == 429:
        rate = _rate_headers(headers)
        return RateLimited(
            msg, status=status, retry_after_s=parse_retry_after(headers), headers=rate
        )
    if status in (408, 409) or status >= 500:
        return ProviderUnavailable(msg, status=status)
    if status in (401, 403):
        return AuthFailed(msg, status=status)
    return BadRequest(msg, status=status)


def _rate_headers(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith(RATE_HEADER_PREFIXES)}


async def request_bytes(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    timeouts: Timeouts,
    where: str,
    json_body: object = None,
    data: aiohttp.FormData | bytes | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Send one request; (body, rate-limit headers) of a 200, else a TierlineError."""
    timeout = aiohttp.ClientTimeout(total=timeouts.total_s, sock_connect=timeouts.connect_s)
    try:
        async with session.request(
            method, url, json=json_body, data=data, headers=headers, timeout=timeout
        ) as resp:
            raw = await resp.read()
            if resp.status != 200:
                text = raw.decode("utf-8", "replace")
                raise status_error(resp.status, text, resp.headers, where)
            return raw, _rate_headers(resp.headers)
    except TierlineError:
        raise
    except (TimeoutError, aiohttp.ServerTimeoutError):
        raise CallTimeout(f"{where}: no answer within {timeouts.total_s:g}s") from None
    except aiohttp.ClientConnectorError as exc:
        raise ConnectionFailed(f"{where}: cannot connect: {exc.os_error or exc}") from None
    except (
        aiohttp.ServerDisconnectedError,
        aiohttp.ClientOSError,
        aiohttp.ClientPayloadError,
    ) as exc:
        raise ConnectionFailed(f"{where}: connection dropped: {type(exc).__name__}") from None
    except aiohttp.ClientError as exc:
        raise ConnectionFailed(f"{where}: {type(exc).__name__}: {exc}") from None


async def request_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    timeouts: Timeouts,
    where: str,
    json_body: object = None,
    data: aiohttp.FormData | bytes | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Like `request_bytes`, for an answer that must be a JSON object."""
    raw, rate = await request_bytes(
        session,
        method,
        url,
        headers=headers,
        timeouts=timeouts,
        where=where,
        json_body=json_body,
        data=data,
    )
    try:
        body = json.loads(raw)
    except ValueError:
        text = raw[:200].decode("utf-8", "replace")
        raise ProviderUnavailable(f"{where}: answer is not JSON: {text}") from None
    if not isinstance(body, dict):
        raise ProviderUnavailable(f"{where}: answer is not a JSON object")
    return body, rate


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    payload: dict[str, Any],
    headers: dict[str, str],
    timeouts: Timeouts,
    where: str,
) -> tuple[dict[str, Any], dict[str, str]]:
    """POST and return (json body, rate-limit headers); raise a TierlineError otherwise."""
    return await request_json(
        session, "POST", url, headers=headers, timeouts=timeouts, where=where, json_body=payload
    )
