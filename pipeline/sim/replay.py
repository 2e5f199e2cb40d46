"""Recorded answers, served instead of generated ones when `SimConfig.replay_dir` is set.

The folder holds two Parquet files (the RouterBench layout):

- `prompts.parquet`: sample_id, eval_name, split, prompt
- `responses.parquet`: sample_id, model, response, correct, cost_usd

    table = ReplayTable.load(folder)
    hit = table.lookup("gpt-4-1106-preview", prompt_text)   # None: nothing recorded

A request is matched on (model, its last user message), compared with surrounding
whitespace stripped. When two samples share one prompt, the first in prompts.parquet wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

PROMPTS_FILE = "prompts.parquet"
RESPONSES_FILE = "responses.parquet"
_PROMPT_COLUMNS = ("sample_id", "prompt")
_RESPONSE_COLUMNS = ("sample_id", "model", "response", "cost_usd")


class ReplayDataError(ValueError):
    """The replay folder is missing a file or a column."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """One recorded answer."""

    sample_id: str
    response: str
    cost_usd: float | None


def _read(path: Path, columns: tuple[str, ...]) -> dict[str, list[object]]:
    if not path.is_file():
        raise ReplayDataError(f"replay file {path} does not exist")
    names = pq.read_schema(path).names
    missing = [c for c in columns if c not in names]
    if missing:
        raise ReplayDataError(f"replay file {path} lacks column(s) {', '.join(missing)}")
    return pq.read_table(path, columns=list(columns)).to_pydict()


class ReplayTable:
    """(model, prompt) -> recorded answer, built once per folder."""

    def __init__(self, entries: dict[tuple[str, str], Recorded]) -> None:
        self._entries = entries
        self._models = sorted({model for model, _ in entries})

    @classmethod
    def load(cls, folder: Path) -> ReplayTable:
        """Read and index the two files; raises `ReplayDataError` when they are unusable."""
        prompts = _read(folder / PROMPTS_FILE, _PROMPT_COLUMNS)
        responses = _read(folder / RESPONSES_FILE, _RESPONSE_COLUMNS)
        prompt_of: dict[str, tuple[int, str]] = {}
        for position, (sid, prompt) in enumerate(
            zip(prompts["sample_id"], prompts["prompt"], strict=True)
        ):
            if sid is not None and prompt is not None and str(sid) not in prompt_of:
                prompt_of[str(sid)] = (position, str(prompt).strip())
        entries: dict[tuple[str, str], Recorded] = {}
        first: dict[tuple[str, str], int] = {}
        rows = zip(
            responses["sample_id"],
            responses["model"],
            responses["response"],
            responses["cost_usd"],
            strict=True,
        )
        for sid, model, response, cost in rows:
            found = prompt_of.get(str(sid))
            if found is None or model is None or response is None:
                continue
            position, prompt = found
            key = (str(model), prompt)
            if key in first and first[key] <= position:
                continue
            first[key] = position
            cost_usd = float(cost) if isinstance(cost, int | float) else None
            entries[key] = Recorded(str(sid), str(response), cost_usd)
        return cls(entries)

    def lookup(self, model: str, prompt: str) -> Recorded | None:
        return self._entries.get((model, prompt.strip()))

    def models(self) -> list[str]:
        """Every model with at least one recorded answer, sorted."""
        return list(self._models)

    def __len__(self) -> int:
        return len(self._entries)
