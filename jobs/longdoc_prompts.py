"""Prompts for documents longer than a model's context: one per chunk (map) and one that
combines partial summaries (reduce).

    map_messages(chunk, index=1, total=5, max_words=60)     # "... part 2 of 5 ..."
    reduce_messages(["...", "..."], max_words=60)

Both system messages say `in at most {N} words`: the simulator reads the word limit from
that exact phrase, as it does for `SummariseJob`, so keep the wording. The user message is
the text alone (partial summaries joined by a blank line), so an extractive answer never
quotes prompt scaffolding back.
"""

from __future__ import annotations

from collections.abc import Sequence

from jobs.summarise import STYLE_RULES
from pipeline.providers.base import Message

REDUCE_SEPARATOR = "\n\n"


def _system(lines: list[str], instructions: str) -> str:
    if instructions.strip():
        lines.append(instructions.strip())
    lines.append(STYLE_RULES)
    return "\n".join(lines)


def map_messages(
    chunk: str, index: int, total: int, max_words: int, instructions: str = ""
) -> tuple[Message, ...]:
    """Messages summarising chunk `index` (0-based) of `total`."""
    if not 0 <= index < total:
        raise ValueError(f"chunk index {index} is not within 0..{total - 1}")
    system = _system(
        [
            f"The user's text is part {index + 1} of {total} of a longer document.",
            f"Summarise this part in at most {max_words} words.",
        ],
        instructions,
    )
    return (Message("system", system), Message("user", chunk))


def reduce_messages(
    summaries: Sequence[str], max_words: int, instructions: str = ""
) -> tuple[Message, ...]:
    """Messages combining partial summaries (in document order) into one."""
    if not summaries:
        raise ValueError("reduce_messages needs at least one summary")
    system = _system(
        [
            f"The user's text is {len(summaries)} partial summaries of consecutive parts of "
            "one document, in order, separated by blank lines.",
            f"Combine these partial summaries into one summary in at most {max_words} words.",
        ],
        instructions,
    )
    user = REDUCE_SEPARATOR.join(s.strip() for s in summaries)
    return (Message("system", system), Message("user", user))
