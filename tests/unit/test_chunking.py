from __future__ import annotations

import itertools
import random
import re

import pytest

from pipeline.longdoc.chunking import (
    TRUNCATION_MARKER,
    fit_group,
    fits,
    input_budget,
    plan_reduce,
    split_text,
    truncate_tokens,
)
from pipeline.tokens import count_tokens


def words(text: str) -> int:
    """A token counter that is easy to reason about: one token per word."""
    return len(text.split())


def sentence(tag: str, n: int = 10) -> str:
    return " ".join(f"{tag}w{i}" for i in range(n - 1)) + f" {tag}end."


def paragraph(p: int, sentences: int = 3) -> str:
    return " ".join(sentence(f"p{p}s{s}") for s in range(sentences))


def gpt35(text: str) -> int:
    return count_tokens(text, "gpt-3.5-turbo")


# --- fits --------------------------------------------------------------------------------


def test_fits_counts_prompt_output_and_margin() -> None:
    assert fits(15_000, 200, 1_000, 16_385)
    assert not fits(15_200, 200, 1_000, 16_385)
    assert fits(15_185, 200, 1_000, 16_385)  # exactly full
    assert not fits(15_000, 200, 1_000, 16_385, margin=0.05)
    assert input_budget(10_000, 100, 500, margin=0.1) == 9_000 - 600


def test_fits_refuses_a_nonsense_margin() -> None:
    with pytest.raises(ValueError, match="margin"):
        fits(1, 1, 1, 100, margin=1.0)


# --- split_text --------------------------------------------------------------------------


def test_blank_text_has_no_chunks_and_short_text_is_one() -> None:
    assert split_text(" \n\n ", 10, 0, words) == []
    assert split_text("  One short sentence. ", 10, 0, words) == ["One short sentence."]


def test_splits_at_paragraphs_when_they_keep_chunks_half_full() -> None:
    paras = [paragraph(p) for p in range(4)]  # 30 words each
    text = "\n\n".join(paras)
    assert split_text(text, 50, 0, words) == paras
    assert split_text(text, 70, 0, words) == ["\n\n".join(paras[:2]), "\n\n".join(paras[2:])]


def test_falls_back_to_sentences_inside_a_long_paragraph() -> None:
    sents = [sentence(f"s{i}") for i in range(10)]  # one paragraph, 10 words a sentence
    chunks = split_text(" ".join(sents), 35, 0, words)
    assert chunks == [" ".join(sents[i : i + 3]) for i in range(0, 10, 3)]
    assert all(c.endswith(".") for c in chunks)


def test_line_breaks_count_as_sentence_boundaries() -> None:
    lines = [f"#Person{i % 2 + 1}#: " + " ".join(["word"] * 8) for i in range(12)]
    chunks = split_text("\n".join(lines), 25, 0, words)
    assert all(words(c) <= 25 for c in chunks)
    assert [line for c in chunks for line in c.split("\n")] == lines


def test_consecutive_chunks_overlap_by_whole_sentences() -> None:
    sents = [sentence(f"s{i}") for i in range(12)]
    chunks = split_text(" ".join(sents), 45, 12, words)
    assert len(chunks) > 2
    for prev, nxt in itertools.pairwise(chunks):
        last = prev.rsplit(". ", 1)[-1]
        assert last.endswith(".") and nxt.startswith(last)  # one sentence (11 tokens) shared
    # with no overlap allowed nothing is repeated
    plain = split_text(" ".join(sents), 45, 0, words)
    assert sum(words(c) for c in plain) == 120


def test_overlap_never_stops_progress() -> None:
    sents = [sentence(f"s{i}") for i in range(20)]
    chunks = split_text(" ".join(sents), 25, 1_000, words)  # overlap bigger than a chunk
    assert all(words(c) <= 25 for c in chunks)
    assert chunks[-1].endswith("s19end.")
    assert len(chunks) < 20


def test_a_sentence_longer_than_a_chunk_is_cut_at_words() -> None:
    long = " ".join(f"w{i}" for i in range(500))  # no punctuation at all
    chunks = split_text(f"Intro here.\n\n{long}\n\nOutro.", 60, 10, words)
    assert all(words(c) <= 60 for c in chunks)
    seen = " ".join(chunks).split()
    assert [w for w in seen if w.startswith("w")] == long.split()  # pieces do not overlap
    assert chunks[0].startswith("Intro") and chunks[-1].endswith("Outro.")


def test_a_word_longer_than_a_chunk_is_cut_by_characters() -> None:
    blob = "x" * 1_000

    def chars(text: str) -> int:
        return len(text)

    chunks = split_text(f"Start. {blob} End.", 64, 0, chars)
    assert all(len(c) <= 64 for c in chunks)
    assert "".join(x for c in chunks for x in re.findall("x+", c)) == blob


