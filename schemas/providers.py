"""A provider in the job spec: its wire format, where it is, its key's variable, its
account's limits, and the options of one kind (the simulator's, Azure's).

    spec.providers["openai"].limits.rpm          # 500
    spec.providers["azure"].azure.deployments    # {'gpt-4o-mini': 'mini-prod'}
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from schemas.azure import AzureOptions
from schemas.base import PROVIDER_KINDS, Strict
from schemas.extract import StructuredMode
from schemas.sim import (
    BatchBehaviour,
    ExtractFaults,
    Faults,
    KeyLimits,
    Latency,
    ModelBehaviour,
    PromptCaching,
    SimConfig,
)

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Limits(Strict):
    """A provider account's limits; unset means unknown (discovered from 429s)."""

    rpm: int | None = Field(default=None, ge=1, description="Requests per minute.")
    tpm: int | None = Field(default=None, ge=1, description="Tokens (in + out) per minute.")
    max_concurrency: int | None = Field(default=None, ge=1, description="Requests in flight.")
    tokens_per_day: int | None = Field(default=None, ge=1, description="Tokens per day.")
    per_model: bool = Field(
        default=False, description="The provider limits each model separately (one quota each)."
    )


class Timeouts(Strict):
    connect_s: float = Field(default=10.0, gt=0, description="TCP connect timeout, seconds.")
    total_s: float = Field(default=120.0, gt=0, description="Whole-request timeout, seconds.")


class SimOptions(Strict):
    """Behaviour of the built-in simulator (provider kind `sim`)."""

    latency_ms: float = Field(default=20.0, ge=0, description="Mean answer latency, ms.")
    jitter_ms: float = Field(
        default=5.0, ge=0, description="Latency spread: uniform within +/- this many ms."
    )
    seed: int = Field(default=0, description="Seed for latency, fault and accuracy draws.")
    accuracy: float = Field(
        default=1.0, ge=0, le=1, description="Chance a classify answer is the right label."
    )
    faults: Faults = Field(default_factory=Faults, description="Injected failures, all models.")
    extract: ExtractFaults = Field(
        default_factory=ExtractFaults,
        description="Bad structured answers to extract requests (invalid JSON, a missing "
        "required field, a wrong enum value), all models; per model under `models`.",
    )
    batches: BatchBehaviour = Field(
        default_factory=BatchBehaviour,
        description="Batch API behaviour: turnaround, time scale, expiry, limits.",
    )
    prompt_cache: PromptCaching = Field(
        default_factory=PromptCaching,
        description="Prompt caching as the providers report it (cached / cache-write tokens).",
    )
    limits: KeyLimits = Field(
        default_factory=KeyLimits, description="Limits the simulator enforces (429s past them)."
    )
    models: dict[str, ModelBehaviour] = Field(
        default_factory=dict, description="Per model name or glob: latency, faults, accuracy."
    )
    replay: str | None = Field(
        default=None,
        description="Folder of recorded answers (prompts.parquet, responses.parquet) to serve.",
    )

    def to_sim_config(self, served_models: Sequence[str] = ()) -> SimConfig:
        """The simulator's config; `served_models` are models the job routes to it that
        the price table may lack (the job's own `prices:` entries)."""
        return SimConfig(
            served_models=sorted(set(served_models)),
            latency=Latency(mean_ms=self.latency_ms, jitter_ms=self.jitter_ms),
            seed=self.seed,
            accuracy=self.accuracy,
            faults=self.faults,
            extract=self.extract,
            default_limits=self.limits,
            models=self.models,
            replay_dir=Path(self.replay) if self.replay else None,
            batches=self.batches,
            prompt_cache=self.prompt_cache,
        )


class ProviderSpec(Strict):
    kind: str = Field(description="Wire format: sim | openai | anthropic | azure.")
    base_url: str | None = Field(
        default=None,
        description="API root, e.g. https://api.openai.com/v1; for kind azure the resource "
        "endpoint, e.g. https://my-resource.openai.azure.com.",
    )
    api_key_env: str | None = Field(
        default=None, description="Name of the environment variable holding the API key."
    )
    limits: Limits = Field(default_factory=Limits, description="Account limits.")
    timeouts: Timeouts = Field(default_factory=Timeouts, description="Request timeouts.")
    sim: SimOptions = Field(
        default_factory=SimOptions, description="Simulator behaviour (kind sim)."
    )
    azure: AzureOptions | None = Field(
        default=None,
        description="Kind azure: the api-version and, per model, the deployment that serves "
        "it, e.g. {api_version: 2024-10-21, deployments: {gpt-4o-mini: mini-prod}}.",
    )
    daily_budget_usd: float | None = Field(
        default=None,
        gt=0,
        description="Cap on this provider's spend per UTC day, all jobs on the cluster together.",
    )
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = Field(
        default=None,
        description="Sent to this provider's reasoning models (the price table's `reasoning`) "
        "as `reasoning_effort`; unset leaves the model's default. Less effort, fewer hidden "
        "tokens billed as output.",
    )
    structured_output: StructuredMode = Field(
        default="native",
        description="How an extract task asks for its JSON: native (OpenAI response_format "
        "with a strict JSON schema, Anthropic tool use with an input schema), json_object "
        "(OpenAI-compatible JSON mode, the schema in the prompt: vLLM, Ollama, Groq), or "
        "prompt (the schema in the prompt only, for servers with neither).",
    )

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in PROVIDER_KINDS:
            raise ValueError(
                f"unknown provider kind {v!r}; known kinds: {', '.join(PROVIDER_KINDS)}"
            )
        return v

    @field_validator("api_key_env")
    @classmethod
    def _env(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.match(v):
            raise ValueError(
                "api_key_env must be the NAME of an environment variable (e.g. OPENAI_API_KEY), "
                "not the key itself"
            )
        return v

    @model_validator(mode="after")
    def _needs_url(self) -> ProviderSpec:
        if self.kind != "sim" and not self.base_url:
            raise ValueError(f"provider kind {self.kind!r} needs base_url")
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        if self.kind == "anthropic" and self.structured_output == "json_object":
            raise ValueError(
                "structured_output json_object is an OpenAI-compatible mode; Anthropic takes "
                "native (tool use) or prompt"
            )
        self._check_azure()
        return self

    def _check_azure(self) -> None:
        if self.kind != "azure":
            if self.azure is not None:
                raise ValueError(
                    f"azure: only a provider of kind azure takes it (kind is {self.kind!r})"
                )
            return
        if self.azure is None:
            raise ValueError(
                "kind azure needs azure: {api_version: 2024-10-21, deployments: {<model>: "
                "<deployment name>}}"
            )
        if self.api_key_env is None:
            raise ValueError(
                "kind azure needs api_key_env: the variable holding the resource's key "
                "(e.g. AZURE_OPENAI_API_KEY)"
            )
        if self.base_url and ("/openai" in self.base_url or "?" in self.base_url):
            raise ValueError(
                f"base_url {self.base_url!r}: give the resource endpoint only (e.g. "
                "https://my-resource.openai.azure.com); tierline adds /openai/deployments/... "
                "and the api-version itself"
            )
