"""Classification: pick exactly one label from a fixed set.

    job = ClassifyJob(ClassifyTask(kind="classify", labels=["billing", "technical"]))
    job.parse(" Billing.\\n")     # Parsed(ok=True, output='billing', reason=None)
    job.parse("refunds")         # ok=False, reason names the allowed labels

The system message carries a line `Allowed labels: a | b | c`; the simulator reads the
labels from that exact line, so keep its wording and separator.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from jobs.base import Parsed
from jobs.prompts import Variants
from pipeline.providers.base import Message
from schemas.job import ClassifyTask

DEFAULT_INSTRUCTIONS = "Classify the text by its main topic."
LABELS_PREFIX = "Allowed labels: "
LABEL_SEPARATOR = " | "
ANSWER_RULE = (
    "Answer with exactly one label from the allowed labels, spelled as listed, and nothing else."
)

# Models decorate a bare label in a few predictable ways: quotes or markdown around it,
# a trailing full stop, a "Label:" prefix. Anything beyond that is a wrong answer.
_PREFIX = re.compile(
    r"^(?:the\s+)?(?:label|category|answer|topic)(?:\s+is)?\s*(?:[:=\-]\s*|\s)", re.IGNORECASE
)
# Straight and typographic quotes, markdown emphasis, brackets.
_WRAPPING = " \t\r\n\"'`*_[]()<>" + "\u201c\u201d\u2018\u2019\u00ab\u00bb"
_TRAILING = ".,;:!?。"
_SHOWN_CHARS = 80


class ClassifyJob:
    kind = "classify"

    def __init__(self, task: ClassifyTask) -> None:
        if not isinstance(task, ClassifyTask):
            raise TypeError(f"ClassifyJob needs a ClassifyTask, got {type(task).__name__}")
        self.task = task
        self.labels: tuple[str, ...] = tuple(task.labels)
        self._by_folded = {label.casefold(): label for label in self.labels}
        self.prompt = Variants(task, DEFAULT_INSTRUCTIONS)

    def build_messages(self, text: str, model: str | None = None) -> tuple[Message, ...]:
        # The labels line and the answer rule follow every variant: parsing (and the
        # simulator) depend on them, whatever the wording above.
        system = "\n".join(
            [
                self.prompt(model).text,
                LABELS_PREFIX + LABEL_SEPARATOR.join(self.labels),
                ANSWER_RULE,
            ]
        )
        return (Message("system", system), Message("user", text))

    def max_output_tokens(self) -> int:
        return self.task.max_output_tokens

    def estimate_output_tokens(self) -> int:
        # About 4 characters per token; +1 for the end-of-answer token.
        longest = max(len(label) for label in self.labels)
        return math.ceil(longest / 4) + 1

    def output_schema(self) -> None:
        return None

    def typed_columns(self, outputs: Sequence[str | None]) -> None:
        return None

    def parse(self, raw: str) -> Parsed:
        for candidate in _candidates(raw):
            label = self._by_folded.get(candidate.casefold())
            if label is not None:
                return Parsed.accept(label)
        allowed = ", ".join(self.labels)
        shown = _normalise(raw)
        if not shown:
            return Parsed.reject(f"empty answer; expected one of the labels: {allowed}")
        if len(shown) > _SHOWN_CHARS:
            shown = shown[: _SHOWN_CHARS - 3] + "..."
        return Parsed.reject(f"answer {shown!r} is not one of the labels: {allowed}")


def _candidates(raw: str) -> list[str]:
    """Every way of peeling decoration off the answer, least peeled first."""
    out: list[str] = []
    todo = [raw]
    while todo:
        text = todo.pop(0).strip(_WRAPPING)
        if text in out:
            continue
        out.append(text)
        todo += [_PREFIX.sub("", text, count=1), text.rstrip(_TRAILING)]
    return out


def _normalise(raw: str) -> str:
    return min(_candidates(raw), key=len)
