"""A second set of prompt variants to compare with the spec's own (`--prompts-from`).

    other = load_prompts(Path("v2.yaml"), spec)     # PromptSet(source='v2.yaml', task=...)
    get_job_kind(other.task).prompt("gpt-4o-mini").version

The file is another job spec (its task's `prompts` and `instructions` are taken), a YAML
or JSON mapping of variants (`{default: ..., claude: ...}`), or any other text file, whose
whole text is the default prompt. The variants are checked as the spec checks its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from pipeline.errors import ConfigError
from schemas.job import AnyTask, JobSpec
from schemas.prompts import DEFAULT

TaskSpec = AnyTask


class PromptsFromError(ConfigError):
    """The file of prompts to compare cannot be used (names the file and the fix)."""


@dataclass(frozen=True)
class PromptSet:
    source: str  # how the table names it: 'spec' or the file's name
    task: TaskSpec


def _variants(path: Path, text: str) -> tuple[dict[str, str], str]:
    """(prompts, instructions) from the file's text."""
    if path.suffix.lower() not in (".yaml", ".yml", ".json"):
        return {DEFAULT: text}, ""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise PromptsFromError(f"{path}: not valid YAML ({first}); fix the file") from None
    if isinstance(doc, str):
        return {DEFAULT: doc}, ""
    if not isinstance(doc, dict):
        raise PromptsFromError(
            f"{path}: expected a job spec or a mapping of prompt variants "
            "({default: ..., claude: ...})"
        )
    if "task" in doc:  # another job spec: its task's prompts
        task = doc["task"]
        if not isinstance(task, dict):
            raise PromptsFromError(f"{path}: task must be a mapping; fix the spec")
        prompts = task.get("prompts") or {}
        if not isinstance(prompts, dict):
            raise PromptsFromError(f"{path}: task.prompts must be a mapping of variants")
        return {str(k): str(v) for k, v in prompts.items()}, str(task.get("instructions") or "")
    bad = [str(k) for k, v in doc.items() if not isinstance(v, str)]
    if bad:
        raise PromptsFromError(
            f'{path}: variant(s) {", ".join(bad)} must be text; write each as key: "..."'
        )
    return {str(k): v for k, v in doc.items()}, ""


def load_prompts(path: Path, spec: JobSpec) -> PromptSet:
    """The spec's task with the file's prompt variants in place of its own."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PromptsFromError(f"{path}: cannot read it ({exc.strerror}); check the path") from None
    prompts, instructions = _variants(path, text)
    doc = spec.task.model_dump(mode="json")
    doc.update(prompts=prompts, instructions=instructions)
    try:
        task = type(spec.task).model_validate(doc)
    except ValidationError as exc:
        reasons = "; ".join(
            e["msg"].removeprefix("Value error, ")
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise PromptsFromError(f"{path}: prompts: {reasons}") from None
    return PromptSet(source=path.name, task=task)
