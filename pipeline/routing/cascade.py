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
- Extract answers are compared one field at a time (`same_answer`, `vote`): the fields
  `cascade.fields` / `vote.fields` name, by default every field but free-text strings.
- A rejected answer on the last tier is kept when it is valid for the task
  (`accepted_reason` says `final_tier (...)`), else the row is an `invalid_output` error.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence

from jobs.base import Parsed

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


# --- structured answers (extract): one field at a time -----------------------------------


def field_key(value: object) -> str:
    """A field's value as compared: strings by `normalise`, anything else exactly."""
    if isinstance(value, str):
        return normalise(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def same_answer(a: Parsed, b: Parsed, fields: Sequence[str] | None = None) -> bool:
    """Whether two accepted answers agree: on `fields` of structured answers (every field
    when None), else on their normalised text."""
    if a.values is not None and b.values is not None:
        names = fields if fields is not None else list(a.values)
        return all(field_key(a.values.get(n)) == field_key(b.values.get(n)) for n in names)
    return normalise(a.output or "") == normalise(b.output or "")


def vote(
    answers: Sequence[Parsed], fields: Sequence[str] | None = None
) -> tuple[int, Parsed, bool]:
    """(index of the answer the result is credited to, the result, tie). Plain answers:
    the majority answer. Structured ones: each field's majority value (ties toward the
    answer given first); a tie on one of `fields` (every field when None) is a tie."""
    if not answers:
        raise ValueError("vote over no answers")
    first = answers[0]
    if any(a.values is None for a in answers) or first.values is None:
        winner, tie = majority([a.output or "" for a in answers])
        i = next(i for i, a in enumerate(answers) if normalise(a.output or "") == winner)
        return i, answers[i], tie
    merged: dict[str, object] = {}
    tie = False
    checked = set(fields) if fields is not None else set(first.values)
    for name in first.values:
        column = [a.values.get(name) if a.values is not None else None for a in answers]
        key, tied = majority([field_key(v) for v in column])
        merged[name] = next(v for v in column if normalise(field_key(v)) == key)
        tie = tie or (tied and name in checked)
    output = json.dumps(merged, ensure_ascii=False, separators=(",", ":"))
    return 0, Parsed(ok=True, output=output, values=merged), tie
