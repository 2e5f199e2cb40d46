"""The official SDKs against the simulator's failures: each status raises the SDK's own
typed error, with the headers the SDKs read, and the SDKs' retry loops honour them.

The SDKs are what users' own code uses against the providers; their error classes and
retry logic are what the simulator's answers must drive, as the providers' do. Logprobs
and reasoning models are parsed here too (the conformance file covers the rest).
"""

from __future__ import annotations

import time
from typing import Any

import anthropic
import openai
import pytest

from pipeline.sim import Faults, KeyLimits, ModelBehaviour, SimConfig
from tests.unit.test_sdk_conformance import clients

ASK: Any = [{"role": "user", "content": "I was billed twice"}]
SYSTEM = "Classify the ticket.\nAllowed labels: billing | technical | account | other"
HAIKU = "claude-haiku-4-5"


def failing(status: int) -> SimConfig:
    always = ModelBehaviour(faults=Faults(error_rates={status: 1.0}, retry_after_s=3))
    return SimConfig(models={"*": always})


@pytest.mark.parametrize(
    ("status", "openai_error", "anthropic_error"),
    [
        (500, openai.InternalServerError, anthropic.InternalServerError),
        (503, openai.InternalServerError, anthropic.ServiceUnavailableError),
        (529, openai.InternalServerError, anthropic.OverloadedError),
    ],
)
def test_server_errors_are_the_sdks_typed_errors(
    status: int, openai_error: type[Exception], anthropic_error: type[Exception]
) -> None:
    with clients(failing(status)) as c:
        with pytest.raises(openai_error) as oe:
            c.oai.chat.completions.create(model="gpt-4o-mini", messages=ASK)
        assert oe.value.status_code == status  # type: ignore[attr-defined]
        with pytest.raises(anthropic_error) as ae:
            c.ant.messages.create(model=HAIKU, max_tokens=16, messages=ASK)
        assert ae.value.status_code == status  # type: ignore[attr-defined]
        if status == 529:
            assert ae.value.body["error"]["type"] == "overloaded_error"  # type: ignore[attr-defined]
        if status != 500:  # only injected overload and unavailability say when to come back
            assert ae.value.response.headers["retry-after"] == "3"  # type: ignore[attr-defined]


def test_client_errors_are_the_sdks_typed_errors() -> None:
    config = SimConfig(require_api_key=True, api_keys=["sk-good"])
    with clients(config, key="sk-good") as c:
        with pytest.raises(openai.BadRequestError):
            c.oai.chat.completions.create(model="gpt-4o-mini", messages=[])
        with pytest.raises(anthropic.BadRequestError):
            c.ant.messages.create(model=HAIKU, max_tokens=0, messages=ASK)
        with pytest.raises(openai.NotFoundError) as missing:
            c.oai.chat.completions.create(model="gpt-9", messages=ASK)
        assert missing.value.code == "model_not_found"
        with pytest.raises(anthropic.NotFoundError) as gone:
            c.ant.messages.create(model="claude-9", max_tokens=16, messages=ASK)
        assert gone.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
        with pytest.raises(openai.BadRequestError) as refused:
            c.oai.chat.completions.create(model="gpt-5", messages=ASK, max_tokens=16)
        assert refused.value.code == "unsupported_parameter"
        assert refused.value.param == "max_tokens"
    with clients(config, key="sk-bad") as c:
        with pytest.raises(openai.AuthenticationError):
            c.oai.chat.completions.create(model="gpt-4o-mini", messages=ASK)
        with pytest.raises(anthropic.AuthenticationError):
            c.ant.messages.create(model=HAIKU, max_tokens=16, messages=ASK)


def test_rate_limits_carry_retry_after_and_the_headers_each_sdk_reads() -> None:
    with clients(SimConfig(default_limits=KeyLimits(rpm=1))) as c:
        c.oai.chat.completions.create(model="gpt-4o-mini", messages=ASK)
        with pytest.raises(openai.RateLimitError) as oe:
            c.oai.chat.completions.create(model="gpt-4o-mini", messages=ASK)
        headers = oe.value.response.headers
        assert int(headers["retry-after"]) >= 1 and headers["x-ratelimit-limit-requests"] == "1"
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert headers["x-ratelimit-reset-requests"].endswith("s")
        assert oe.value.code == "rate_limit_exceeded"
        c.clock.now += 61  # the same key: a new minute for it
        c.ant.messages.create(model=HAIKU, max_tokens=16, messages=ASK)
        with pytest.raises(anthropic.RateLimitError) as ae:
            c.ant.messages.create(model=HAIKU, max_tokens=16, messages=ASK)
        headers = ae.value.response.headers
        assert int(headers["retry-after"]) >= 1
        assert headers["anthropic-ratelimit-requests-limit"] == "1"
        assert headers["anthropic-ratelimit-requests-reset"].endswith("Z")


def test_the_sdks_retry_loops_wait_as_long_as_retry_after_says() -> None:
    # Half the calls fail with 503 and Retry-After: 1; the seed makes it the same every run.
    flaky = ModelBehaviour(faults=Faults(error_rates={503: 0.5}, retry_after_s=1))
    taken = {}
    with clients(SimConfig(models={"*": flaky}, seed=15), retries=6) as c:
        for sdk in ("openai", "anthropic"):
            started = time.monotonic()
            if sdk == "openai":
                raw = c.oai.chat.completions.with_raw_response.create(
                    model="gpt-4o-mini", messages=ASK
                )
            else:
                raw = c.ant.messages.with_raw_response.create(
                    model=HAIKU, max_tokens=16, messages=ASK
                )
            waited = time.monotonic() - started
            taken[sdk] = raw.retries_taken
            assert raw.http_response.status_code == 200, sdk
            # Each retry waited the second it was told, not the SDK's own shorter backoff.
            assert waited >= taken[sdk] * 1.0, (sdk, taken, waited)
    assert all(n >= 1 for n in taken.values()), taken  # the seed makes both retry


def test_logprobs_and_reasoning_usage_parse_in_the_openai_sdk() -> None:
    with clients(SimConfig()) as c:
        answer = c.oai.chat.completions.create(model="gpt-4o-mini", messages=ASK, logprobs=True)
        logprobs = answer.choices[0].logprobs
        assert logprobs is not None and logprobs.content
        assert all(t.logprob <= 0 for t in logprobs.content)
        labelled: Any = [{"role": "system", "content": SYSTEM}, *ASK]
        thought = c.oai.chat.completions.create(
            model="gpt-5-mini", messages=labelled, max_completion_tokens=512, reasoning_effort="low"
        )
        usage = thought.usage
        assert usage is not None and usage.completion_tokens_details is not None
        assert usage.completion_tokens_details.reasoning_tokens == 64
        assert thought.choices[0].message.content == "billing"
