"""Free-form generation: the row's text is the prompt; any non-empty answer is accepted.

    job = GenerateJob(GenerateTask(kind="generate", max_output_tokens=256))

Used to replay recorded answers (the router benchmark) and for open-ended prompts whose
quality is judged downstream.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from jobs.base import Parsed
from jobs.prompts import Prompt
from pipeline.providers.base import Message
from schemas.job import GenerateTask, task_prompt


class GenerateJob:
    kind = "generate"

    def __init__(self, task: GenerateTask) -> None:
        self.task = task
        self._prompts: dict[str | None, Prompt] = {}

    def prompt(self, model: str | None = None) -> Prompt:
        p = self._prompts.get(model)
        if p is None:
            p = self._prompts[model] = Prompt.of(*task_prompt(self.task, model))
        return p

    def build_messages(self, text: str, model: str | None = None) -> tuple[Message, ...]:
        user = Message(role="user", content=text)
        system = self.prompt(model).text
        if system:
            return (Message(role="system", content=system), user)
        return (user,)

    def max_output_tokens(self) -> int:
        return self.task.max_output_tokens

    def estimate_output_tokens(self) -> int:
        # No better prior than "a fair share of the cap" without earlier runs.
        return max(1, math.ceil(self.task.max_output_tokens / 4))

    def output_schema(self) -> None:
        return None

    def typed_columns(self, outputs: Sequence[str | None]) -> None:
        return None

    def parse(self, raw: str) -> Parsed:
        text = raw.strip()
        return Parsed.accept(text) if text else Parsed.reject("empty answer")
