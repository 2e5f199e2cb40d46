"""What the simulator does: latency, rate limits, faults, answer quality, replay.

    SimConfig(
        latency=Latency(mean_ms=50, jitter_ms=10),
        faults=Faults(error_rates={500: 0.1, 503: 0.02, 529: 0.01}),
        models={"cheap-*": ModelBehaviour(accuracy=0.7)},
        default_limits=KeyLimits(rpm=600, tpm=200_000),
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
    models: dict[str, ModelBehaviour] = Field(
        default_factory=dict,
        description=(
            "Model name or fnmatch glob -> overrides. An exact name wins; otherwise the first "
            "matching glob in the order written."
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
    replay_dir: Path | None = Field(
        default=None,
        description=(
            "Folder with prompts.parquet and responses.parquet: answer with recorded responses "
            "only (404 when none is recorded) instead of generated ones."
        ),
    )

    def limits_for(self, api_key: str) -> KeyLimits:
        return self.limits.get(api_key, self.default_limits)
