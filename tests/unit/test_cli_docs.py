"""What the README, the infra docs and the CLI's own texts show a user to type exists.

Every `tierline ...` command line in the README (code blocks and inline code), in infra's
docs and scripts, and in the CLI's help and messages names a real command, and every
option it shows is an option of that command. Every `--option` any message of the
package mentions is an option of some command. Boolean options show as flags.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from pipeline.cli.app import app

REPO = Path(__file__).resolve().parents[2]
ROOT = typer.main.get_command(app)
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
INVOCATION = re.compile(r"(?:^|[\s`(=:])(?:\S*/)?tierline\s+([^`#|;&\"'\n]*)")


def _subcommands(command: Any) -> dict[str, Any]:
    # typer carries its own copy of click: a group is whatever has subcommands.
    return dict(getattr(command, "commands", None) or {})


def _options(command: Any) -> set[str]:
    found = {"--help"}
    for p in command.params:
        found |= {o for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}
    return found


def _resolve(words: list[str]) -> tuple[Any, list[str]]:
    """The command the words name (a group's subcommands followed), and what is left."""
    command: Any = ROOT
    rest = list(words)
    while rest and rest[0] in _subcommands(command):
        command = _subcommands(command)[rest.pop(0)]
    return command, rest


def _all_options(command: Any = ROOT) -> set[str]:
    found = _options(command)
    for sub in _subcommands(command).values():
        found |= _all_options(sub)
    return found


def _invocations(text: str) -> Iterator[str]:
    for m in INVOCATION.finditer(text):
        yield m.group(1)


def _check(where: str, invocation: str) -> list[str]:
    """Problems of one `tierline ...` line: options its command does not have. Prose that
    merely says "tierline" (no command word after it) is not a command line."""
    words = invocation.split()
    command, rest = _resolve(words)
    if command is ROOT and words[:1] not in (["--version"], ["--help"]):
        return []
    have = _options(command)
    wrong = [o for o in OPTION.findall(" ".join(rest)) if o not in have]
    name = " ".join(words[: len(words) - len(rest)]) or "tierline"
    return [f"{where}: `tierline {invocation.strip()}`: {name} has no {o}" for o in wrong]


def _doc_texts() -> Iterator[tuple[str, str]]:
    yield "README.md", (REPO / "README.md").read_text()
    for path in sorted((REPO / "infra").rglob("*")):
        if path.suffix in (".md", ".sh", ".yaml") and path.is_file():
            yield str(path.relative_to(REPO)), path.read_text()


def _strings(path: Path) -> Iterator[str]:
    """The string literals of a Python file (help texts, messages, docstrings)."""
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    kinds = {tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}
    yield from (tok.string for tok in tokens if tok.type in kinds)


def test_every_command_line_in_the_docs_exists() -> None:
    problems: list[str] = []
    for where, text in _doc_texts():
        for line_no, line in enumerate(text.splitlines(), 1):
            for inv in _invocations(line):
                problems += _check(f"{where}:{line_no}", inv)
    assert problems == []


def test_every_command_line_in_the_cli_texts_exists() -> None:
    problems: list[str] = []
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        for s in _strings(path):
            for line in s.splitlines():
                for inv in _invocations(line):
                    problems += _check(str(path.relative_to(REPO)), inv)
    assert problems == []


def test_every_option_a_message_names_exists() -> None:
    known = _all_options()
    wrong = {
        f"{path.relative_to(REPO)}: {o}"
        for path in sorted((REPO / "pipeline" / "cli").rglob("*.py"))
        for s in _strings(path)
        for o in OPTION.findall(s)
        if o not in known
    }
    assert wrong == set()


def test_the_check_catches_a_misnamed_option() -> None:
    assert _check("x", "router train --runs out/job-1 --out r.npz")
    assert _check("x", "forecast SPEC --inputs s3://b/x/")
    assert not _check("x", "forecast SPEC --input s3://b/x/ --output out/")


def _help(args: list[str]) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_flags_show_as_flags() -> None:
    for args in (["run"], ["verify"], ["router", "train"], []):
        text = _help(args)
        assert "<bool>" not in text, text


@pytest.mark.parametrize("flag", ["--version"])
def test_version(flag: str) -> None:
    result = CliRunner().invoke(app, [flag])
    assert result.exit_code == 0
    assert re.fullmatch(r"tierline \S+\n", result.output)
