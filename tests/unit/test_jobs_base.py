from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from jobs.base import Parsed, get_job_kind, known_kinds, register
from jobs.classify import ClassifyJob
from schemas.job import ClassifyTask


def test_parsed_is_frozen_and_has_constructors() -> None:
    assert Parsed.accept("billing") == Parsed(ok=True, output="billing", reason=None)
    assert Parsed.reject("bad") == Parsed(ok=False, output=None, reason="bad")
    with pytest.raises(dataclasses.FrozenInstanceError):
        Parsed.accept("x").ok = False  # type: ignore[misc]


def test_known_kinds_cover_the_spec_task_kinds() -> None:
    import typing

    from schemas.job import Task

    members = typing.get_args(typing.get_args(Task)[0])
    spec_kinds = sorted(typing.get_args(m.model_fields["kind"].annotation)[0] for m in members)
    assert known_kinds() == spec_kinds == ["classify", "extract", "generate", "summarise"]


def test_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown task kind 'translate'; known kinds: classify"):
        get_job_kind(SimpleNamespace(kind="translate"))  # type: ignore[arg-type]


class EchoJob:
    """A job kind outside the package, to show registration."""

    kind = "echo"

    def __init__(self, task: object) -> None:
        self.task = task


def test_register_a_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    import jobs.base as base

    monkeypatch.setattr(base, "_KINDS", dict(base._KINDS))
    register("echo", f"{__name__}:EchoJob")
    task = SimpleNamespace(kind="echo")
    job = get_job_kind(task)  # type: ignore[arg-type]
    assert isinstance(job, EchoJob)
    assert job.task is task
    assert "echo" in known_kinds()


def test_register_needs_module_and_class() -> None:
    with pytest.raises(ValueError, match="module:Class"):
        register("x", "jobs.classify.ClassifyJob")


def test_get_job_kind_builds_from_the_task() -> None:
    job = get_job_kind(ClassifyTask(kind="classify", labels=["a", "b"]))
    assert isinstance(job, ClassifyJob)
    assert job.labels == ("a", "b")


def test_generate_accepts_any_non_empty_answer() -> None:
    from schemas.job import GenerateTask

    job = get_job_kind(GenerateTask(kind="generate", instructions="Answer briefly."))
    assert [m.role for m in job.build_messages("2+2?")] == ["system", "user"]
    assert job.parse("  4 \n").output == "4"
    assert not job.parse("   ").ok
