"""Cascade, vote and sensitive-row decisions of the executor, with scripted providers."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

from pipeline.calls.execute import RowExecutor
from pipeline.calls.retry import RetryPolicy
from pipeline.errors import ProviderUnavailable
from pipeline.limits.limiter import LocalLimiter
from pipeline.providers.base import ChatRequest, ChatResponse
from pipeline.routing.cascade import majority, normalise
from schemas.job import CascadeSpec, Deployment, VoteSpec
from tests.unit.test_execute import KIND, Scripted

D = Deployment.parse
TIERS = {
    "cheap": [D("c/small")],
    "mid": [D("m/medium")],
    "flagship": [D("f/large")],
}


def run(providers, *, cascade=None, vote=None, allowed=None, tier="cheap"):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        async def no_sleep(_: float) -> None:
            return None

        ex = RowExecutor(
            KIND,
            providers,
            TIERS,
            session=None,  # type: ignore[arg-type]
            limiter=LocalLimiter({}),
            policy=RetryPolicy(max_attempts=2),
            cascade=cascade,
            vote=vote,
            sleep=no_sleep,
            rng=random.Random(0),
        )
        return await ex.run("r1", "I was charged twice", tier, 10, allowed)

    return asyncio.run(go())


def test_normalise_and_majority() -> None:
    assert normalise("  Billing. ") == normalise("billing") == "billing"
    assert majority(["a", "B", "a"]) == ("a", False)
    assert majority(["a", "b"]) == ("a", True)


def test_invalid_answer_escalates_and_every_attempt_is_costed() -> None:
    p = {
        "c": Scripted("c", ["pineapple"]),
        "m": Scripted("m", ["billing"]),
        "f": Scripted("f", ["billing"]),
    }
    out = run(p, cascade=CascadeSpec())
    assert out.ok and out.tier == "mid" and out.routed_tier == "cheap"
    assert [(c.tier, c.call_status) for c in out.calls] == [
        ("cheap", "invalid_output"),
        ("mid", "ok"),
    ]
    assert out.accepted_attempt == 2 and out.accepted_reason == "valid"
    assert not p["f"].calls


def test_agreement_accepts_cheap_and_disagreement_escalates() -> None:
    agree = CascadeSpec(agree=[D("c/small"), D("m/medium")])
    same = {
        "c": Scripted("c", ["billing"]),
        "m": Scripted("m", ["Billing."]),
        "f": Scripted("f", []),
    }
    out = run(same, cascade=agree)
    assert out.ok and out.tier == "cheap" and out.accepted_reason == "agree"
    assert not same["f"].calls and len(out.calls) == 2

    differ = {
        "c": Scripted("c", ["billing"]),
        "m": Scripted("m", ["technical"]),
        "f": Scripted("f", ["technical"]),
    }
    out = run(differ, cascade=agree)
    assert out.ok and out.tier == "flagship" and out.output == "technical"
    statuses = [(c.tier, c.call_status) for c in out.calls]
    assert statuses == [("cheap", "disagreed"), ("cheap", "disagreed"), ("flagship", "ok")]


def test_vote_majority_wins_and_a_tie_escalates() -> None:
    vote = VoteSpec(deployments=[D("c/a"), D("c/b"), D("m/c")], tier="cheap")
    p = {
        "c": Scripted("c", ["billing", "billing"]),
        "m": Scripted("m", ["other"]),
        "f": Scripted("f", []),
    }
    out = run(p, vote=vote)
    assert out.ok and out.output == "billing" and out.accepted_reason == "vote"
    tie_vote = VoteSpec(deployments=[D("c/a"), D("m/b")], tier="cheap")
    p = {
        "c": Scripted("c", ["billing"]),
        "m": Scripted("m", ["other", "other"]),
        "f": Scripted("f", ["other"]),
    }
    out = run(p, vote=tie_vote)
    assert out.ok and out.tier == "mid" and out.output == "other"


def test_sensitive_rows_never_reach_other_providers_on_fallback_or_escalation() -> None:
    # The cheap provider fails; escalation would go to m, which is not allowed.
    p = {
        "c": Scripted("c", [ProviderUnavailable("503")] * 4),
        "m": Scripted("m", ["billing"]),
        "f": Scripted("f", ["billing"]),
    }
    out = run(p, cascade=CascadeSpec(), allowed=frozenset({"c", "f"}))
    assert out.ok and out.provider == "f"
    assert not p["m"].calls
    none = run(
        {"c": Scripted("c", []), "m": Scripted("m", []), "f": Scripted("f", [])},
        allowed=frozenset({"elsewhere"}),
    )
    assert not none.ok and none.error_type == "no_allowed_provider" and none.attempts == 0


def test_agreement_partner_not_allowed_escalates_instead_of_leaking() -> None:
    agree = CascadeSpec(agree=[D("c/small"), D("m/medium")])
    p = {
        "c": Scripted("c", ["billing"]),
        "m": Scripted("m", ["billing"]),
        "f": Scripted("f", ["billing"]),
    }
    out = run(p, cascade=agree, allowed=frozenset({"c", "f"}))
    assert out.ok and out.provider == "f" and not p["m"].calls


class Unsure(Scripted):
    """Scripted answers with a fixed mean log-probability when the request asks for one."""

    def __init__(self, name: str, script: list[str], logprob: float) -> None:
        super().__init__(name, script)
        self.logprob = logprob

    async def complete(self, session: object, request: ChatRequest) -> ChatResponse:
        resp = await super().complete(session, request)
        return replace(resp, mean_logprob=self.logprob if request.logprobs else None)


def test_low_logprob_escalates_and_logprobs_are_asked_only_for_min_logprob() -> None:
    p = {
        "c": Unsure("c", ["technical"], -2.0),
        "m": Unsure("m", ["billing"], -0.05),
        "f": Unsure("f", [], -0.05),
    }
    out = run(p, cascade=CascadeSpec(min_logprob=-0.5))
    assert out.ok and out.tier == "mid" and out.output == "billing"
    assert out.accepted_reason == "valid"
    assert [(c.tier, c.call_status) for c in out.calls] == [("cheap", "escalated"), ("mid", "ok")]
    assert all(r.logprobs for r in p["c"].calls + p["m"].calls) and not p["f"].calls

    plain = {"c": Unsure("c", ["technical"], -2.0), "m": Scripted("m", []), "f": Scripted("f", [])}
    out = run(plain, cascade=CascadeSpec())
    assert out.ok and out.tier == "cheap" and not plain["c"].calls[0].logprobs
