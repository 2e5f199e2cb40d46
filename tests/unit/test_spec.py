"""The job spec: the reference example is accepted; every mistake names its field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.engine.checks import check_spec
from schemas.export import spec_json_schema
from schemas.job import SpecError, load_spec, parse_spec

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "jobs" / "examples" / "nightly-tickets.yaml"


def base() -> dict[str, Any]:
    return yaml.safe_load(REFERENCE.read_text())


def problems(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(doc)
    return info.value.problems


def test_reference_spec_is_accepted_as_written() -> None:
    spec = load_spec(REFERENCE)
    assert spec.name == "nightly-tickets"
    # The real provider first: a copied spec must not send production rows to the simulator.
    assert [d.name for d in spec.tiers["flagship"]] == ["openai/gpt-4o", "openai/gpt-4.1"]
    assert {p.kind for p in spec.providers.values()} == {"openai"}
    assert spec.providers["openai"].limits.rpm == 500
    assert spec.routing.rules[1].when == "length(body) > 1500"
    assert spec.flagship().model == "gpt-4o"


@pytest.mark.parametrize("path", sorted((REPO / "jobs" / "examples").glob("*.yaml")))
def test_every_example_spec_validates(path: Path) -> None:
    load_spec(path)


def test_unknown_field_names_its_path() -> None:
    doc = base()
    doc["input"]["id_colum"] = "x"
    assert any(p.startswith("input.id_colum:") for p in problems(doc))


def test_tier_naming_unknown_provider() -> None:
    doc = base()
    doc["tiers"]["cheap"] = ["nope/gpt-4o-mini"]
    msg = " ".join(problems(doc))
    assert "'nope'" in msg and "tiers.cheap" in msg


def test_unparseable_rule_fails_with_the_rule() -> None:
    doc = base()
    doc["routing"]["rules"][0]["when"] = "priority ==== 'high'"
    assert any("routing.rules.0.when" in p and "priority ==== 'high'" in p for p in problems(doc))


def test_bad_uri_and_unknown_kind() -> None:
    doc = base()
    doc["input"]["uri"] = "gs://bucket/x"
    doc["providers"]["openai"]["kind"] = "carrier-pigeon"
    ps = problems(doc)
    assert any(p.startswith("input.uri:") and "gs" in p for p in ps)
    assert any(p.startswith("providers.openai.kind:") and "carrier-pigeon" in p for p in ps)


def test_key_itself_in_api_key_env_is_refused_without_echoing_it() -> None:
    doc = base()
    doc["providers"]["openai"]["api_key_env"] = "sk-live-abc123 secret"
    ps = problems(doc)
    assert any(p.startswith("providers.openai.api_key_env:") for p in ps)
    assert "sk-live-abc123" not in " ".join(ps)


def test_route_to_empty_tier_fails() -> None:
    doc = base()
    doc["tiers"].pop("mid")
    assert any("'mid'" in p for p in problems(doc))


def test_model_without_price_and_missing_key_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    doc = copy.deepcopy(base())
    doc["tiers"]["cheap"] = ["openai/no-such-model-7b"]
    ps = check_spec(parse_spec(doc))
    assert any(p.startswith("tiers.cheap.0:") and "no-such-model-7b" in p for p in ps)
    assert any("OPENAI_API_KEY" in p and "not set" in p for p in ps)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    ps = check_spec(parse_spec(doc))
    assert not any("OPENAI_API_KEY" in p for p in ps)
    assert not any("sk-test" in p for p in ps)


def test_exported_json_schema_is_current() -> None:
    committed = REPO / "schemas" / "job.schema.json"
    assert json.loads(committed.read_text()) == json.loads(spec_json_schema()), (
        "schemas/job.schema.json is stale: run `tierline schema --out schemas/job.schema.json`"
    )


def test_readme_configuration_reference_is_current() -> None:
    from schemas.export import spec_reference_markdown

    readme = (REPO / "README.md").read_text()
    start = readme.index("<!-- config-reference:start -->\n") + len(
        "<!-- config-reference:start -->\n"
    )
    end = readme.index("<!-- config-reference:end -->")
    assert readme[start:end] == spec_reference_markdown(), (
        "README's configuration reference is stale: regenerate it from schemas.export"
    )


def test_readme_output_columns_are_the_arrow_schemas() -> None:
    from schemas.export import output_columns_markdown, readme_section
    from schemas.records import COSTS, ERRORS, RESULTS

    readme = (REPO / "README.md").read_text()
    assert readme_section(readme, "output-columns") == output_columns_markdown(), (
        "README's output columns are stale: run "
        "`python -c 'from schemas.export import update_readme; update_readme()'`"
    )
    for schema in (RESULTS, COSTS, ERRORS):
        for field in schema:  # every column says what it means
            assert (field.metadata or {}).get(b"description"), field.name
            assert f"| `{field.name}` | {field.type} |" in readme


def test_price_overrides_change_costs_and_version_and_bad_ones_are_reported() -> None:
    doc = base()
    doc["tiers"]["cheap"] = ["openai/our-finetune-7b"]
    doc["prices"] = {
        "our-finetune-7b": {
            "input_per_mtok": 0.2,
            "output_per_mtok": 0.4,
            "context_window": 32768,
            "max_output_tokens": 4096,
            "provider_family": "mistral",
        },
        "gpt-4o": {"input_per_mtok": 2.0},
    }
    spec = parse_spec(doc)
    table = spec.price_table()
    assert table.lookup("our-finetune-7b").output_per_mtok == 0.4
    assert table.lookup("gpt-4o").input_per_mtok == 2.0 and "overrides" in table.version
    assert not [p for p in check_spec(spec) if "price" in p]
    # A bad entry fails with the spec, naming the model and the field: never at the
    # end of a job that has already spent.
    doc["prices"] = {"gpt-4o": {"input_per_mtok": -1}}
    with pytest.raises(SpecError, match=r"prices\.gpt-4o\.input_per_mtok"):
        parse_spec(doc)
    doc["prices"] = {"new-model": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}
    with pytest.raises(SpecError) as err:
        parse_spec(doc)
    for field in ("context_window", "max_output_tokens", "provider_family"):
        assert f"prices.new-model.{field}: required for a model" in str(err.value)
