"""The simulator's generated answers: pure functions, no server."""

from __future__ import annotations

from pipeline.sim.generate import (
    answer,
    classify,
    echo,
    input_tokens,
    parse_task,
    summarise,
    truncate_to_tokens,
)
from pipeline.tokens import count_tokens

LABELS_LINE = "Allowed labels: billing | technical | account | other"
SYSTEM = f"You sort support tickets.\n{LABELS_LINE}\nAnswer with the label only."
LABELS = ("billing", "technical", "account", "other")


def ask(text: str, *, system: str = SYSTEM, model: str = "m", accuracy: float = 1.0) -> str:
    return answer((("system", system), ("user", text)), model=model, seed=0, accuracy=accuracy)


def test_task_is_read_from_the_system_message() -> None:
    assert parse_task(SYSTEM).labels == LABELS
    assert parse_task("Summarise the text in at most 12 words.").max_words == 12
    assert parse_task("Be helpful.").kind == "echo"


def test_classify_picks_the_label_the_text_talks_about() -> None:
    assert ask("I was charged twice, the invoice billing is wrong") == "billing"
    assert ask("The app crashes with a technical error on startup") == "technical"
    assert ask("Cannot log into my account since yesterday, accounts locked") == "account"


def test_classify_matches_word_stems_and_five_letter_prefixes() -> None:
    assert classify("we were billed for nothing", LABELS) == "billing"  # stem bill-
    assert classify("our technician gave up", LABELS) == "technical"  # prefix techn
    assert classify("accounts frozen", LABELS) == "account"


def test_classify_without_a_match_answers_other_or_the_last_label() -> None:
    assert ask("hello there") == "other"
    assert classify("hello there", ("refund", "shipping")) == "shipping"


def test_classify_ties_go_to_the_first_label() -> None:
    assert classify("billing problem with my account", LABELS) == "billing"
    assert classify("account problem with my billing", LABELS) == "billing"


def test_answer_is_the_label_only() -> None:
    assert ask("technical question about billing and billing") == "billing"


def test_summary_respects_the_word_limit_and_keeps_whole_sentences() -> None:
    text = "The meeting moved to Friday. Bring the slides. Lunch is provided for everyone."
    assert summarise(text, 9) == "The meeting moved to Friday. Bring the slides."
    assert summarise(text, 5) == "The meeting moved to Friday."
    assert summarise(text, 3) == "The meeting moved"  # first sentence, cut


def test_summarise_request_uses_the_last_user_message() -> None:
    system = "Summarise the document in at most 6 words."
    text = "#Person1#: Where is the report?\n#Person2#: On your desk since Monday morning."
    out = ask(text, system=system)
    assert out == "#Person1#: Where is the report?"
    assert len(out.split()) <= 6


def test_other_prompts_get_the_first_twenty_words() -> None:
    text = " ".join(f"w{i}" for i in range(30))
    assert ask(text, system="Be concise.") == " ".join(f"w{i}" for i in range(20))
    assert echo("a  b\nc") == "a b c"


def test_answers_are_deterministic() -> None:
    assert ask("invoice billing", accuracy=0.3) == ask("invoice billing", accuracy=0.3)


def test_accuracy_makes_the_stated_share_of_answers_wrong() -> None:
    texts = [f"ticket {i}: my invoice billing was charged twice" for i in range(400)]
    answers = [ask(t, model="cheap", accuracy=0.7) for t in texts]
    wrong = [a for a in answers if a != "billing"]
    assert set(wrong) <= set(LABELS) - {"billing"}
    assert 0.2 <= len(wrong) / len(texts) <= 0.4
    # Another model gets other prompts wrong: the draw is per (model, prompt).
    other = [ask(t, model="mid", accuracy=0.7) for t in texts]
    assert other != answers
    assert all(ask(t, accuracy=0.0) != "billing" for t in texts[:50])


def test_input_tokens_are_content_plus_overheads() -> None:
    msgs = (("system", SYSTEM), ("user", "hello world"))
    expected = count_tokens(SYSTEM, "m") + count_tokens("hello world", "m") + 3 * 2 + 3
    assert input_tokens(msgs, "m") == expected


def test_truncate_keeps_a_prefix_within_max_tokens() -> None:
    text = "one two three four five six seven eight nine ten " * 20
    cut, tokens, was_cut = truncate_to_tokens(text, 7, "m")
    assert was_cut and tokens == 7
    assert text.startswith(cut) and cut
    assert count_tokens(cut, "m") <= 7
    assert truncate_to_tokens("short", 100, "m") == ("short", count_tokens("short", "m"), False)
