"""An azure provider in the job spec: what it needs, and each mistake named with its fix
before any call is made."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.job import SpecError, parse_spec
from tests.integration.helpers import spec_doc

AZURE: dict[str, Any] = {
    "kind": "azure",
    "base_url": "https://my-resource.openai.azure.com",
    "api_key_env": "AZURE_OPENAI_API_KEY",
    "azure": {
        "api_version": "2024-10-21",
        "deployments": {"gpt-4o-mini": "mini-prod", "gpt-4o": "big-prod"},
    },
}


def doc(provider: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    tiers = {"cheap": ["azure/gpt-4o-mini"], "flagship": ["azure/gpt-4o"]}
    routing = {"policy": "rules", "default": "cheap"}
    parts = {"providers": {"azure": provider or AZURE}, "tiers": tiers, "routing": routing}
    return spec_doc("in", "out", **(parts | overrides))


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return info.value.problems


def test_an_azure_provider_with_a_deployment_per_model_validates() -> None:
    spec = parse_spec(doc())
    azure = spec.providers["azure"].azure
    assert azure is not None and azure.deployments["gpt-4o"] == "big-prod"


def test_a_routed_model_without_a_deployment_names_the_entry_to_add() -> None:
    data = doc(tiers={"cheap": ["azure/gpt-4o-mini"], "flagship": ["azure/gpt-4.1"]})
    found = problems(data)
    assert len(found) == 1
    assert found[0].startswith("tiers.flagship: 'azure/gpt-4.1'")
    assert "add providers.azure.azure.deployments.gpt-4.1: <deployment name>" in found[0]


@pytest.mark.parametrize(
    ("change", "field", "fix"),
    [
        ({"azure": None}, "providers.azure", "needs azure: {api_version"),
        ({"api_key_env": None}, "providers.azure", "AZURE_OPENAI_API_KEY"),
        (
            {"base_url": "https://r.openai.azure.com/openai/deployments/x"},
            "providers.azure",
            "give the resource endpoint only",
        ),
        (
            {"azure": {"api_version": "latest", "deployments": {"gpt-4o": "x"}}},
            "providers.azure.azure.api_version",
            "write a date such as 2024-10-21",
        ),
        (
            {"azure": {"api_version": "2024-10-21", "deployments": {"gpt-4o": "a/b"}}},
            "providers.azure.azure.deployments",
            "copy the name from the deployment's page",
        ),
    ],
)
def test_each_azure_mistake_names_its_field_and_fix(
    change: dict[str, Any], field: str, fix: str
) -> None:
    provider = {k: v for k, v in (AZURE | change).items() if v is not None}
    found = " | ".join(problems(doc(provider)))
    assert field in found and fix in found


def test_azure_options_belong_to_azure_providers_only() -> None:
    other = {"kind": "openai", "base_url": "https://api.openai.com/v1", "azure": AZURE["azure"]}
    found = problems(doc(other, tiers={"cheap": ["azure/gpt-4o-mini"]}))
    assert any("only a provider of kind azure takes it" in p for p in found)


def test_batch_mode_is_refused_for_azure_and_auto_is_not() -> None:
    found = problems(doc(run={"mode": "batch"}))
    assert any(p.startswith("run.mode:") and "'azure' (kind azure)" in p for p in found)
    auto = doc(run={"mode": "auto", "deadline": "6h"})
    assert parse_spec(auto).run.mode == "auto"
