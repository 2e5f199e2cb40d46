"""Prompt variants per model family: resolution, versions, validation, and what the
executor sends and records (no Ray, no network)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from jobs.base import get_job_kind
from jobs.classify import DEFAULT_INSTRUCTIONS, LABELS_PREFIX
from pipeline.calls.execute import RowExecutor
from pipeline.calls.retry import RetryPolicy
from pipeline.calls.reuse import AnswerReuse
from pipeline.engine.plan import job_identity
from pipeline.errors import ProviderUnavailable
from pipeline.limits.limiter import LocalLimiter
from pipeline.providers.base import ChatRequest, ChatResponse, Usage
from schemas.job import (
    ClassifyTask,
    Deployment,
    GenerateTask,
    SpecError,
    SummariseTask,
    parse_spec,
    task_prompt,
)
from schemas.prompts import normalise_prompt, prompt_version, render, resolve_variant

LABELS = ["billing", "technical", "other"]
VARIANTS = {
    "default": "Classify the ticket into one of {labels}.",
    "claude": "You triage tickets. Pick one of {labels}.",
    "claude-3-5-haiku": "Haiku: one of {labels}, nothing else.",
    "gpt-4o": "GPT: one of {labels}.",
}


def classify(**kw: Any) -> ClassifyTask:
    return ClassifyTask(kind="classify", labels=LABELS, **kw)


def spec_doc(task: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "p",
        "task": task,
        "input": {"uri": "in/", "id_column": "id", "text_columns": ["text"]},
        "output": {"uri": "out/"},
        "providers": {"sim": {"kind": "sim"}},
        "tiers": {"cheap": ["sim/gpt-4o-mini"], "mid": ["sim/claude-3-5-sonnet"]},
    }


# --- resolution -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("claude-3-5-haiku", "claude-3-5-haiku"),  # exact name first
        ("claude-3-5-sonnet", "claude"),  # then the longest family prefix
        ("gpt-4o-mini", "gpt-4o"),
        ("gpt-4o", "gpt-4o"),
        ("mistral-large", "default"),  # else the default
        (None, "default"),
    ],
)
def test_a_model_gets_its_exact_variant_then_longest_prefix_then_default(
    model: str | None, key: str
) -> None:
    assert resolve_variant(VARIANTS, model) == key


def test_longest_prefix_wins_over_a_shorter_one() -> None:
    keys = {"default": "", "gpt": "", "gpt-4o": "", "gpt-4": ""}
    assert resolve_variant(keys, "gpt-4o-mini") == "gpt-4o"
    assert resolve_variant(keys, "gpt-4-turbo") == "gpt-4"
    assert resolve_variant(keys, "gpt-3.5") == "gpt"


def test_without_prompts_the_default_is_the_instructions_as_before() -> None:
    task = classify(instructions="Classify the support ticket.")
    assert task_prompt(task, "claude-3-5-haiku") == ("default", "Classify the support ticket.")
    kind = get_job_kind(task)
    system = kind.build_messages("x", "any-model")[0].content
    assert system.splitlines()[0] == "Classify the support ticket."
    # A spec without `instructions` still gets the built-in wording.
    assert get_job_kind(classify()).prompt("m").text == DEFAULT_INSTRUCTIONS


def test_a_variant_only_for_one_family_leaves_the_others_on_instructions() -> None:
    task = classify(instructions="Plain.", prompts={"claude": "For Claude: {labels}."})
    assert task_prompt(task, "claude-3-opus") == (
        "claude",
        "For Claude: billing, technical, other.",
    )
    assert task_prompt(task, "gpt-4o") == ("default", "Plain.")


# --- versions ---------------------------------------------------------------------------


def test_version_is_short_stable_and_ignores_only_invisible_edits() -> None:
    v = prompt_version("Pick one label.")
    assert v.startswith("p-") and len(v) == 10 and int(v[2:], 16) >= 0
    assert v == prompt_version("Pick one label.")
    assert v == prompt_version("\nPick one label.   \r\n")  # line ends, trailing blanks
    assert v != prompt_version("Pick one label!")
    assert normalise_prompt("a  \r\nb\n\n") == "a\nb"


def test_each_model_records_the_version_of_the_text_it_gets() -> None:
    kind = get_job_kind(classify(prompts=VARIANTS))
    haiku, sonnet, mini = (kind.prompt(m) for m in ("claude-3-5-haiku", "claude-3", "gpt-4o-mini"))
    assert (haiku.key, sonnet.key, mini.key) == ("claude-3-5-haiku", "claude", "gpt-4o")
    assert len({haiku.version, sonnet.version, mini.version}) == 3
    assert mini.version == prompt_version("GPT: one of billing, technical, other.")


def test_render_fills_placeholders_and_keeps_escaped_and_other_braces() -> None:
    text = render('{labels} {{labels}} {"json": 1}', {"labels": "a, b"})
    assert text == 'a, b {labels} {"json": 1}'


def test_every_kind_puts_the_variant_first_and_the_row_last() -> None:
    tasks = [
        classify(prompts={"default": "D {labels}", "m1": "M1 {labels}"}),
        SummariseTask(kind="summarise", max_words=30, prompts={"m1": "M1 in {max_words}."}),
        GenerateTask(kind="generate", prompts={"m1": "M1 system"}),
    ]
    for task in tasks:
        kind = get_job_kind(task)
        msgs = kind.build_messages("ROW TEXT", "m1-large")
        assert msgs[-1].content == "ROW TEXT" and msgs[0].role == "system"
        assert "M1" in msgs[0].content
    # The labels line stays whatever the wording (parsing and the simulator read it).
    system = get_job_kind(tasks[0]).build_messages("x", "m1")[0].content
    assert LABELS_PREFIX + "billing | technical | other" in system
    # Summarise keeps its word-limit line first and the variant's guidance after it.
    summary = get_job_kind(tasks[1]).build_messages("x", "m1")[0].content
    assert summary.splitlines()[:2] == [
        "Summarise the user's text in at most 30 words.",
        "M1 in 30.",
    ]
    # A generate variant becomes the system prompt; without one, none is sent (as before).
    assert len(get_job_kind(tasks[2]).build_messages("x", "other")) == 1


# --- validation -------------------------------------------------------------------------


def problems(task: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as exc:
        parse_spec(spec_doc(task))
    return exc.value.problems


def test_unknown_placeholder_names_the_variant_and_the_known_ones() -> None:
    (p,) = problems({"kind": "classify", "labels": LABELS, "prompts": {"claude": "{label}"}})
    assert p.startswith("task.classify.prompts:")
    assert "claude: unknown placeholder {label}" in p and "known: {labels}" in p
    assert "{{label}}" in p  # how to write a literal brace


def test_a_variant_missing_a_placeholder_of_the_default_is_refused() -> None:
    (p,) = problems(
        {
            "kind": "classify",
            "labels": LABELS,
            "prompts": {"default": "One of {labels}.", "gpt-4o": "Pick one."},
        }
    )
    assert "gpt-4o: missing placeholder {labels}" in p and "add it" in p


def test_default_given_twice_and_empty_variants_are_refused() -> None:
    (p,) = problems(
        {
            "kind": "summarise",
            "instructions": "Say what was decided.",
            "prompts": {"default": "Decisions, in {max_words} words.", "claude": "  "},
        }
    )
    assert "default: the default prompt is given twice" in p and "keep one" in p
    assert "claude: empty prompt" in p
    (p,) = problems({"kind": "generate", "prompts": {"gpt 4o": "x"}})
    assert "'gpt 4o': a key must be 'default', a model name or a family prefix" in p
    (p,) = problems({"kind": "generate", "prompts": {"m": "{labels}"}})
    assert "known: none for this task kind" in p


def test_a_spec_without_prompts_keeps_its_job_id() -> None:
    task = {"kind": "classify", "labels": LABELS, "instructions": "Go."}
    plain = parse_spec(spec_doc(task))
    empty = parse_spec(spec_doc({**task, "prompts": {}}))
    varied = parse_spec(spec_doc({**task, "instructions": "", "prompts": {"default": "Go."}}))
    assert job_identity(plain, []) == job_identity(empty, [])
    assert job_identity(plain, []) != job_identity(varied, [])


# --- what is sent and recorded ----------------------------------------------------------


class Recording:
    def __init__(self, name: str, fail: bool = False) -> None:
        self.name, self.fail = name, fail
        self.requests: list[ChatRequest] = []

    async def complete(self, session: object, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        if self.fail:
            raise ProviderUnavailable("HTTP 503")
        return ChatResponse(text="billing", usage=Usage(50, 1), model=request.model)


def test_fallback_to_another_family_sends_and_records_that_familys_variant() -> None:
    kind = get_job_kind(classify(prompts=VARIANTS))
    a, b = Recording("a", fail=True), Recording("b")

    async def go() -> Any:
        ex = RowExecutor(
            kind,
            {"a": a, "b": b},  # type: ignore[dict-item]
            {"cheap": [Deployment.parse("a/claude-3-5-haiku"), Deployment.parse("b/gpt-4o-mini")]},
            session=None,  # type: ignore[arg-type]
            limiter=LocalLimiter({}),
            policy=RetryPolicy(max_attempts=1),
            sleep=lambda s: asyncio.sleep(0),
            rng=random.Random(0),
        )
        return await ex.run("r1", "charged twice", "cheap", 20)

    out = asyncio.run(go())
    assert out.ok and out.model == "gpt-4o-mini"
    assert a.requests[0].messages[0].content.startswith("Haiku:")
    assert b.requests[0].messages[0].content.startswith("GPT:")
    assert out.prompt_version == kind.prompt("gpt-4o-mini").version
    assert [c.prompt_version for c in out.calls] == [kind.prompt("gpt-4o-mini").version]


def test_different_prompt_text_is_a_different_cache_key() -> None:
    base = {"kind": "classify", "labels": LABELS}
    one = parse_spec(spec_doc({**base, "prompts": {"gpt-4o-mini": "First wording."}}))
    two = parse_spec(spec_doc({**base, "prompts": {"gpt-4o-mini": "Second wording."}}))
    other_family = parse_spec(spec_doc({**base, "prompts": {"claude": "Second wording."}}))
    key = [
        AnswerReuse(s, get_job_kind(s.task), None).key("ticket text", "cheap", False)
        for s in (one, two, other_family)
    ]
    assert len(set(key)) == 3
