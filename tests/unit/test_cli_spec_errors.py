"""Every spec mistake the CLI can report says why and what to do, not only which field.

Each case starts from the demo spec, makes one mistake a new user makes, runs
`tierline validate` and checks the printed line holds the field, the reason and the fix.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli.app import app

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "jobs" / "examples" / "classify.yaml"

Doc = dict[str, Any]


def _set(path: str, value: object) -> Callable[[Doc], None]:
    def edit(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return edit


def _drop(path: str) -> Callable[[Doc], None]:
    def edit(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for p in parents:
            node = node[p]
        del node[last]

    return edit


def _add_paid_provider(doc: Doc) -> None:
    doc["providers"]["paid"] = {
        "kind": "openai",
        "base_url": "https://api.openai.com/v1",
        "api_key_env": "TIERLINE_TEST_UNSET_KEY",
    }
    doc["tiers"]["cheap"] = ["paid/gpt-4o-mini"]


def _new_model_without_all_fields(doc: Doc) -> None:
    doc["prices"] = {"my-finetune": {"input_per_mtok": 1.0}}
    doc["tiers"]["cheap"] = ["sim/my-finetune"]


def _summarise_with_canary(doc: Doc) -> None:
    doc["task"] = {"kind": "summarise"}
    doc["routing"]["canary"] = {"data": "golden.csv", "min_accuracy": 0.9}


# (mistake, edit, what the message must say: field, reason and fix)
CASES: list[tuple[str, Callable[[Doc], None], tuple[str, ...]]] = [
    (
        "typo in a field name",
        _set("input.id_colum", "ticket_id"),
        ("input.id_colum", "unknown field", "did you mean id_column?"),
    ),
    (
        "typo in a nested field",
        _set("run.worker", 4),
        ("run.worker", "unknown field", "did you mean workers?"),
    ),
    (
        "required field left out",
        _drop("input.id_column"),
        ("input.id_column", "required field is missing", "Column that identifies each row"),
    ),
    (
        "provider kind unknown",
        _set("providers.sim.kind", "openia"),
        ("providers.sim.kind", "unknown provider kind 'openia'", "known kinds: anthropic"),
    ),
    (
        "API key pasted instead of its variable name",
        _set("providers.sim.api_key_env", "sk-abc-123"),
        ("providers.sim.api_key_env", "NAME of an environment variable", "OPENAI_API_KEY"),
    ),
    (
        "tier names a provider not declared",
        _set("tiers.cheap", ["openai/gpt-4o-mini"]),
        ("tiers.cheap", "provider 'openai'", "not under providers (have: sim)"),
    ),
    (
        "deployment without its provider",
        _set("tiers.cheap", ["gpt-4o-mini"]),
        ("tiers.cheap.0", "must be 'provider/model'", "e.g. openai/gpt-4o-mini"),
    ),
    (
        "rule that does not parse",
        _set("routing.rules.0.when", "priority ==== 'high'"),
        ("routing.rules.0.when", "cannot parse rule", "e.g. priority = 'high'"),
    ),
    (
        "rows routed to an empty tier",
        _set("tiers.mid", []),
        ("routing", "tier 'mid'", "has no deployments", "tiers.mid: [provider/model]"),
    ),
    (
        "model without a price",
        _set("tiers.cheap", ["sim/gpt-9-mini"]),
        (
            "tiers.cheap.0",
            "no price for model 'gpt-9-mini'",
            "nearest known: gpt-5-mini",
            "under `prices:` in the job spec",
            "tierline prices import",
        ),
    ),
    (
        "new model priced with too few fields",
        _new_model_without_all_fields,
        ("prices.my-finetune.output_per_mtok", "required", "a model the table does not know"),
    ),
    (
        "key variable not set",
        _add_paid_provider,
        (
            "providers.paid.api_key_env",
            "TIERLINE_TEST_UNSET_KEY is not set",
            "export it",
            "--rehearse` runs this job on the built-in simulator",
        ),
    ),
    (
        "URI scheme not supported",
        _set("output.uri", "gs://bucket/out/"),
        ("output.uri", "scheme 'gs' is not supported", "use s3://bucket/prefix"),
    ),
    (
        "bucket name too short",
        _set("input.uri", "s3://ab/x/"),
        ("input.uri", "'ab'", "at least 3 characters"),
    ),
    (
        "mode auto without a deadline",
        _set("run.mode", "auto"),
        ("run", "mode auto needs a deadline", "deadline: 6h"),
    ),
    (
        "deadline in a form not understood",
        _set("run.deadline", "tomorrow"),
        ("run.deadline", "'tomorrow'", "give a duration ('45m', '6h', '1d')"),
    ),
    (
        "labels repeated",
        _set("task.labels", ["billing", "Billing"]),
        (
            "task.classify.labels",
            "unique (case-insensitive)",
        ),
    ),
    (
        "canary on a summary",
        _summarise_with_canary,
        ("routing.canary", "no single right answer", "remove routing.canary"),
    ),
    (
        "canary file missing",
        _set("routing.canary", {"data": "no-such-golden.csv", "min_accuracy": 0.9}),
        ("no-such-golden.csv", "file not found", "relative paths are taken from the current"),
    ),
    (
        "learned router file missing",
        lambda d: d["routing"].update(policy="learned", model="no-such-router.npz"),
        ("routing.model", "cannot load 'no-such-router.npz'", "tierline router train"),
    ),
    (
        "unknown prompt placeholder",
        _set("task.prompts", {"default": "Pick one of {labelz}."}),
        (
            "task.classify.prompts",
            "{labelz}",
        ),
    ),
]


@pytest.mark.parametrize(("mistake", "edit", "expected"), CASES, ids=[c[0] for c in CASES])
def test_validate_says_why_and_what_to_do(
    mistake: str,
    edit: Callable[[Doc], None],
    expected: tuple[str, ...],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("TIERLINE_TEST_UNSET_KEY", raising=False)
    doc = copy.deepcopy(yaml.safe_load(DEMO.read_text()))
    edit(doc)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    for part in expected:
        assert part in text, f"{mistake}: {part!r} not in {text!r}"
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, ("cannot read file", "No such file or directory")),
        ("name: [unclosed\n", ("not valid YAML", "line 1")),
        ("- just\n- a list\n", ("must be a YAML mapping",)),
    ],
    ids=["missing file", "broken YAML", "not a mapping"],
)
def test_unreadable_spec_says_why(
    content: str | None, expected: tuple[str, ...], tmp_path: Path
) -> None:
    path = tmp_path / "spec.yaml"
    if content is not None:
        path.write_text(content)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    for part in expected:
        assert part in text, text


def test_prices_show_an_unknown_model_names_the_nearest_and_both_fixes() -> None:
    result = CliRunner().invoke(app, ["prices", "show", "gpt-9-mini"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "nearest known: gpt-5-mini" in text
    assert "`prices:`" in text and "tierline prices import" in text
