"""Cutting a long document into chunks that fit a model, and grouping partial summaries
into reduce calls that fit. Pure: token counts come from the `count` callable passed in.

    count = lambda s: count_tokens(s, "gpt-3.5-turbo")
    chunks = split_text(text, max_tokens=12_000, overlap_tokens=200, count=count)
    groups = plan_reduce(summaries, max_tokens=12_000, count=count)   # [[0, 1, 2], [3, 4]]
    fits(9_000, prompt_tokens=120, max_output_tokens=136, context_window=16_385)  # True

`split_text` breaks at paragraphs (blank lines) when that keeps a chunk at least half
full, else at sentences (., !, ? or a line break), and splits a single sentence longer
than `max_tokens` at word boundaries (characters for a word that alone is too long).
Consecutive chunks share whole sentences worth at most `overlap_tokens`. Every chunk is
checked with `count`, so token counts that are not additive (BPE) cannot make one too big.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

Count = Callable[[str], int]

TRUNCATION_MARKER = " [...]"
_MIN_FILL = 0.5  # a paragraph break is used only if the chunk is at least this full
_PARAGRAPH = re.compile(r"\n[^\S\n]*\n\s*")
_BREAK = re.compile(r"([.!?\u2026][\"'\u201d\u2019)\]]*)\s+|\s*\n\s*")
_WORD = re.compile(r"\S+")


def fits(
    input_tokens: int,
    prompt_tokens: int,
    max_output_tokens: int,
    context_window: int,
    margin: float = 0.0,
) -> bool:
    """Whether text + prompt + the answer's budget fit the window, keeping `margin`
    (a fraction of the window, for tokenizer differences) free."""
    return input_tokens <= input_budget(context_window, prompt_tokens, max_output_tokens, margin)


def input_budget(
    context_window: int, prompt_tokens: int, max_output_tokens: int, margin: float = 0.0
) -> int:
    """The most text tokens one call can take (negative when even the prompt does not fit)."""
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin {margin} must be a fraction in [0, 1)")
    usable = math.floor(context_window * (1.0 - margin))
    return usable - prompt_tokens - max_output_tokens


@dataclass(frozen=True, slots=True)
class _Atom:
    start: int
    end: int
    tokens: int
    para_start: bool


def split_text(text: str, max_tokens: int, overlap_tokens: int, count: Count) -> list[str]:
    """Chunks of `text`, each at most `max_tokens` by `count`, in order; [] for blank text."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    stripped = text.strip()
    if not stripped:
        return []
    if count(stripped) <= max_tokens:
        return [stripped]
    atoms = _atoms(text, max_tokens, count)
    # pre[k]: tokens of atoms[:k] plus one per gap, an estimate checked exactly below.
    pre = [0]
    for a in atoms:
        pre.append(pre[-1] + a.tokens + 1)
    chunks: list[str] = []
    i, floor = 0, 1  # chunk starts at atom i and must end after atom floor - 1
    while True:
        end = _prefer_paragraph(atoms, pre, i, _pack(pre, i, max_tokens), floor, max_tokens)
        while True:
            piece = text[atoms[i].start : atoms[end - 1].end]
            tokens = count(piece)
            if tokens <= max_tokens or end == floor:
                break
            end -= 1
        if tokens > max_tokens:  # the overlap left no room for the next sentence: drop it
            i = floor - 1
            continue
        chunks.append(piece)
        if end >= len(atoms):
            return chunks
        i, floor = _overlap_start(pre, i, end, overlap_tokens, max_tokens), end + 1


def _pack(pre: list[int], i: int, max_tokens: int) -> int:
    end = i + 1
    while end < len(pre) - 1 and pre[end + 1] - pre[i] - 1 <= max_tokens:
        end += 1
    return end


def _prefer_paragraph(
    atoms: list[_Atom], pre: list[int], i: int, end: int, floor: int, max_tokens: int
) -> int:
    """End before the last paragraph start in [floor, end) if the chunk stays half full."""
    if end >= len(atoms) or atoms[end].para_start:
        return end
    for k in range(end - 1, max(i, floor - 1), -1):
        if pre[k] - pre[i] < _MIN_FILL * max_tokens:
            break
        if atoms[k].para_start:
            return k
    return end


def _overlap_start(pre: list[int], i: int, end: int, overlap: int, max_tokens: int) -> int:
    """Where the next chunk starts: whole atoms before `end` worth at most `overlap`,
    leaving room for at least the next atom (so every chunk brings something new)."""
    s = end
    while (
        s - 1 > i
        and pre[end] - pre[s - 1] <= overlap
        and pre[end + 1] - pre[s - 1] - 1 <= max_tokens
    ):
        s -= 1
    return s


