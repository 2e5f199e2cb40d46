"""Extract rows in the row executor: re-ask on the same deployment with the errors quoted,
escalation after it, per-field agreement and votes, and the cost row of every call."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence

import pytest

from jobs.base import get_job_kind
from pipeline.calls.execute import RowExecutor
from pipeline.calls.outcome import RowOutcome
from pipeline.calls.retry import RetryPolicy
from pipeline.costs import worst_case_call_usd
from pipeline.engine.journal import worth_keeping
from pipeline.engine.outputs import unit_tables
from pipeline.limits.budget import BudgetClient, Budgets, LeaseBook, LocalSource
from pipeline.limits.limiter import LocalLimiter
from pipeline.providers.base import ChatRequest, ChatResponse, Usage
from schemas.job import CascadeSpec, Deployment, ExtractTask, VoteSpec
from schemas.prices import load_prices

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
PRICES = load_prices()


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
    budget_usd: float | None = None,
) -> RowOutcome:
    async def go() -> RowOutcome:
        book = LeaseBook(budget_usd or 0.0)
        budgets = Budgets(BudgetClient(LocalSource(book, "w"))) if budget_usd else Budgets()
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
            budgets=budgets,
            prices=PRICES if budget_usd else None,  # the budget test names priced models
        )
        out = await ex.run("r1", "Invoice charged twice for 3 seats", "cheap", 50)
        await budgets.close()
        assert book.ledger.spent <= (budget_usd or float("inf"))  # the cap held
        return out

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


# --- bad answers and a refused re-ask: data, never a crash of the unit --------------------


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ('{"summary": "x"}', "fields failed: queue (queue: required field is missing"),
        (answer(seats="3"), "fields failed: seats (seats: Input should be a valid integer"),  # type: ignore[arg-type]
        ('{"queue": "billing", "summary": "x"', "answer is not valid JSON"),
        (
            json.dumps({"queue": "billing", "summary": "x", "notes": "y" * 5000}),
            "far longer than the schema allows",
        ),
    ],
    ids=["missing_required", "wrong_type", "not_json", "far_too_long"],
)
def test_each_bad_answer_is_an_error_row_naming_what_failed(bad: str, named: str) -> None:
    a = Scripted("a", [bad, bad])
    out = run({"a": a}, {"cheap": ["a/gpt-4o-mini"]})
    assert not out.ok and out.error_type == "invalid_output"
    assert out.message is not None and named in out.message
    assert [c.call_status for c in out.calls] == ["reasked", "invalid_output"]
    results, costs, errors = unit_tables(0, [out], PRICES, KIND)
    assert results.num_rows == 0 and "out_queue" in results.column_names
    assert errors.to_pylist()[0]["message"] == out.message and costs.num_rows == 2


def test_a_reask_the_budget_refuses_ends_the_row_as_the_budgets_retryable_error() -> None:
    # The budget holds the first call's worst case exactly; the re-ask asks for more (its
    # input quotes the invalid answer), so it is refused before anything goes out.
    cheap, mid = "a/gpt-4o-mini", "b/gpt-4o"
    price = PRICES.for_deployment("a", "gpt-4o-mini")
    first = worst_case_call_usd(price, 50, KIND.max_output_tokens())
    a, b = Scripted("a", ['{"summary": "x"}']), Scripted("b", [answer()])
    out = run({"a": a, "b": b}, {"cheap": [cheap], "mid": [mid]}, CascadeSpec(), budget_usd=first)

    assert not out.ok and out.error_type == "budget_exhausted"
    assert out.message is not None and "rerun with a larger budget" in out.message
    assert len(a.calls) == 1 and not b.calls  # no re-ask sent, no dearer tier asked
    # The invalid answer is one cost row, paid once, and says what it was.
    assert [(c.tier, c.call_status) for c in out.calls] == [("cheap", "invalid_output")]
    results, costs, errors = unit_tables(0, [out], PRICES, KIND)
    assert results.num_rows == 0 and costs["cost_usd"].to_pylist()[0] > 0
    assert errors.to_pylist()[0]["retryable"] is True  # the next run asks it again...
    assert not worth_keeping(out)  # ...rather than taking it back from the journal
    # Without a cascade too: a refused re-ask is never a final `invalid_output`.
    alone = run({"a": Scripted("a", ['{"summary": "x"}'])}, {"cheap": [cheap]}, budget_usd=first)
    assert alone.error_type == "budget_exhausted" and len(alone.calls) == 1

    # That next run, with more budget, finishes the row.
    again = Scripted("a", ['{"summary": "x"}', answer()])
    tiers = {"cheap": [cheap], "mid": [mid]}
    done = run({"a": again, "b": b}, tiers, CascadeSpec(), budget_usd=1.0)
    assert done.ok and [c.call_status for c in done.calls] == ["reasked", "ok"]
