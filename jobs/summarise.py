"""Summarisation: one summary per row, in at most `max_words` words.

    job = SummariseJob(SummariseTask(kind="summarise", max_words=60))
    job.parse("  The outage lasted 40 minutes. ")   # Parsed(ok=True, output='The outage ...')

The system message says `in at most {max_words} words`; the simulator reads the limit
from that exact phrase, so keep its wording. Models overshoot a word limit a little, so
an answer is accepted up to `OVERSHOOT` times the limit and rejected past it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from jobs.base import Parsed
from jobs.prompts import Prompt
from pipeline.providers.base import Message
from schemas.job import SummariseTask, task_prompt

OVERSHOOT = 1.2
TOKENS_PER_WORD = 1.33
STYLE_RULES = (
    "Keep the facts, names, numbers and decisions that matter; leave out greetings and filler. "
    "Write plain prose with no title, no bullet points and no preamble. "
    "Answer with the summary only."
)

# A "Summary:" label before the text is decoration, not part of the summary.
_LABEL = re.compile(r"^\s*(?:\*\*)?summary(?:\*\*)?\s*:\s*(?:\*\*)?", re.IGNORECASE)


class SummariseJob:
    kind = "summarise"

    def __init__(self, task: SummariseTask) -> None:
        if not isinstance(task, SummariseTask):
            raise TypeError(f"SummariseJob needs a SummariseTask, got {type(task).__name__}")
        self.task = task
        self.max_words = task.max_words
        self.hard_limit = math.floor(task.max_words * OVERSHOOT)
        self._prompts: dict[str | None, Prompt] = {}

    def prompt(self, model: str | None = None) -> Prompt:
        """The variant's guidance (between the word limit and the style rules)."""
        p = self._prompts.get(model)
        if p is None:
            key, text = task_prompt(self.task, model)
            p = self._prompts[model] = Prompt.of(key, text.strip())
        return p

    def build_messages(self, text: str, model: str | None = None) -> tuple[Message, ...]:
        lines = [f"Summarise the user's text in at most {self.max_words} words."]
        if guidance := self.prompt(model).text:
            lines.append(guidance)
        lines.append(STYLE_RULES)
        return (Message("system", "\n".join(lines)), Message("user", text))

    def max_output_tokens(self) -> int:
        return self.task.output_token_cap()

    def estimate_output_tokens(self) -> int:
        # Summaries tend to use most of their word allowance.
        return math.ceil(self.max_words * TOKENS_PER_WORD)

    def output_schema(self) -> None:
        return None

    def typed_columns(self, outputs: Sequence[str | None]) -> None:
        return None

    def parse(self, raw: str) -> Parsed:
        text = _LABEL.sub("", raw, count=1).strip()
        if not text:
            return Parsed.reject("empty summary")
        words = len(text.split())
        if words > self.hard_limit:
            return Parsed.reject(f"summary has {words} words, limit is {self.max_words}")
        return Parsed.accept(text)
