"""Token counts that work offline: exact for OpenAI models, a stated estimate otherwise.

    count_tokens("hello world", "gpt-4o")                # 2
    counts, method = count_tokens_batch(texts, "gpt-4o-mini")
    method                                               # 'tiktoken:o200k_base'
    count_tokens_batch(texts, "claude-3-5-haiku")[1]     # 'estimate:chars/3.5'

tiktoken downloads its BPE files on first use, which fails without a network. The same
files ship inside the `bpe_openai` package (gzip'd, byte-identical: their SHA-256 is the one
tiktoken pins), so we read them from there and build `tiktoken.Encoding` directly with the
split pattern and special tokens of `tiktoken_ext.openai_public`. Nothing here opens a
socket. Each encoding is built once per process, on first use (about 0.1 s for
cl100k_base, 0.25 s for o200k_base).

Counting (as opposed to encoding) goes through bpe_openai's Rust counter for the same two
encodings: it gives tiktoken's counts (a test compares them on real and fuzzed text) at
1.4-1.9x the speed, and needs no token list. tiktoken stays the reference, and the
fallback when the counter cannot be loaded.

Every count carries its method, and the cost row records it (`token_method`), so an
estimate is never mistaken for a measurement.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.machinery
import importlib.util
import math
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

import polars as pl
import tiktoken

_DATA_PACKAGE = "bpe_openai"

_ENDOFTEXT = "<|endoftext|>"
_FIM_PREFIX = "<|fim_prefix|>"
_FIM_MIDDLE = "<|fim_middle|>"
_FIM_SUFFIX = "<|fim_suffix|>"
_ENDOFPROMPT = "<|endofprompt|>"


@dataclass(frozen=True)
class _Source:
    """Where an encoding's ranks live, what they must hash to, and how text is split.

    pat_str and special_tokens are copied from tiktoken_ext.openai_public (tiktoken 0.14);
    tests/unit/test_tokens.py checks that they still match. sha256 is the hash tiktoken
    pins for the uncompressed file it would have downloaded."""

    file: str
    sha256: str
    pat_str: str
    special_tokens: dict[str, int] = field(default_factory=dict)


_SOURCES: dict[str, _Source] = {
    "cl100k_base": _Source(
        file="cl100k_base.tiktoken.gz",
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=(
            r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+"""
            r"""| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
        ),
        special_tokens={
            _ENDOFTEXT: 100257,
            _FIM_PREFIX: 100258,
            _FIM_MIDDLE: 100259,
            _FIM_SUFFIX: 100260,
            _ENDOFPROMPT: 100276,
        },
    ),
    "o200k_base": _Source(
        file="o200k_base.tiktoken.gz",
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str="|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        special_tokens={_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
    ),
}

# Model-name prefixes -> encoding, first match wins (so gpt-4o before gpt-4). Mirrors
# tiktoken.model for the two encodings we ship; a test keeps the two in step.
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-4o", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("gpt-35-turbo", "cl100k_base"),
    ("text-embedding-3", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
)

# Characters per token, for models whose tokenizer we do not ship. Measured ratios on
# English prose; code, numbers and non-Latin scripts run denser (fewer chars per token),
# so treat these as a planning estimate, not a bill.
CHARS_PER_TOKEN: dict[str, float] = {
    "anthropic": 3.5,
    "meta": 3.8,
    "mistral": 3.8,
    "default": 4.0,
}

# Name fragments -> family, for callers that do not pass the price table's provider_family.
_FAMILY_HINTS: tuple[tuple[str, str], ...] = (
    ("claude", "anthropic"),
    ("llama", "meta"),
    ("wizardlm", "meta"),
    ("mistral", "mistral"),
    ("mixtral", "mistral"),
)

_LOCK = threading.Lock()
_ENCODINGS: dict[str, tiktoken.Encoding] = {}


def _data_file(name: str) -> Path:
    # Located, not imported: bpe_openai's __init__ builds all of its vocabularies (~0.4 s)
    # and emits a DeprecationWarning. It ships a compiled extension, so it is never zipped.
    spec = importlib.util.find_spec(_DATA_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("bpe-openai is not installed; it ships the offline tokenizer data")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / name


def _load_ranks(source: _Source) -> dict[bytes, int]:
    path = _data_file(source.file)
    data = gzip.decompress(path.read_bytes())
    digest = hashlib.sha256(data).hexdigest()
    if digest != source.sha256:
        raise RuntimeError(
            f"{path} hashes to {digest}, expected {source.sha256}: "
            "the bpe-openai package is damaged or changed its data"
        )
    ranks: dict[bytes, int] = {}
    # Same format and parse as tiktoken.load.load_tiktoken_bpe: "<base64 token> <rank>".
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


_COUNTERS: dict[str, Callable[[str], int]] = {}


def _rust_counter(name: str) -> Callable[[str], int] | None:
    """bpe_openai's compiled counter for `name`, loaded from its extension module alone
    (the package's __init__ builds every vocabulary in Python and warns); None if absent.
    The module is registered under its own name, so a later `import bpe_openai` reuses it
    (a compiled module may be initialised only once per process)."""
    module_name = f"{_DATA_PACKAGE}._bindings"
    try:
        module = sys.modules.get(module_name)
        if module is None:
            spec = importlib.util.find_spec(_DATA_PACKAGE)
            if spec is None or not spec.submodule_search_locations:
                return None
            folder = Path(next(iter(spec.submodule_search_locations)))
            binary = next(iter(sorted(folder.glob("_bindings*"))), None)
            if binary is None:
                return None
            loader = importlib.machinery.ExtensionFileLoader(module_name, str(binary))
            module_spec = importlib.util.spec_from_loader(module_name, loader)
            assert module_spec is not None
            module = importlib.util.module_from_spec(module_spec)
            loader.exec_module(module)
            sys.modules[module_name] = module
        counter: Callable[[str], int] = module.tokenizer_for_encoding(name).count
    except Exception:  # whatever went wrong loading it, tiktoken still counts
        return None
    return counter


def token_counter(name: str) -> Callable[[str], int]:
    """A function text -> token count under encoding `name`, equal to
    `len(get_encoding(name).encode_ordinary(text))`, the fastest one available."""
    counter = _COUNTERS.get(name)
    if counter is not None:
        return counter
    if name not in _SOURCES:
        raise KeyError(f"no offline encoding {name!r}; shipped: {sorted(_SOURCES)}")
    with _LOCK:
        counter = _COUNTERS.get(name)
        if counter is None:
            counter = _rust_counter(name)
            if counter is None:
                encode = get_encoding(name).encode_ordinary
                counter = lambda text: len(encode(text))  # noqa: E731
            _COUNTERS[name] = counter
    return counter


def get_encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken encoding `name` (cl100k_base or o200k_base), built offline, once."""
    enc = _ENCODINGS.get(name)
    if enc is not None:
        return enc
    source = _SOURCES.get(name)
    if source is None:
        raise KeyError(f"no offline encoding {name!r}; shipped: {sorted(_SOURCES)}")
    with _LOCK:
        enc = _ENCODINGS.get(name)
        if enc is None:
            enc = tiktoken.Encoding(
                name=name,
                pat_str=source.pat_str,
                mergeable_ranks=_load_ranks(source),
                special_tokens=dict(source.special_tokens),
            )
            _ENCODINGS[name] = enc
    return enc


def encoding_for_model(model: str) -> str | None:
    """The tiktoken encoding name for an OpenAI model, None for every other model.

    encoding_for_model("gpt-4o-mini")  # 'o200k_base'
    encoding_for_model("claude-3-haiku")  # None
    """
    name = model.removeprefix("openai/")
    for prefix, encoding in _PREFIXES:
        if name.startswith(prefix):
            return encoding
    return None


def family_for_model(model: str) -> str:
    """A best guess at the model's family from its name, for the chars-per-token estimate."""
    if encoding_for_model(model) is not None:
        return "openai"
    lowered = model.lower()
    for hint, family in _FAMILY_HINTS:
        if hint in lowered:
            return family
    return "default"


def _ratio(family: str) -> float:
    return CHARS_PER_TOKEN.get(family, CHARS_PER_TOKEN["default"])


@overload
def estimate_tokens(text_len_chars: int, family: str = ...) -> int: ...
@overload
def estimate_tokens(text_len_chars: pl.Series, family: str = ...) -> pl.Series: ...
def estimate_tokens(text_len_chars: int | pl.Series, family: str = "default") -> int | pl.Series:
    """An ESTIMATE of the token count from the length in characters: ceil(chars / ratio).

    The ratio is per family (`CHARS_PER_TOKEN`: anthropic 3.5, meta and mistral 3.8,
    anything else 4.0). Use it for models whose tokenizer is not shipped; the cost row
    then carries `estimate:chars/<ratio>` as its token method. Takes an int, or a polars
    Series of lengths (returns Int64).
    """
    ratio = _ratio(family)
    if isinstance(text_len_chars, pl.Series):
        return (text_len_chars / ratio).ceil().cast(pl.Int64)
    return math.ceil(text_len_chars / ratio)


def token_method(model: str, family: str | None = None) -> str:
    """How tokens of `model` are counted: 'tiktoken:<encoding>' or 'estimate:chars/<ratio>'."""
    encoding = encoding_for_model(model)
    if encoding is not None:
        return f"tiktoken:{encoding}"
    return f"estimate:chars/{_ratio(family or family_for_model(model)):g}"


def count_tokens(text: str, model: str, family: str | None = None) -> int:
    """Tokens in `text` for `model`: exact for OpenAI models, else `estimate_tokens`.

    Special-token strings in the text ("<|endoftext|>") count as ordinary text, as the
    provider bills user content. `family` (the price table's provider_family) picks the
    estimate's ratio; without it the family is guessed from the name.
    """
    if not text:
        return 0
    encoding = encoding_for_model(model)
    if encoding is not None:
        return token_counter(encoding)(text)
    return estimate_tokens(len(text), family or family_for_model(model))


def count_tokens_batch(
    texts: Sequence[str | None] | pl.Series, model: str, family: str | None = None
) -> tuple[pl.Series, str]:
    """Token counts (an Int64 Series, None and "" count 0) and the method that made them.

        counts, method = count_tokens_batch(frame["text"], "gpt-4o")
        frame = frame.with_columns(input_tokens=counts)

    Exact counts call `token_counter` (bpe_openai's Rust counter) in a plain loop: 250,000
    rows/s (o200k_base) and 260,000 (cl100k_base) on 260-character tickets, against 180,000
    and 138,000 for tiktoken's `encode_ordinary`. Earlier measurements of tiktoken's
    own options, 50,000 English-like rows of 280 characters, rows/s (best of 3, two runs):
                                              o200k_base    cl100k_base
        loop of encode_ordinary                 ~144,000        ~92,000
        encode_ordinary_batch(num_threads=1)     ~29,000        ~21,000-28,000
        encode_ordinary_batch(num_threads=2)     ~32,000-37,000 ~27,000-29,000
        2 threads, each looping half the rows   ~109,000-137,000 ~100,000
    The batch API submits one thread-pool task per row and that overhead dwarfs the BPE;
    hand-split halves gain nothing reliable on two cores. The Rust counter holds the GIL,
    so threads do not help it either; the forecast spreads units over processes instead.
    Estimates are one vectorised polars length expression.
    """
    method = token_method(model, family)
    encoding = encoding_for_model(model)
    if encoding is not None:
        count = token_counter(encoding)
        rows = texts.to_list() if isinstance(texts, pl.Series) else texts
        counts = [count(t) if t else 0 for t in rows]
        return pl.Series("tokens", counts, dtype=pl.Int64), method
    series = texts if isinstance(texts, pl.Series) else pl.Series(texts, dtype=pl.String)
    lengths = series.cast(pl.String).str.len_chars().fill_null(0)
    return estimate_tokens(lengths, family or family_for_model(model)).alias("tokens"), method


def chat_overhead_tokens(n_messages: int) -> int:
    """Tokens an OpenAI chat request adds around its messages' text: 3 per message (role
    and separators) plus 3 that prime the reply (OpenAI cookbook, "How to count tokens")."""
    if n_messages < 0:
        raise ValueError("n_messages must be >= 0")
    return 3 * n_messages + 3
