"""Offline tokenizers: exact ids, the model map, batches, estimates, and no network."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import polars as pl
import pytest
import tiktoken

from pipeline import tokens

REPO = Path(__file__).resolve().parents[2]

# Known ids, from OpenAI's cookbook "How to count tokens with tiktoken" and tiktoken's README.
KNOWN_IDS = [
    ("cl100k_base", "hello world", [15339, 1917]),
    ("cl100k_base", "tiktoken is great!", [83, 1609, 5963, 374, 2294, 0]),
    ("o200k_base", "tiktoken is great!", [83, 8251, 2488, 382, 2212, 0]),
]

TRICKY = [
    "",
    " ",
    "\n\n \n",
    "hello   \n  world  ",
    "It's DON'T we'LL",
    "1234567 89.5%",
    "日本語のテキストです。",
    "emoji 🎉🎉 done",
    "<|endoftext|> and <|endofprompt|> are text here",
    "a\r\nb\r\n",
    "HTTPServer XMLHttpRequest foo//bar\n\n",
    "ÀÉÎ ñ café naïve",
    " " * 300 + "y",
]


@pytest.mark.parametrize(("encoding", "text", "ids"), KNOWN_IDS)
def test_known_ids(encoding: str, text: str, ids: list[int]) -> None:
    enc = tokens.get_encoding(encoding)
    assert enc.encode_ordinary(text) == ids
    assert enc.decode(ids) == text


def test_hello_world_is_two_tokens() -> None:
    assert tokens.count_tokens("hello world", "gpt-4") == 2
    assert tokens.count_tokens("hello world", "gpt-4o") == 2


@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
def test_ids_agree_with_an_independent_tokenizer(encoding: str) -> None:
    # bpe_openai's Rust tokenizer splits and merges with its own code, from the same data.
    with warnings.catch_warnings():  # its __init__ uses a deprecated importlib API
        warnings.simplefilter("ignore", DeprecationWarning)
        from bpe_openai import _bindings

    other = _bindings.tokenizer_for_encoding(encoding)
    enc = tokens.get_encoding(encoding)
    for text in TRICKY:
        assert enc.encode_ordinary(text) == other.encode(text), repr(text)


@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
def test_split_pattern_and_specials_match_tiktoken(
    encoding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run tiktoken's own constructor with its download replaced, to compare what we copied.
    from tiktoken_ext import openai_public

    pinned: list[str | None] = []

    def no_download(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        pinned.append(expected_hash)
        return {}

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", no_download)
    reference = getattr(openai_public, encoding)()
    ours = tokens._SOURCES[encoding]
    assert ours.pat_str == reference["pat_str"]
    assert ours.special_tokens == reference["special_tokens"]
    assert pinned == [ours.sha256]


def test_encoding_is_built_once_across_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_ENCODINGS", {})
    calls: list[str] = []
    real = tokens._load_ranks

    def counting(source: tokens._Source) -> dict[bytes, int]:
        calls.append(source.file)
        return real(source)

    monkeypatch.setattr(tokens, "_load_ranks", counting)
    got: list[tiktoken.Encoding] = []
    threads = [
        threading.Thread(target=lambda: got.append(tokens.get_encoding("cl100k_base")))
        for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["cl100k_base.tiktoken.gz"]
    assert len({id(e) for e in got}) == 1


def test_unknown_encoding() -> None:
    with pytest.raises(KeyError, match="p50k_base"):
        tokens.get_encoding("p50k_base")


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("o1-mini", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-1106-preview", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo-1106", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("claude-3-5-haiku", None),
        ("meta/llama-2-70b-chat", None),
        ("mistralai/mixtral-8x7b-chat", None),
    ],
)
def test_encoding_for_model(model: str, expected: str | None) -> None:
    assert tokens.encoding_for_model(model) == expected
    if expected is not None and not model.startswith("openai/"):
        # tiktoken's own (offline) model map agrees.
        assert tiktoken.encoding_name_for_model(model) == expected


def test_special_tokens_in_user_text_are_ordinary_text() -> None:
    text = "ignore this <|endoftext|> please"
    n = tokens.count_tokens(text, "gpt-4o")
    assert n == len(tokens.get_encoding("o200k_base").encode(text, disallowed_special=()))
    assert n > 4  # spelled out, not the single special token


def _fuzzed(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    pieces = [*"abcXYZ  \n\n\t\r.,;:'\"!?-_/\\0123456789", "é", "ß", "中", "文", "🙂"]
    pieces += ["👍🏽", "\u200b", "\u0627", "'s", "'LL", "<|endoftext|>", "  ", "\r\n", "Ω"]
    pieces += ["\u0301", "ㄱ", "ü"]
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 60))) for _ in range(n)]


@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
def test_fast_counter_counts_what_tiktoken_encodes(encoding: str) -> None:
    # The hot path counts with the Rust counter; tiktoken is the reference it must match.
    count = tokens.token_counter(encoding)
    enc = tokens.get_encoding(encoding)
    texts = [*TRICKY, *_fuzzed(3000), "a" * 20_000, "1234567890" * 500]
    texts += [(REPO / "README.md").read_text()]
    wrong = [t for t in texts if count(t) != len(enc.encode_ordinary(t))]
    assert wrong == []


def test_counts_fall_back_to_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_COUNTERS", {})
    monkeypatch.setattr(tokens, "_rust_counter", lambda name: None)
    texts = [*TRICKY, "plain words"]
    counts, _ = tokens.count_tokens_batch(texts, "gpt-4o")
    enc = tokens.get_encoding("o200k_base")
    assert counts.to_list() == [len(enc.encode_ordinary(t)) for t in texts]
    assert tokens.token_counter("o200k_base").__name__ == "<lambda>"


def test_batch_equals_rows_and_handles_none() -> None:
    texts: list[str | None] = [*TRICKY, None, "plain words"]
    for model in ("gpt-4o-mini", "gpt-3.5-turbo"):
        counts, method = tokens.count_tokens_batch(texts, model)
        assert counts.dtype == pl.Int64
        assert counts.to_list() == [tokens.count_tokens(t or "", model) for t in texts]
        assert counts[0] == 0 and counts[len(TRICKY)] == 0
        assert method == f"tiktoken:{tokens.encoding_for_model(model)}"


def test_batch_accepts_a_series_and_empty_input() -> None:
    series = pl.Series("text", ["hello world", None, ""])
    assert tokens.count_tokens_batch(series, "gpt-4o")[0].to_list() == [2, 0, 0]
    assert tokens.count_tokens_batch(series, "claude-3-haiku")[0].to_list() == [4, 0, 0]
    counts, method = tokens.count_tokens_batch([], "gpt-4o")
    assert counts.len() == 0 and method == "tiktoken:o200k_base"
    assert tokens.count_tokens_batch([], "claude-3-haiku")[0].len() == 0


def test_estimates_per_family() -> None:
    assert tokens.estimate_tokens(0) == 0
    assert tokens.estimate_tokens(35, "anthropic") == 10
    assert tokens.estimate_tokens(36, "anthropic") == 11  # rounds up
    assert tokens.estimate_tokens(38, "meta") == 10
    assert tokens.estimate_tokens(40) == 10
    assert tokens.estimate_tokens(40, "someone-new") == 10
    lengths = pl.Series([0, 35, 36])
    assert tokens.estimate_tokens(lengths, "anthropic").to_list() == [0, 10, 11]


def test_estimate_methods_and_counts() -> None:
    text = "x" * 70
    assert tokens.count_tokens(text, "claude-3-5-haiku") == 20
    assert tokens.count_tokens(text, "mistralai/mistral-7b-chat") == 19  # 70 / 3.8
    assert tokens.count_tokens(text, "zero-one-ai/Yi-34B-Chat") == 18  # 70 / 4
    assert tokens.count_tokens(text, "zero-one-ai/Yi-34B-Chat", family="anthropic") == 20
    assert tokens.count_tokens("", "claude-3-5-haiku") == 0
    assert tokens.token_method("claude-3-5-haiku") == "estimate:chars/3.5"
    assert tokens.token_method("meta/llama-2-70b-chat") == "estimate:chars/3.8"
    assert tokens.token_method("zero-one-ai/Yi-34B-Chat") == "estimate:chars/4"
    assert tokens.token_method("my-model", family="mistral") == "estimate:chars/3.8"
    batch, method = tokens.count_tokens_batch([text, None], "claude-3-5-haiku")
    assert batch.to_list() == [20, 0] and method == "estimate:chars/3.5"


def test_chat_overhead() -> None:
    assert tokens.chat_overhead_tokens(1) == 6
    assert tokens.chat_overhead_tokens(2) == 9
    with pytest.raises(ValueError):
        tokens.chat_overhead_tokens(-1)


def test_loads_with_the_network_cut_off(tmp_path: Path) -> None:
    """A fresh process with sockets disabled and an empty tiktoken cache still counts."""
    script = textwrap.dedent(
        """
        import socket

        def refuse(*args, **kwargs):
            raise OSError("network disabled in this test")

        socket.socket = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse

        import tiktoken
        try:  # proves the cut works: tiktoken itself must download and fail
            tiktoken.get_encoding("cl100k_base")
        except Exception:
            pass
        else:
            raise SystemExit("tiktoken loaded without the network; the test proves nothing")

        from pipeline import tokens
        assert tokens.count_tokens("hello world", "gpt-4") == 2
        assert tokens.count_tokens("tiktoken is great!", "gpt-4o") == 6
        print("ok")
        """
    )
    env = {
        **os.environ,
        "TIKTOKEN_CACHE_DIR": str(tmp_path / "empty-cache"),
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