def _atoms(text: str, max_tokens: int, count: Count) -> list[_Atom]:
    """Sentences with their token counts, over-long ones cut to fit."""
    atoms: list[_Atom] = []
    pos = 0
    for para in [*_PARAGRAPH.finditer(text), None]:
        p_end = para.start() if para else len(text)
        first = True
        for s, e in _sentences(text, pos, p_end):
            for ps, pe in _fit_span(text, s, e, max_tokens, count):
                atoms.append(_Atom(ps, pe, count(text[ps:pe]), first))
                first = False
        pos = para.end() if para else len(text)
    return atoms


def _sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    cur = start
    for m in _BREAK.finditer(text, start, end):
        stop = m.end(1) if m.group(1) else m.start()
        if text[cur:stop].strip():
            spans.append(_trim(text, cur, stop))
        cur = m.end()
    if text[cur:end].strip():
        spans.append(_trim(text, cur, end))
    return spans


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _fit_span(
    text: str, start: int, end: int, max_tokens: int, count: Count
) -> list[tuple[int, int]]:
    """The span itself when it fits, else consecutive pieces that do (words, then chars)."""
    if count(text[start:end]) <= max_tokens:
        return [(start, end)]
    words = [(m.start(), m.end()) for m in _WORD.finditer(text, start, end)]
    pieces: list[tuple[int, int]] = []
    w = 0
    while w < len(words):
        n = _longest(partial(_words_fit, text, words, w, max_tokens, count), len(words) - w)
        if n:
            pieces.append((words[w][0], words[w + n - 1][1]))
            w += n
            continue
        ws, we = words[w]  # one word alone is too long: cut it by characters
        while ws < we:
            c = max(1, _longest(partial(_chars_fit, text, ws, max_tokens, count), we - ws))
            pieces.append((ws, ws + c))
            ws += c
        w += 1
    return pieces


def _words_fit(
    text: str, words: list[tuple[int, int]], w: int, max_tokens: int, count: Count, k: int
) -> bool:
    return count(text[words[w][0] : words[w + k - 1][1]]) <= max_tokens


def _chars_fit(text: str, start: int, max_tokens: int, count: Count, k: int) -> bool:
    return count(text[start : start + k]) <= max_tokens


def _longest(ok: Callable[[int], bool], limit: int) -> int:
    """The largest k in [0, limit] with ok(k), for ok monotone (true, then false):
    doubling then bisection, so the cost follows the answer, not `limit`."""
    lo, hi = 0, 1
    while hi <= limit and ok(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


# --- reduce -----------------------------------------------------------------------------


def plan_reduce(
    summaries: Sequence[str], max_tokens: int, count: Count, *, overhead: int = 2
) -> list[list[int]]:
    """Consecutive groups of summary indices, one reduce call each (a group of one passes
    through to the next level without a call). Each group fits `max_tokens` (counting
    `overhead` tokens per item for separators) when its items do; with two or more
    summaries there are always fewer groups than summaries, so recursion ends. Items of
    an over-full group are cut to fit by `fit_group`.
    """
    n = len(summaries)
    groups: list[list[int]] = []
    total = 0
    for i, s in enumerate(summaries):
        size = count(s) + overhead
        if groups and total + size <= max_tokens:
            groups[-1].append(i)
            total += size
        else:
            groups.append([i])
            total = size
    if n >= 2 and len(groups) == n:
        # No two neighbours fit together: pair them anyway and let fit_group cut.
        groups = [list(range(k, min(k + 2, n))) for k in range(0, n, 2)]
    return groups


def fit_group(
    texts: Sequence[str],
    max_tokens: int,
    count: Count,
    *,
    overhead: int = 2,
    marker: str = TRUNCATION_MARKER,
) -> tuple[list[str], int]:
    """The texts cut so that together (plus `overhead` each) they fit `max_tokens`, and how
    many were cut. Short texts stay whole; the long ones share what is left equally."""
    sizes = [count(t) + overhead for t in texts]
    if sum(sizes) <= max_tokens:
        return list(texts), 0
    left, k = max_tokens, len(texts)
    share = left // k
    for size in sorted(sizes):
        if size > share:
            break
        left, k = left - size, k - 1
        share = left // k if k else left
    out, cut = [], 0
    for text, size in zip(texts, sizes, strict=True):
        if size <= share:
            out.append(text)
        else:
            out.append(truncate_tokens(text, share - overhead, count, marker=marker))
            cut += 1
    return out, cut


def truncate_tokens(
    text: str, max_tokens: int, count: Count, *, marker: str = TRUNCATION_MARKER
) -> str:
    """`text` cut at a word boundary to at most `max_tokens` tokens, ending with `marker`."""
    if count(text) <= max_tokens:
        return text
    if count(marker) > max_tokens:
        raise ValueError(f"max_tokens {max_tokens} leaves no room for the marker {marker!r}")
    ends = [m.end() for m in _WORD.finditer(text)]
    n = _longest(lambda k: count(text[: ends[k - 1]] + marker) <= max_tokens, len(ends))
    if n:
        return text[: ends[n - 1]] + marker
    c = _longest(lambda k: count(text[:k] + marker) <= max_tokens, len(text))
    return text[:c] + marker
