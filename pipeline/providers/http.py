"""What the wire-format adapters share: sending JSON and mapping failures to the error
tree, in one place (the only place aiohttp exceptions are caught)."""

from __future__ import annotations

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
    if status == 429:
        rate = {
            k.lower(): v for k, v in headers.items() if k.lower().startswith(RATE_HEADER_PREFIXES)
        }
        return RateLimited(
            msg, status=status, retry_after_s=parse_retry_after(headers), headers=rate
        )
    if status in (408, 409) or status >= 500:
        return ProviderUnavailable(msg, status=status)
    if status in (401, 403):
        return AuthFailed(msg, status=status)
    return BadRequest(msg, status=status)


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    payload: dict[str, Any],
    headers: dict[str, str],
    timeouts: Timeouts,
    where: str,
) -> tuple[dict[str, Any], dict[str, str]]:
    """POST and return (json body, rate-limit headers); raise a TierlineError otherwise."""
    timeout = aiohttp.ClientTimeout(total=timeouts.total_s, sock_connect=timeouts.connect_s)
    try:
        async with session.post(url, json=payload, headers=headers, timeout=timeout) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise status_error(resp.status, text, resp.headers, where)
            rate = {
                k.lower(): v
                for k, v in resp.headers.items()
                if k.lower().startswith(RATE_HEADER_PREFIXES)
            }
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                raise ProviderUnavailable(f"{where}: answer is not JSON: {text[:200]}") from None
            if not isinstance(body, dict):
                raise ProviderUnavailable(f"{where}: answer is not a JSON object")
            return body, rate
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