def test_every_chunk_fits_by_a_real_tokenizer_and_nothing_is_lost() -> None:
    rng = random.Random(3)
    vocab = ["alpha", "beta", "gamma", "refund", "outage", "42", "3.5%", "don't", "#Person1#:"]
    paras = []
    for _ in range(60):
        sents = [
            " ".join(rng.choice(vocab) for _ in range(rng.randint(3, 30))) + rng.choice(".!?")
            for _ in range(rng.randint(1, 8))
        ]
        paras.append(rng.choice([" ", "\n"]).join(sents))
    text = "\n\n".join(paras)
    chunks = split_text(text, 300, 40, gpt35)
    assert len(chunks) > 3
    assert all(gpt35(c) <= 300 for c in chunks)
    assert chunks == split_text(text, 300, 40, gpt35)  # deterministic
    # every sentence appears, in order
    joined = " ".join(" ".join(c.split()) for c in chunks)
    for p in paras:
        assert " ".join(p.split()[:3]) in joined


@pytest.mark.parametrize("seed", range(25))
def test_fuzz_chunks_fit_cover_and_terminate(seed: int) -> None:
    rng = random.Random(seed)
    pieces = []
    for i in range(rng.randint(1, 120)):
        kind = rng.random()
        if kind < 0.05:
            pieces.append("z" * rng.randint(50, 400))  # a giant "word"
        elif kind < 0.15:
            pieces.append("\n\n")
        elif kind < 0.25:
            pieces.append("\n")
        else:
            pieces.append(" ".join(f"t{i}x{j}" for j in range(rng.randint(1, 40))) + ". ")
    text = "".join(pieces)
    max_tokens = rng.randint(8, 200)
    chunks = split_text(text, max_tokens, rng.randint(0, 80), gpt35)
    assert all(gpt35(c) <= max_tokens for c in chunks)
    assert len(chunks) <= max(1, gpt35(text))
    covered = set(" ".join(chunks).split())
    assert {w for w in text.split() if not w.startswith("z")} <= covered


# --- reduce ------------------------------------------------------------------------------


def test_plan_reduce_packs_consecutive_summaries() -> None:
    summaries = [" ".join(["w"] * 10)] * 7  # 10 words + 2 overhead each
    assert plan_reduce(summaries, 100, words) == [list(range(7))]
    assert plan_reduce(summaries, 40, words) == [[0, 1, 2], [3, 4, 5], [6]]


def test_plan_reduce_pairs_summaries_that_are_each_too_big() -> None:
    summaries = [" ".join(["w"] * 80)] * 5
    assert plan_reduce(summaries, 100, words) == [[0, 1], [2, 3], [4]]


def test_fit_group_keeps_short_texts_and_cuts_long_ones_with_a_marker() -> None:
    short, long = "a b c", " ".join(["w"] * 200)
    texts, cut = fit_group([short, long, long], 60, words)
    assert cut == 2 and texts[0] == short
    assert all(t.endswith(TRUNCATION_MARKER) for t in texts[1:])
    assert sum(words(t) + 2 for t in texts) <= 60


def test_truncate_tokens() -> None:
    text = " ".join(f"w{i}" for i in range(100))
    assert truncate_tokens(text, 200, words) == text
    cut = truncate_tokens(text, 10, words)
    assert words(cut) <= 10 and cut.startswith("w0 w1") and cut.endswith(TRUNCATION_MARKER)
    with pytest.raises(ValueError, match="marker"):
        truncate_tokens(text, 0, words)


@pytest.mark.parametrize("seed", range(30))
def test_recursive_reduce_terminates_and_every_call_fits(seed: int) -> None:
    """Adversarial: a reduce call answers with everything it was given (as long as the
    budget allows), sizes range from tiny to several times the budget."""
    rng = random.Random(seed)
    budget = rng.randint(20, 300)
    items = [
        " ".join(["w"] * rng.choice([1, 5, budget // 2, budget - 2, budget, budget * 3]))
        for _ in range(rng.randint(2, 60))
    ]
    levels = 0
    while len(items) > 1:
        levels += 1
        groups = plan_reduce(items, budget, words)
        assert len(groups) < len(items)  # every level shrinks
        assert [i for g in groups for i in g] == list(range(len(items)))
        nxt = []
        for g in groups:
            if len(g) == 1:
                nxt.append(items[g[0]])
                continue
            texts, _ = fit_group([items[i] for i in g], budget, words)
            assert sum(words(t) + 2 for t in texts) <= budget
            nxt.append(truncate_tokens(" ".join(texts), budget, words))  # worst-case answer
        items = nxt
        assert levels <= 60
