"""Extract rows in the row executor: re-ask on the same deployment with the errors quoted,
escalation after it, per-field agreement and votes, and the cost row of every call."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence

from jobs.base import get_job_kind
from pipeline.calls.execute import RowExecutor
from pipeline.calls.outcome import RowOutcome
from pipeline.calls.retry import RetryPolicy
from pipeline.limits.limiter import LocalLimiter
from pipeline.providers.base import ChatRequest, ChatResponse, Usage
from schemas.job import CascadeSpec, Deployment, ExtractTask, VoteSpec

TASK = ExtractTask.model_validate(
    {
        "kind": "extract",
        "fields": {
            "queue": {"type": "enum", "values": ["billing", "technical"]},
            "seats": {"type": "integer", "required": False},
            "summary": {"type": "string", "max_length": 60},
        },
    }
)
KIND = get_job_kind(TASK)


def answer(queue: str = "billing", seats: int | None = 3, summary: str = "Charged twice") -> str:
    return json.dumps({"queue": queue, "seats": seats, "summary": summary})


class Scripted:
    def __init__(self, name: str, script: Sequence[str]) -> None:
        self.name = name
        self.script = list(script)
        self.calls: list[ChatRequest] = []

    async def complete(self, session: object, request: ChatRequest) -> ChatResponse:
        self.calls.append(request)
        text = self.script.pop(0) if self.script else answer()
        return ChatResponse(text=text, usage=Usage(100, 20), model=request.model)


def run(
    providers: dict[str, Scripted],
    tiers: dict[str, list[str]],
    cascade: CascadeSpec | None = None,
    vote: VoteSpec | None = None,
    reasks: int = 1,
) -> RowOutcome:
    async def go() -> RowOutcome:
        ex = RowExecutor(
            KIND,
            providers,  # type: ignore[arg-type]
            {t: [Deployment.parse(d) for d in deps] for t, deps in tiers.items()},
            session=None,  # type: ignore[arg-type]
            limiter=LocalLimiter({}),
            policy=RetryPolicy(max_attempts=2),
            cascade=cascade,
            vote=vote,
            rng=random.Random(1),
            structured={"a": "native", "b": "prompt"},
            reasks=reasks,
            compare_fields=TASK.compared_fields(),
        )
        return await ex.run("r1", "Invoice charged twice for 3 seats", "cheap", 50)

    return asyncio.run(go())


def test_a_failing_answer_is_asked_again_with_the_errors_quoted() -> None:
    a = Scripted("a", ['{"queue": "sales", "summary": "x"}', answer()])
    out = run({"a": a}, {"cheap": ["a/m"]})
    assert out.ok and json.loads(out.output or "")["queue"] == "billing"
    assert [c.call_status for c in out.calls] == ["reasked", "ok"]
    again = a.calls[1].messages
    assert again[:2] == a.calls[0].messages  # the same conversation, continued
    assert again[2].role == "assistant" and "sales" in again[2].content
    assert again[3].role == "user" and "queue: Input should be 'billing' or 'technical'" in (
        again[3].content
    )
    assert a.calls[0].output_schema is not None and a.calls[0].output_schema.mode == "native"


def test_an_answer_that_never_validates_escalates_then_is_an_error_row_naming_fields() -> None:
    bad = '{"summary": "x"}'
    a, b = Scripted("a", [bad, bad]), Scripted("b", [bad, bad])
    out = run({"a": a, "b": b}, {"cheap": ["a/m"], "mid": ["b/m"]}, cascade=CascadeSpec())
    assert not out.ok and out.error_type == "invalid_output"
    assert out.message is not None and out.message.startswith("fields failed: queue")
    assert [(c.tier, c.call_status) for c in out.calls] == [
        ("cheap", "reasked"),
        ("cheap", "invalid_output"),
        ("mid", "reasked"),
        ("mid", "invalid_output"),
    ]
    assert b.calls[0].output_schema is not None and b.calls[0].output_schema.mode == "prompt"


def test_without_reasks_the_row_escalates_at_once() -> None:
    a, b = Scripted("a", ["not json"]), Scripted("b", [answer()])
    out = run({"a": a, "b": b}, {"cheap": ["a/m"], "mid": ["b/m"]}, CascadeSpec(), reasks=0)
    assert out.ok and out.tier == "mid" and len(a.calls) == 1


def test_agreement_compares_the_chosen_fields_only() -> None:
    # Summaries differ in wording: by default strings are not compared.
    a = Scripted("a", [answer(summary="Charged twice")])
    b = Scripted("b", [answer(summary="The invoice was charged two times")])
    agree = CascadeSpec(agree=["a/m", "b/m"])  # type: ignore[list-item]
    out = run({"a": a, "b": b}, {"cheap": ["a/m"], "mid": ["b/m"]}, cascade=agree)
    assert out.ok and out.accepted_reason == "agree"
    # A different number is a disagreement: the row goes past both to flagship.
    a, b = Scripted("a", [answer(seats=3)]), Scripted("b", [answer(seats=4)])
    c = Scripted("c", [answer(seats=3)])
    tiers = {"cheap": ["a/m"], "mid": ["b/m"], "flagship": ["c/m"]}
    out = run({"a": a, "b": b, "c": c}, tiers, cascade=agree)
    assert out.ok and out.tier == "flagship"
    assert [c.call_status for c in out.calls] == ["disagreed", "disagreed", "ok"]


def test_a_vote_is_per_field() -> None:
    voters = {
        "a": Scripted("a", [answer("billing", 3, "one")]),
        "b": Scripted("b", [answer("technical", 3, "two")]),
        "c": Scripted("c", [answer("billing", 5, "three")]),
    }
    vote = VoteSpec(deployments=["a/m", "b/m", "c/m"])  # type: ignore[list-item]
    out = run(voters, {"cheap": ["a/m"]}, vote=vote)  # type: ignore[arg-type]
    assert out.ok and out.accepted_reason == "vote"
    assert json.loads(out.output or "") == {"queue": "billing", "seats": 3, "summary": "one"}
