"""The cascade's pure parts: when two answers are the same, and who wins a vote.

    normalise("  Billing. ")            # 'billing'
    majority(["a", "b", "a"])           # ('a', False)
    majority(["a", "b"])                # ('a', True): a tie, the row escalates

The engine (pipeline.execute) calls deployments and escalates; this module only decides.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

_SPACE = re.compile(r"\s+")
_EDGE = re.compile(r"^[\W_]+|[\W_]+$")


def normalise(answer: str) -> str:
    """Case, surrounding punctuation and runs of white space do not make answers differ."""
    return _EDGE.sub("", _SPACE.sub(" ", answer.strip().lower()))


def majority(answers: Sequence[str]) -> tuple[str, bool]:
    """The most common normalised answer, and whether another answer ties with it.
    Ties break toward the answer given first, so the result is deterministic."""
    if not answers:
        raise ValueError("majority of no answers")
    keys = [normalise(a) for a in answers]
    counts = Counter(keys)
    best = max(counts.values())
    leaders = [k for k in dict.fromkeys(keys) if counts[k] == best]
    return leaders[0], len(leaders) > 1
