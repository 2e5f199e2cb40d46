"""What the simulator does: latency, rate limits, faults, answer quality, replay.

    SimConfig(
        latency=Latency(mean_ms=50, jitter_ms=10),
        faults=Faults(error_rates={500: 0.1, 503: 0.02, 529: 0.01}),
        models={"cheap-*": ModelBehaviour(accuracy=0.7)},
        default_limits=KeyLimits(rpm=600, tpm=200_000),
        batches=BatchBehaviour(turnaround_s=4 * 3600, time_scale=3600),  # 4 h in 4 s
        prompt_cache=PromptCaching(min_tokens=1024),
        seed=7,
    )

Everything random in the simulator is a stable hash of the seed and the request, so the
same config and the same requests give the same answers, faults and delays.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The simulator's options are part of the job spec, so they live in schemas (a leaf).
_STRICT = ConfigDict(frozen=True, extra="forbid")


class Latency(BaseModel):
    """Delay before each answer: uniform in [mean - jitter, mean + jitter], never below 0."""

    model_config = _STRICT

    mean_ms: float = Field(
        default=0.0, ge=0, description="Mean delay before answering, milliseconds."
    )
    jitter_ms: float = Field(
        default=0.0,
        ge=0,
        description="Half-width of the uniform spread around the mean, milliseconds.",
    )
    slow_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of answers in a long tail: they take `slow_ms` instead (a "
        "provider's slow answers, drawn per request).",
    )
    slow_ms: float = Field(
        default=5000.0, ge=0, description="Delay of an answer in the long tail, milliseconds."
    )


class Faults(BaseModel):
    """Injected failures; at most one per request, drawn after the latency."""

    model_config = _STRICT

    error_rates: dict[int, float] = Field(
        default_factory=dict,
        description="HTTP status -> probability of answering with it, e.g. {500: 0.1, 529: 0.01}.",
    )
    hang_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Probability of holding the request open without answering.",
    )
    reset_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Probability of dropping the connection without a response.",
    )
    max_hang_s: float = Field(
        default=300.0,
        gt=0,
        description="A hang ends with 504 after this long if the client still waits.",
    )
    retry_after_s: int = Field(
        default=1,
        ge=1,
        description="Retry-After seconds sent with injected 429, 503 and 529 answers.",
    )

    @field_validator("error_rates")
    @classmethod
    def _check_rates(cls, rates: dict[int, float]) -> dict[int, float]:
        for status, rate in rates.items():
            if not 400 <= status <= 599:
                raise ValueError(f"status {status} is not an HTTP error status (400-599)")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"rate {rate} for status {status} is not within 0..1")
        return rates

    @model_validator(mode="after")
    def _check_total(self) -> Faults:
        if self.total_rate() > 1.0 + 1e-9:
            raise ValueError("fault rates add up to more than 1")
        return self

    def total_rate(self) -> float:
        return self.hang_rate + self.reset_rate + sum(self.error_rates.values())


class KeyLimits(BaseModel):
    """Rate limits of one API key, like a provider's tier; unset means unlimited."""

    model_config = _STRICT

    rpm: int | None = Field(
        default=None, ge=1, description="Requests per minute (smooth token bucket)."
    )
    tpm: int | None = Field(
        default=None,
        ge=1,
        description="Tokens per minute: input tokens plus max_tokens of each request.",
    )
    max_concurrency: int | None = Field(
        default=None, ge=1, description="Requests of this key in flight at once; more get 429."
    )
    per_model: bool = Field(
        default=False, description="Count rpm and tpm per model under this key, as OpenAI does."
    )


class ExtractFaults(BaseModel):
    """Bad structured answers (extract requests), each drawn per request by a stable hash
    of seed, model and messages, so a re-ask (more messages) draws afresh."""

    model_config = _STRICT

    invalid_json_rate: float = Field(
        default=0.0, ge=0, le=1, description="Share of answers cut off mid-JSON (do not parse)."
    )
    missing_required_rate: float = Field(
        default=0.0, ge=0, le=1, description="Share of answers missing a required field."
    )
    wrong_enum_rate: float = Field(
        default=0.0, ge=0, le=1, description="Share of answers with an enum value not allowed."
    )

    @model_validator(mode="after")
    def _check_total(self) -> ExtractFaults:
        if self.invalid_json_rate + self.missing_required_rate + self.wrong_enum_rate > 1 + 1e-9:
            raise ValueError("extract fault rates add up to more than 1")
        return self


class ModelBehaviour(BaseModel):
    """Overrides for the models whose name matches a key of `SimConfig.models`.

    A field left unset falls back to the global setting; a set field replaces it whole.
    """

    model_config = _STRICT

    latency: Latency | None = Field(default=None, description="Latency for this model.")
    faults: Faults | None = Field(default=None, description="Faults for this model.")
    accuracy: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description=(
            "Chance that a classify answer is the right label; otherwise a different allowed "
            "label, chosen by a stable hash of seed, model and prompt (so retries agree)."
        ),
    )
    extract: ExtractFaults | None = Field(
        default=None, description="Bad structured answers of this model (extract requests)."
    )


