"""The simulator's answers: pure, deterministic functions of the messages.

The task is read from the system message (see `parse_task`):

    >>> msgs = (("system", "Allowed labels: billing | technical | other"),
    ...         ("user", "I was billed twice this month"))
    >>> answer(msgs, model="m", seed=0, accuracy=1.0)
    'billing'

- classify: a line `Allowed labels: a | b | c` -> the label whose words best match the
  user text (same first 5 letters, or same stem); ties go to the first label; no match
  goes to a label named "other" if there is one, else to the last label.
- summarise: `in at most N words` -> the leading sentences of the user text that fit in
  N words (at least the first sentence, cut to N words).
- anything else: the first 20 words of the user text.

`accuracy` below 1 makes a classify answer wrong (a different allowed label) for a share
1 - accuracy of prompts, chosen by a stable hash of seed, model and prompt, not by random
state: the same prompt sent to the same model always gets the same answer. Benchmarks use
it to make cheap models worse than flagship ones.

Log-probabilities (`token_logprobs`, sent only when a request asks for them): one per word
piece of the answer, a stable hash of seed, model, prompt and position around a mean of
SURE_LOGPROB (-0.05) for an answer the model "knows", and UNSURE_LOGPROB (-2.0) for one
the accuracy setting made wrong. A model is thus exactly as unsure as it is wrong: a
`min_logprob` floor between the two catches every wrong answer and no right one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from pipeline.tokens import count_tokens

Msg = tuple[str, str]
"""One chat message as (role, content)."""

ECHO_WORDS = 20
MESSAGE_OVERHEAD_TOKENS = 3
REPLY_PRIMING_TOKENS = 3

_LABELS_LINE = re.compile(r"^\s*allowed labels\s*:(.*)$", re.IGNORECASE | re.MULTILINE)
_MAX_WORDS = re.compile(r"in at most (\d+) words", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\s*\n+\s*")
_WORD_END = re.compile(r"\S+")
_SUFFIXES = ("ations", "ation", "ments", "ment", "ings", "ing", "ers", "er", "ed", "es", "ly", "s")


@dataclass(frozen=True, slots=True)
class Task:
    """What the system message asks for."""

    kind: Literal["classify", "summarise", "echo"]
    labels: tuple[str, ...] = ()
    max_words: int = 0


@dataclass(frozen=True, slots=True)
class _LabelIndex:
    labels: tuple[str, ...]
    prefixes: tuple[frozenset[str], ...]
    stems: tuple[frozenset[str], ...]
    fallback: int


def stable_fraction(*parts: object) -> float:
    """A number in [0, 1) that depends only on `parts` (same across runs and machines)."""
    data = "\x1f".join(str(p) for p in parts).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") / 2.0**64


@lru_cache(maxsize=4096)
def parse_task(system: str) -> Task:
    """Read the task from the system text; cached, since a job repeats one system prompt."""
    match = _LABELS_LINE.search(system)
    if match:
        labels = tuple(part.strip() for part in match.group(1).split("|") if part.strip())
        if labels:
            return Task("classify", labels=labels)
    match = _MAX_WORDS.search(system)
    if match:
        return Task("summarise", max_words=max(1, int(match.group(1))))
    return Task("echo")


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


@lru_cache(maxsize=1024)
def _label_index(labels: tuple[str, ...]) -> _LabelIndex:
    prefixes, stems = [], []
    for label in labels:
        words = _WORD.findall(label.lower())
        prefixes.append(frozenset(w[:5] for w in words if len(w) >= 5))
        stems.append(frozenset(_stem(w) for w in words))
    lowered = [label.lower() for label in labels]
    fallback = lowered.index("other") if "other" in lowered else len(labels) - 1
    return _LabelIndex(labels, tuple(prefixes), tuple(stems), fallback)


def classify(text: str, labels: tuple[str, ...]) -> str:
    """The allowed label that shares the most words with `text`."""
    index = _label_index(labels)
    words = _WORD.findall(text.lower())
    keys = [(w[:5] if len(w) >= 5 else None, _stem(w)) for w in words]
    best, best_score = index.fallback, 0
    for i in range(len(labels)):
        prefixes, stems = index.prefixes[i], index.stems[i]
        score = sum(1 for p, s in keys if s in stems or (p is not None and p in prefixes))
        if score > best_score:
            best, best_score = i, score
    return labels[best]


def summarise(text: str, max_words: int) -> str:
    """The leading sentences of `text` that fit in `max_words` words."""
    sentences = [s for s in _SENTENCE_BREAK.split(text.strip()) if s]
    if not sentences:
        return ""
    kept: list[str] = []
    used = 0
    for sentence in sentences:
        n = len(sentence.split())
        if used + n > max_words:
            break
        kept.append(sentence)
        used += n
    if not kept:
        return " ".join(sentences[0].split()[:max_words])
    return " ".join(kept)


def echo(text: str, n_words: int = ECHO_WORDS) -> str:
    return " ".join(text.split()[:n_words])


def last_user_text(messages: Sequence[Msg]) -> str:
    for role, content in reversed(messages):
        if role == "user":
            return content
    return ""


def system_text(messages: Sequence[Msg]) -> str:
    return "\n".join(content for role, content in messages if role == "system")


def made_wrong(messages: Sequence[Msg], *, model: str, seed: int, accuracy: float) -> bool:
    """Whether `answer` gives a wrong label here (only classify answers are ever wrong)."""
    system = system_text(messages)
    task = parse_task(system)
    if task.kind != "classify" or len(task.labels) < 2 or accuracy >= 1.0:
        return False
    text = last_user_text(messages)
    return stable_fraction(seed, model, system, text, "accuracy") >= accuracy


def answer(messages: Sequence[Msg], *, model: str, seed: int, accuracy: float) -> str:
    """The generated answer to `messages` (see the module docstring)."""
    system = system_text(messages)
    task = parse_task(system)
    text = last_user_text(messages)
    if task.kind == "summarise":
        return summarise(text, task.max_words)
    if task.kind == "echo":
        return echo(text)
    label = classify(text, task.labels)
    if made_wrong(messages, model=model, seed=seed, accuracy=accuracy):
        others = [lab for lab in task.labels if lab != label]
        pick = stable_fraction(seed, model, system, text, "wrong-label")
        label = others[int(pick * len(others))]
    return label


SURE_LOGPROB = -0.05
UNSURE_LOGPROB = -2.0
_PIECE = re.compile(r"\s*\S+")


def token_logprobs(
    text: str, messages: Sequence[Msg], *, model: str, seed: int, sure: bool
) -> list[tuple[str, float]]:
    """(piece, log-probability) per word piece of `text`, deterministic; mean about
    SURE_LOGPROB or UNSURE_LOGPROB (each value within 0.5x..1.5x of it, so never above 0).

    >>> [p for p, _ in token_logprobs("not sure", (), model="m", seed=0, sure=False)]
    ['not', ' sure']
    """
    mean = SURE_LOGPROB if sure else UNSURE_LOGPROB
    prompt = last_user_text(messages)
    return [
        (piece, mean * (0.5 + stable_fraction(seed, model, prompt, i, "logprob")))
        for i, piece in enumerate(_PIECE.findall(text))
    ]


def input_tokens(messages: Sequence[Msg], model: str) -> int:
    """Prompt tokens: each message's content, 3 per message, 3 to prime the reply."""
    content = sum(count_tokens(c, model) for _, c in messages)
    return content + MESSAGE_OVERHEAD_TOKENS * len(messages) + REPLY_PRIMING_TOKENS


def truncate_to_tokens(text: str, max_tokens: int, model: str) -> tuple[str, int, bool]:
    """Cut `text` to at most `max_tokens`: (text, output tokens, whether it was cut).

    A cut answer reports exactly `max_tokens` output tokens, as a provider does.
    """
    tokens = count_tokens(text, model)
    if tokens <= max_tokens:
        return text, tokens, False
    ends = [m.end() for m in _WORD_END.finditer(text)]
    cut = _longest_fit(text, ends, max_tokens, model)
    if not cut:
        cut = _longest_fit(text, range(1, len(text) + 1), max_tokens, model)
    return cut, max_tokens, True


def _longest_fit(text: str, ends: Sequence[int], max_tokens: int, model: str) -> str:
    """The longest `text[:end]` over increasing `ends` within `max_tokens`, or ''."""
    lo, hi = 0, len(ends)
    while lo < hi:
        mid = (lo + hi) // 2
        if count_tokens(text[: ends[mid]], model) <= max_tokens:
            lo = mid + 1
        else:
            hi = mid
    return text[: ends[lo - 1]] if lo else ""
