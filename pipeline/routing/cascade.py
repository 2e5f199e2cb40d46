"""The cascade's pure parts: when two answers are the same, and who wins a vote.

    normalise("  Billing. ")            # 'billing'
    majority(["a", "b", "a"])           # ('a', False)
    majority(["a", "b"])                # ('a', True): a tie, the row escalates

The engine (pipeline.calls.execute) calls deployments and escalates; this module only decides.

What the engine does with `routing.cascade` (any policy; `policy: cascade` starts every row
at its rule's tier, `policy: learned` at the tier the router chose):

- Each answer is checked by the task's own validation, then `min_logprob` (the provider is
  asked for log-probabilities; an answer without them passes), then agreement.
- `agree: [A, B]`: a row answered at A's tier is also asked of B. Same answer (by
  `normalise`): A's answer is kept. Different, or B cannot answer: the row goes to the
  first tier above B's, because B's answer is in doubt too; with the usual
  `[cheap, mid]` that is flagship, and all three calls are billed. Rows that start at
  another tier are not asked twice. The learned router's cascade training
  (`fit_router(..., cascade=True)`) assumes exactly this.
- A rejected answer on the last tier is kept when it is valid for the task
  (`accepted_reason` says `final_tier (...)`), else the row is an `invalid_output` error.
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
