"""Prompt variants per model family, and the version each one carries.

    key = resolve_variant({"default": "...", "claude": "..."}, "claude-3-5-haiku")  # 'claude'
    text = render("Pick one of {labels}.", {"labels": "a, b"})   # 'Pick one of a, b.'
    prompt_version(text)                                         # 'p-' + 8 hex

A task's `prompts` maps a model name or a family prefix to the instructions that model
gets. Resolution: the exact model name first, then the longest key the model name starts
with (`claude` matches `claude-3-5-haiku`), else `default`, which falls back to the task's
`instructions` when `prompts` has no `default` (so a spec without `prompts` sends what it
always sent). Variants are templates: `{labels}` (classify) and `{max_words}` (summarise)
are filled in; `{{name}}` writes a literal `{name}`; other braces are left as they are.
The task's `instructions` field stays plain text, as it always was.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Collection, Mapping

DEFAULT = "default"
# A placeholder is `{name}`; `{{name}}` escapes it. Anything else with braces (JSON in an
# example, say) is text, so a prompt need not escape every brace it shows.
_TOKEN = re.compile(r"\{\{([A-Za-z_]\w*)\}\}|\{([A-Za-z_]\w*)\}")
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")

PROMPTS_DESCRIPTION = (
    "Prompt variants by model name or family prefix, e.g. {default: ..., claude: ..., "
    "gpt-4o-mini: ...}; each replaces `instructions` for the models it matches. A model "
    "gets the variant keyed by its exact name, else the longest key its name starts with, "
    "else `default` (which is `instructions` when not given). Placeholders: {labels} "
    "(classify), {max_words} (summarise); {{name}} is a literal brace. Each variant's "
    "version (p- and 8 hex of the SHA-256 of its text as sent) is recorded in results and "
    "cost rows as prompt_version."
)


def placeholders_in(text: str) -> set[str]:
    """The placeholder names a template uses: `placeholders_in("{labels} x") == {"labels"}`."""
    return {m.group(2) for m in _TOKEN.finditer(text) if m.group(2)}


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill the placeholders; escaped `{{name}}` becomes `{name}`. KeyError on an unknown
    name (the spec's validation refuses those first)."""

    def one(m: re.Match[str]) -> str:
        return "{" + m.group(1) + "}" if m.group(1) else values[m.group(2)]

    return _TOKEN.sub(one, template)


def normalise_prompt(text: str) -> str:
    """What a version is computed from: NFC, LF line ends, no trailing blanks on lines,
    no blank lines at either end. Edits that change nothing a model reads keep the
    version."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def prompt_version(text: str) -> str:
    """A short stable name for a prompt's text: `p-` and 8 hex of SHA-256 (normalised)."""
    digest = hashlib.sha256(normalise_prompt(text).encode("utf-8")).hexdigest()
    return "p-" + digest[:8]


def resolve_variant(keys: Mapping[str, object] | set[str], model: str | None) -> str:
    """Which key of `prompts` a model gets: exact name, else the longest prefix, else
    `default` (returned even when absent: the caller falls back to `instructions`)."""
    if model is None:
        return DEFAULT
    names = [k for k in keys if k != DEFAULT]
    if model in names:
        return model
    prefixes = [k for k in names if model.startswith(k)]
    return max(prefixes, key=len) if prefixes else DEFAULT


def prompt_problems(
    prompts: Mapping[str, str], instructions: str, known: Collection[str]
) -> list[str]:
    """Problems of a task's `prompts`, each naming the variant and the fix. `known`: the
    placeholders this task kind fills."""
    problems: list[str] = []
    if DEFAULT in prompts and instructions.strip():
        problems.append(
            "default: the default prompt is given twice (also as task.instructions); "
            "keep one of them"
        )
    names = ", ".join("{" + n + "}" for n in sorted(known)) or "none for this task kind"
    for key, text in prompts.items():
        if not _KEY.match(key):
            problems.append(
                f"{key!r}: a key must be 'default', a model name or a family "
                "prefix (letters, digits, . _ - : / @; no spaces)"
            )
        if not text.strip():
            problems.append(f"{key}: empty prompt; write the instructions or drop the key")
        for name in sorted(placeholders_in(text) - set(known)):
            problems.append(
                f"{key}: unknown placeholder {{{name}}}; known: {names} "
                f"(write {{{{{name}}}}} for a literal brace)"
            )
    default = prompts.get(DEFAULT)
    if default is not None:
        wanted = placeholders_in(default) & set(known)
        for key, text in prompts.items():
            missing = wanted - placeholders_in(text)
            if key != DEFAULT and missing:
                shown = ", ".join("{" + n + "}" for n in sorted(missing))
                problems.append(
                    f"{key}: missing placeholder {shown} that the default variant uses; "
                    "add it so this variant gets the same facts"
                )
    return problems
