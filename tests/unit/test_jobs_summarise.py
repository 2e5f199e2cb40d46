from __future__ import annotations

import pytest

from jobs.base import JobKind, Parsed, get_job_kind
from jobs.summarise import SummariseJob
from schemas.job import ClassifyTask, SummariseTask


def make(max_words: int = 60, **kw: object) -> SummariseJob:
    job = get_job_kind(SummariseTask(kind="summarise", max_words=max_words, **kw))  # type: ignore[arg-type]
    assert isinstance(job, SummariseJob)
    return job


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def test_registry_gives_a_summarise_job() -> None:
    job = make()
    assert isinstance(job, JobKind)
    assert job.kind == "summarise"


def test_system_message_states_the_word_limit_and_instructions() -> None:
    job = make(60, instructions="Say what was decided.")
    system, user = job.build_messages("Long meeting notes ...")
    assert (system.role, user.role) == ("system", "user")
    assert "in at most 60 words" in system.content
    assert "Say what was decided." in system.content
    assert user.content == "Long meeting notes ..."


def test_parse_strips_and_accepts() -> None:
    assert make().parse("  The outage lasted 40 minutes.\n") == Parsed(
        ok=True, output="The outage lasted 40 minutes.", reason=None
    )


def test_parse_drops_a_summary_label() -> None:
    assert make().parse("Summary: Sales grew.").output == "Sales grew."
    assert make().parse("**Summary:** Sales grew.").output == "Sales grew."


@pytest.mark.parametrize("raw", ["", "   ", "\n\t", "Summary:"])
def test_parse_rejects_an_empty_summary(raw: str) -> None:
    parsed = make().parse(raw)
    assert not parsed.ok
    assert parsed.output is None
    assert parsed.reason == "empty summary"


def test_word_limit_allows_a_fifth_over_then_rejects() -> None:
    job = make(60)
    assert job.parse(words(72)).ok
    parsed = job.parse(words(73))
    assert not parsed.ok
    assert parsed.reason == "summary has 73 words, limit is 60"


def test_token_numbers() -> None:
    assert make(60).max_output_tokens() == 60 * 2 + 16
    assert make(60, max_output_tokens=50).max_output_tokens() == 50
    assert make(60).estimate_output_tokens() == 80  # about 1.33 tokens per word


def test_needs_a_summarise_task() -> None:
    with pytest.raises(TypeError):
        SummariseJob(ClassifyTask(kind="classify", labels=["a", "b"]))  # type: ignore[arg-type]
