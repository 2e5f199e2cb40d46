"""The simulator's Azure OpenAI: the official SDK's `AzureOpenAI` client parses it, and it
refuses what Azure refuses (no api-key header, no api-version, no such deployment)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion

from pipeline.sim import KeyLimits, SimConfig, run_in_thread

KEY = "azure-key-0123456789"
CONFIG = SimConfig(
    require_api_key=True,
    api_keys=[KEY],
    azure_deployments={"mini-prod": "gpt-4o-mini"},
    default_limits=KeyLimits(rpm=3, tpm=100_000),
)
SYSTEM = "Classify the ticket.\nAllowed labels: billing | technical | account | other"
ASK: Any = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "I was billed twice"},
]


@pytest.fixture
def root() -> Iterator[str]:
    url, stop = run_in_thread(CONFIG)
    try:
        yield url.removesuffix("/v1")
    finally:
        stop()


@contextmanager
def client(root: str, **overrides: Any) -> Iterator[openai.AzureOpenAI]:
    kwargs = {"azure_endpoint": root, "api_version": "2024-10-21", "api_key": KEY}
    with openai.AzureOpenAI(**(kwargs | overrides), max_retries=0) as azure:
        yield azure


def test_the_sdk_reads_a_deployments_answer_and_azures_headers(root: str) -> None:
    with client(root) as azure:
        raw = azure.chat.completions.with_raw_response.create(
            model="mini-prod", messages=ASK, max_tokens=16
        )
    answer = raw.parse()
    strict = ChatCompletion.model_validate(answer.to_dict(mode="json"))
    assert strict.model == "gpt-4o-mini" and strict.choices[0].message.content == "billing"
    # Azure says what is left, never the limit itself.
    assert raw.headers["x-ratelimit-remaining-requests"] == "2"
    assert "x-ratelimit-remaining-tokens" in raw.headers
    assert "x-ratelimit-limit-requests" not in raw.headers
    with urllib.request.urlopen(f"{root}/stats") as r:
        stats = json.load(r)
    assert stats["models"]["gpt-4o-mini"]["ok"] == 1


def test_a_served_models_own_name_is_a_deployment_too(root: str) -> None:
    with client(root) as azure:
        answer = azure.chat.completions.create(model="gpt-4o", messages=ASK, max_tokens=16)
    assert answer.model == "gpt-4o"


def test_a_429_says_when_in_seconds_and_milliseconds(root: str) -> None:
    with client(root) as azure, pytest.raises(openai.RateLimitError) as caught:
        for _ in range(4):
            azure.chat.completions.create(model="mini-prod", messages=ASK, max_tokens=16)
    headers = caught.value.response.headers
    assert int(headers["retry-after-ms"]) > 0 and int(headers["retry-after"]) >= 1
    assert caught.value.body == {"code": "429", "message": caught.value.body["message"]}  # type: ignore[index]


def test_unknown_deployment_and_bad_api_version_are_azures_errors(root: str) -> None:
    with client(root) as azure, pytest.raises(openai.NotFoundError) as missing:
        azure.chat.completions.create(model="no-such", messages=ASK)
    assert missing.value.code == "DeploymentNotFound"
    with client(root, api_version="latest") as azure, pytest.raises(openai.BadRequestError) as bad:
        azure.chat.completions.create(model="mini-prod", messages=ASK)
    assert bad.value.code == "BadRequest"
    with client(root, api_key="wrong") as azure, pytest.raises(openai.AuthenticationError):
        azure.chat.completions.create(model="mini-prod", messages=ASK)


def _post(url: str, headers: dict[str, str]) -> int:
    body = json.dumps({"messages": ASK, "max_tokens": 8}).encode()
    request = urllib.request.Request(url, body, {"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request) as r:
            return int(r.status)
    except urllib.error.HTTPError as err:
        with err:
            return err.code


def test_the_key_must_come_as_api_key_and_the_version_as_a_query(root: str) -> None:
    url = f"{root}/openai/deployments/mini-prod/chat/completions"
    assert _post(url + "?api-version=2024-10-21", {"api-key": KEY}) == 200
    # OpenAI's header carries no Azure key; a missing api-version finds no resource.
    assert _post(url + "?api-version=2024-10-21", {"Authorization": f"Bearer {KEY}"}) == 401
    assert _post(url, {"api-key": KEY}) == 404
