"""A row's messages per model: the prompt variant each model gets, and its version.

    prompt = kind.prompt("claude-3-5-haiku")     # Prompt(key='claude', version='p-…', text=…)
    msgs = RowMessages(kind, text)               # what the executor sends a row
    msgs.for_model("gpt-4o-mini"), msgs.version("gpt-4o-mini")
    FixedMessages(prepared, "p-1a2b3c4d")        # a long document's map / reduce step

The executor picks a deployment first and builds the request for its model after, so a
fallback or an escalation to another family sends that family's variant, and the cost
row of each call names the version it sent. Shared instructions stay in the leading
system message and the row's text last, so providers' prompt caches still apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from schemas.job import task_prompt
from schemas.prompts import prompt_version

if TYPE_CHECKING:
    from jobs.base import JobKind
    from pipeline.providers.base import Message
    from schemas.job import AnyTask


@dataclass(frozen=True, slots=True)
class Prompt:
    """The variant one model gets: its key in `task.prompts` ('default' when none
    matched), the instructions as sent, and their version."""

    key: str
    text: str
    version: str

    @classmethod
    def of(cls, key: str, text: str) -> Prompt:
        return cls(key, text, prompt_version(text))


class Variants:
    """The prompt variant each model gets, built once per model; `default` stands in for
    empty instructions.

        self.prompt = Variants(task, DEFAULT_INSTRUCTIONS)     # kind.prompt(model)
    """

    __slots__ = ("_built", "default", "task")

    def __init__(self, task: AnyTask, default: str = "") -> None:
        self.task, self.default = task, default
        self._built: dict[str | None, Prompt] = {}

    def __call__(self, model: str | None = None) -> Prompt:
        p = self._built.get(model)
        if p is None:
            key, text = task_prompt(self.task, model)
            p = self._built[model] = Prompt.of(key, text.strip() or self.default)
        return p


class Messages(Protocol):
    """What a call sends, by model: the messages and the prompt version they carry."""

    def for_model(self, model: str) -> tuple[Message, ...]: ...

    def version(self, model: str) -> str | None: ...


class RowMessages:
    """One row's text under the job kind's prompt for each model (built once per model)."""

    __slots__ = ("_built", "kind", "text")

    def __init__(self, kind: JobKind, text: str) -> None:
        self.kind, self.text = kind, text
        self._built: dict[str, tuple[Message, ...]] = {}

    def for_model(self, model: str) -> tuple[Message, ...]:
        msgs = self._built.get(model)
        if msgs is None:
            msgs = self._built[model] = self.kind.build_messages(self.text, model)
        return msgs

    def version(self, model: str) -> str | None:
        return self.kind.prompt(model).version


class FixedMessages:
    """Messages prepared beforehand (a long document's steps): the same for every model."""

    __slots__ = ("_version", "messages")

    def __init__(self, messages: tuple[Message, ...], version: str | None = None) -> None:
        self.messages, self._version = messages, version

    def for_model(self, model: str) -> tuple[Message, ...]:
        return self.messages

    def version(self, model: str) -> str | None:
        return self._version
