from __future__ import annotations

import pytest

from jobs.base import JobKind, Parsed, get_job_kind
from jobs.classify import ClassifyJob
from schemas.job import ClassifyTask, SummariseTask

LABELS = ["billing", "technical", "account", "other"]


@pytest.fixture
def job() -> ClassifyJob:
    instructions = "Classify the support ticket by its main topic."
    task = ClassifyTask(kind="classify", labels=LABELS, instructions=instructions)
    kind = get_job_kind(task)
    assert isinstance(kind, ClassifyJob)
    return kind


def test_registry_gives_a_classify_job(job: ClassifyJob) -> None:
    assert isinstance(job, JobKind)
    assert job.kind == "classify"


def test_system_message_has_instructions_labels_line_and_answer_rule(job: ClassifyJob) -> None:
    system, user = job.build_messages("Refund please\n\nI was charged twice.")
    assert (system.role, user.role) == ("system", "user")
    lines = system.content.splitlines()
    assert lines[0] == "Classify the support ticket by its main topic."
    assert "Allowed labels: billing | technical | account | other" in lines
    rule = [line for line in lines if "exactly one label" in line]
    assert rule and "nothing else" in rule[0]
    assert user.content == "Refund please\n\nI was charged twice."


def test_default_instructions_when_none_given() -> None:
    job = ClassifyJob(ClassifyTask(kind="classify", labels=["a", "b"]))
    system, _ = job.build_messages("x")
    assert system.content.splitlines()[0].strip()
    assert "Allowed labels: a | b" in system.content.splitlines()


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("billing", "billing"),
        ("Billing.", "billing"),
        (" billing\n", "billing"),
        ("Label: billing", "billing"),
        ("label:Technical", "technical"),
        ("LABEL - account.", "account"),
        ('"Other"', "other"),
        ("'billing'.", "billing"),
        ("**Technical**", "technical"),
        ("`account`", "account"),
        ("The answer is: other!", "other"),
        ("\u201cbilling\u201d", "billing"),
    ],
)
def test_parse_accepts_decorated_labels(job: ClassifyJob, raw: str, label: str) -> None:
    assert job.parse(raw) == Parsed(ok=True, output=label, reason=None)


@pytest.mark.parametrize(
    "raw",
    ["foo", "billing and technical", "billing, technical", "Billing: invoice problem", "bill"],
)
def test_parse_rejects_anything_else_and_names_the_labels(job: ClassifyJob, raw: str) -> None:
    parsed = job.parse(raw)
    assert not parsed.ok
    assert parsed.output is None
    assert parsed.reason is not None
    assert parsed.reason.endswith("is not one of the labels: billing, technical, account, other")


def test_reject_reason_quotes_the_normalised_answer(job: ClassifyJob) -> None:
    assert job.parse("  Label: foo. ").reason == (
        "answer 'foo' is not one of the labels: billing, technical, account, other"
    )


def test_reject_reason_shortens_a_long_answer(job: ClassifyJob) -> None:
    reason = job.parse("This ticket is about " + "a very long story " * 30).reason
    assert reason is not None
    assert "..." in reason
    assert len(reason) < 200


@pytest.mark.parametrize("raw", ["", "   \n", '""', "..."])
def test_parse_rejects_an_empty_answer(job: ClassifyJob, raw: str) -> None:
    parsed = job.parse(raw)
    assert not parsed.ok
    assert parsed.reason == (
        "empty answer; expected one of the labels: billing, technical, account, other"
    )


def test_labels_with_spaces_and_case_come_back_canonical() -> None:
    job = ClassifyJob(ClassifyTask(kind="classify", labels=["Feature request", "Bug"]))
    assert job.parse("feature REQUEST.").output == "Feature request"
    assert job.parse("Label: bug").output == "Bug"
    assert "Allowed labels: Feature request | Bug" in job.build_messages("x")[0].content


def test_token_numbers(job: ClassifyJob) -> None:
    assert job.max_output_tokens() == 16
    # "technical" is 9 characters: about 3 tokens, plus the end of the answer.
    assert job.estimate_output_tokens() == 4
    capped = ClassifyJob(ClassifyTask(kind="classify", labels=LABELS, max_output_tokens=5))
    assert capped.max_output_tokens() == 5


def test_needs_a_classify_task() -> None:
    with pytest.raises(TypeError):
        ClassifyJob(SummariseTask(kind="summarise"))  # type: ignore[arg-type]
