"""Azure OpenAI's part of a provider spec: the API version and the deployments.

    providers:
      azure:
        kind: azure
        base_url: https://my-resource.openai.azure.com
        api_key_env: AZURE_OPENAI_API_KEY
        azure: {api_version: 2024-10-21, deployments: {gpt-4o-mini: mini-prod}}

Azure serves a model through a deployment the account named: every call goes to
`{base_url}/openai/deployments/{deployment}/chat/completions?api-version=...` with the key
in an `api-key` header. Tiers keep naming tierline's model (prices, context windows and
prompts follow it); `deployments` says which deployment serves it.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from schemas.base import Strict

# Azure's dated versions: GA ('2024-10-21') and preview ('2025-04-01-preview').
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
# What Azure allows in a deployment name; it goes into a URL path, so nothing else.
_DEPLOYMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class AzureOptions(Strict):
    """How tierline reaches an Azure OpenAI resource (provider kind `azure`)."""

    api_version: str = Field(
        description="The api-version query every call carries: a GA version such as "
        "2024-10-21, or a preview such as 2025-04-01-preview (structured output needs "
        "2024-08-01-preview or later).",
    )
    deployments: dict[str, str] = Field(
        min_length=1,
        description="tierline model name (as written in tiers) -> the name of the Azure "
        "deployment that serves it, e.g. {gpt-4o-mini: mini-prod}. Every model routed to "
        "this provider needs one.",
    )

    @field_validator("api_version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not _API_VERSION.match(v):
            raise ValueError(
                f"api_version {v!r} is not an Azure API version; write a date such as "
                "2024-10-21, or 2025-04-01-preview for a preview"
            )
        return v

    @field_validator("deployments")
    @classmethod
    def _names(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [f"{model}: {name!r}" for model, name in v.items() if not _DEPLOYMENT.match(name)]
        if bad:
            raise ValueError(
                "deployment names are 1-64 letters, digits, '.', '_' or '-' (got "
                f"{', '.join(bad)}); copy the name from the deployment's page in the Azure portal"
            )
        return v