class BatchBehaviour(BaseModel):
    """How the simulator runs provider batches (OpenAI Batch API, Anthropic Message Batches).

    Batch time is provider time: the simulator's clock times `time_scale`, so with
    `time_scale=3600` a batch whose `turnaround_s` is 4 hours ends in 4 clock seconds. A
    batch spends `validate_s` validating, then answers its requests one after another,
    evenly spread over `turnaround_s`, then `finalize_s` finalizing.
    """

    model_config = _STRICT

    time_scale: float = Field(
        default=1.0, gt=0, description="Provider seconds that pass per second of the sim clock."
    )
    validate_s: float = Field(
        default=5.0, ge=0, description="Provider seconds a new batch spends validating."
    )
    turnaround_s: float = Field(
        default=600.0,
        gt=0,
        description="Provider seconds from the end of validation to the last answer.",
    )
    finalize_s: float = Field(
        default=5.0,
        ge=0,
        description="Provider seconds between the last answer and the results (OpenAI finalizing).",
    )
    cancel_s: float = Field(
        default=5.0,
        ge=0,
        description="Provider seconds a cancelled batch stays cancelling before it ends.",
    )
    expire_after_s: float = Field(
        default=86_400.0,
        gt=0,
        description=(
            "Provider seconds after creation at which an unfinished batch expires (24 h); "
            "its unanswered requests come back expired."
        ),
    )
    complete_fraction_before_expiry: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description=(
            "Share of each batch's requests answered before it expires; below 1 every batch "
            "expires at `expire_after_s` with that share answered (the rest expired)."
        ),
    )
    fail_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description=(
            "Probability that a whole batch fails (OpenAI: status failed after validation; "
            "Anthropic: every request errored with api_error)."
        ),
    )
    openai_max_requests: int = Field(
        default=50_000, ge=1, description="Requests one OpenAI batch input file may hold."
    )
    openai_max_bytes: int = Field(
        default=209_715_200, ge=1, description="Bytes one OpenAI batch input file may have."
    )
    anthropic_max_requests: int = Field(
        default=100_000, ge=1, description="Requests one Anthropic message batch may hold."
    )
    anthropic_max_bytes: int = Field(
        default=256_000_000,
        ge=1,
        description="Bytes of one Anthropic message batch creation request body.",
    )
    max_queued_batches: int | None = Field(
        default=None,
        ge=1,
        description="Unfinished batches one API key may have at once; creating more gets 429.",
    )


class PromptCaching(BaseModel):
    """Prompt-cache reporting, as the providers bill it.

    OpenAI: a prompt sharing a prefix of at least `min_tokens` with a recent prompt of the
    same key, model and `prompt_cache_key` reports that prefix, rounded down to
    `increment_tokens`, as `cached_tokens`. Anthropic: the prefix up to a `cache_control`
    block is written on first sight and read while it lives.
    """

    model_config = _STRICT

    enabled: bool = Field(default=True, description="Report cached tokens at all.")
    min_tokens: int = Field(
        default=1024,
        ge=1,
        description="Shortest cacheable prefix, tokens (model-dependent at the providers).",
    )
    increment_tokens: int = Field(
        default=128, ge=1, description="OpenAI reports cached tokens in steps of this many."
    )
    openai_ttl_s: float = Field(
        default=600.0, gt=0, description="Sim-clock seconds an unused OpenAI prefix stays cached."
    )
    openai_recent_prompts: int = Field(
        default=32,
        ge=1,
        description="Long prompts remembered per (key, model, cache key) to match prefixes.",
    )
    anthropic_ttl_s: float = Field(
        default=300.0,
        gt=0,
        description="Sim-clock seconds an unused Anthropic entry lives ('5m'; '1h' asks 3600).",
    )


class SimConfig(BaseModel):
    """The whole behaviour of one simulator; `POST /admin/config` swaps it at run time."""

    model_config = _STRICT

    latency: Latency = Field(default=Latency(), description="Default latency.")
    faults: Faults = Field(default=Faults(), description="Default faults (none).")
    accuracy: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Default chance that a classify answer is the right label.",
    )
    extract: ExtractFaults = Field(
        default=ExtractFaults(), description="Default bad structured answers (none)."
    )
    models: dict[str, ModelBehaviour] = Field(
        default_factory=dict,
        description=(
            "Model name or fnmatch glob -> overrides. An exact name wins; otherwise the first "
            "matching glob in the order written."
        ),
    )
    served_models: list[str] = Field(
        default_factory=list,
        description=(
            "Models served besides the price table's, those named in `models` and those "
            "recorded in `replay_dir`; any other model is answered 404 (`model_not_found`), "
            "as a provider answers it."
        ),
    )
    default_limits: KeyLimits = Field(
        default=KeyLimits(), description="Limits of every key not listed in `limits`."
    )
    limits: dict[str, KeyLimits] = Field(
        default_factory=dict, description="API key -> its limits (key 'anonymous' = no key)."
    )
    require_api_key: bool = Field(
        default=False,
        description="Answer 401 to requests without a key (or with a key not allowed).",
    )
    api_keys: list[str] | None = Field(
        default=None,
        description="Keys accepted when `require_api_key` is on; unset accepts any key.",
    )
    seed: int = Field(
        default=0, description="Seed of every random choice (faults, jitter, accuracy)."
    )
    azure_deployments: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Azure OpenAI deployment name -> the model it serves, for "
            "/openai/deployments/{name}/chat/completions; a served model's own name works "
            "as a deployment too, any other name is answered 404 (DeploymentNotFound)."
        ),
    )
    batches: BatchBehaviour = Field(
        default=BatchBehaviour(), description="Batch API timing, failures and limits."
    )
    prompt_cache: PromptCaching = Field(
        default=PromptCaching(), description="Cached-token reporting of both wire formats."
    )
    replay_dir: Path | None = Field(
        default=None,
        description=(
            "Folder with prompts.parquet and responses.parquet: answer with recorded responses "
            "only (404 when none is recorded) instead of generated ones."
        ),
    )

    def limits_for(self, api_key: str) -> KeyLimits:
        return self.limits.get(api_key, self.default_limits)
