"""The routing part of the job spec: deployments, rules, cascades, votes, sensitive rows.

    routing:
      policy: rules                      # rules | learned | cascade
      rules: [{when: "priority = 'high'", tier: flagship}]
      cascade: {agree: [sim/gpt-4o-mini, sim/claude-3-5-haiku]}
      canary: {data: golden/tickets.parquet, min_accuracy: 0.9}   # checked before spending

Models here are re-exported by `schemas.job`, which holds the spec as a whole.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator, model_validator

from schemas.base import Strict, TierName
from schemas.predicates import compile_predicate


class Deployment(Strict):
    """One `provider/model` entry of a tier. The model may itself contain slashes."""

    provider: str
    model: str

    @property
    def name(self) -> str:
        return f"{self.provider}/{self.model}"

    @classmethod
    def parse(cls, text: str) -> Deployment:
        provider, _, model = text.partition("/")
        if not provider or not model:
            raise ValueError(
                f"deployment {text!r} must be 'provider/model', a name under providers: "
                f"and the model it serves, e.g. openai/{model or provider or 'gpt-4o-mini'}"
            )
        return cls(provider=provider, model=model)


def _to_deployment(v: object) -> object:
    return Deployment.parse(v) if isinstance(v, str) else v


DeploymentRef = Annotated[
    Deployment,
    BeforeValidator(_to_deployment),
    WithJsonSchema({"type": "string", "pattern": "^[^/]+/.+$", "description": "provider/model"}),
]


class PoolSpec(Strict):
    """How a tier shares its rows among its deployments (a tier is a pool, not a queue)."""

    strategy: Literal["ordered", "spread", "cheapest"] = Field(
        default="cheapest",
        description="cheapest: the cheapest deployment with quota headroom now (a row would "
        "wait under about a second), else as spread. spread: rows shared by headroom "
        "(quota wait and latency), so every deployment's quota is used. ordered: the list "
        "order; the next deployment only when one fails or its breaker opens.",
    )


def _expand_served(v: object) -> object:
    """A tier entry `{model: gpt-4o, providers: [openai, azure]}`: one model served by
    several providers, named once; it stands for `openai/gpt-4o, azure/gpt-4o`."""
    if not isinstance(v, list):
        return v
    out: list[object] = []
    for i, item in enumerate(v):
        if not isinstance(item, dict) or "provider" in item:
            out.append(item)  # 'provider/model', or a deployment as the spec dumps it
            continue
        model, providers = item.get("model"), item.get("providers")
        if (
            set(item) != {"model", "providers"}
            or not isinstance(model, str)
            or not model
            or not isinstance(providers, list)
            or not providers
            or not all(isinstance(p, str) and p and "/" not in p for p in providers)
        ):
            raise ValueError(
                f"entry {i}: a model served by several providers is written "
                "{model: <model>, providers: [<provider>, ...]} (or give 'provider/model')"
            )
        out += [f"{p}/{model}" for p in providers]
    return out


TierDeployments = Annotated[
    list[DeploymentRef],
    BeforeValidator(_expand_served),
    WithJsonSchema(
        {
            "type": "array",
            "items": {
                "anyOf": [
                    {"type": "string", "pattern": "^[^/]+/.+$", "description": "provider/model"},
                    {
                        "type": "object",
                        "description": "one model served by several providers",
                        "properties": {
                            "model": {"type": "string"},
                            "providers": {
                                "type": "array",
                                "items": {"type": "string"},
                                "minItems": 1,
                            },
                        },
                        "required": ["model", "providers"],
                        "additionalProperties": False,
                    },
                ]
            },
        }
    ),
]


# --- routing --------------------------------------------------------------------------


class Rule(Strict):
    when: str = Field(description="SQL predicate over input columns, e.g. \"priority = 'high'\".")
    tier: TierName = Field(description="Tier for rows where the predicate holds.")

    @field_validator("when")
    @classmethod
    def _parses(cls, v: str) -> str:
        compile_predicate(v)
        return v


class RoutingTarget(Strict):
    """Calibrate the learned router's threshold to one of these (on its validation data)."""

    max_flagship_share: float | None = Field(
        default=None, ge=0, le=1, description="At most this share of rows goes to flagship."
    )
    min_quality: float | None = Field(
        default=None, ge=0, le=1.5, description="At least this fraction of all-flagship quality."
    )

    @model_validator(mode="after")
    def _one(self) -> RoutingTarget:
        if (self.max_flagship_share is None) == (self.min_quality is None):
            raise ValueError("set exactly one of max_flagship_share or min_quality")
        return self


class CascadeSpec(Strict):
    """Validate each answer; escalate to the next tier up until one is accepted."""

    agree: list[DeploymentRef] | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="Two deployments that must give the same answer for a row at the first "
        "one's tier; when they differ the row escalates.",
    )
    fields: list[str] | None = Field(
        default=None,
        min_length=1,
        description="extract: the fields `agree` compares (exact for enums, numbers, booleans "
        "and dates; case and spacing aside for strings); default every field but strings.",
    )
    min_logprob: float | None = Field(
        default=None,
        le=0,
        description="Escalate when the answer's mean token log-probability is lower "
        "(only where the provider returns log-probabilities).",
    )


class VoteSpec(Strict):
    """Ask several deployments; the majority answer wins, a tie escalates."""

    deployments: list[DeploymentRef] = Field(
        min_length=2, description="Deployments that vote (each is called once per row)."
    )
    tier: TierName = Field(default="cheap", description="Rows routed to this tier are voted on.")
    fields: list[str] | None = Field(
        default=None,
        min_length=1,
        description="extract: each field is voted on by itself; a tie on one of these "
        "escalates the row (default every field but strings).",
    )


class SensitiveSpec(Strict):
    """Rows matching `when` or `pattern` go only to `allowed_providers`, on fallback and
    escalation too; a row no allowed provider can take becomes `no_allowed_provider`."""

    when: str | None = Field(default=None, description="SQL predicate, e.g. 'contains_pii'.")
    pattern: str | None = Field(
        default=None, description="Regular expression over the row's text (e-mail, IBAN, ...)."
    )
    allowed_providers: list[str] = Field(
        min_length=1, description="Providers that may see sensitive rows."
    )

    @model_validator(mode="after")
    def _something(self) -> SensitiveSpec:
        if not self.when and not self.pattern:
            raise ValueError("set `when` (a predicate), `pattern` (a regex), or both")
        if self.pattern:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        if self.when:
            compile_predicate(self.when)
        return self


CANARY_FORMATS = (".parquet", ".jsonl", ".csv")


class CanarySpec(Strict):
    """A small labelled golden set every routed deployment must answer well enough before
    the job spends on its real rows; a deployment below `min_accuracy` stops the job."""

    data: str = Field(
        description="The golden set: one .parquet, .jsonl or .csv file (local path or "
        "s3://bucket/key) with the input's id and text columns and a label column."
    )
    min_accuracy: float = Field(
        ge=0,
        le=1,
        description="Share of golden rows each deployment must answer right (after the "
        "task's own answer parsing); below it the job stops before any real row is called.",
    )
    label_column: str = Field(
        default="label", min_length=1, description="Column holding each row's right answer."
    )

    @field_validator("data")
    @classmethod
    def _data(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("data must name a file")
        if not v.lower().endswith(CANARY_FORMATS):
            raise ValueError(
                f"data {v!r} must be a {', '.join(CANARY_FORMATS)} file; convert the golden "
                "set to one of these"
            )
        if "://" in v and v.split("://", 1)[0] not in ("s3", "file"):
            raise ValueError(f"data {v!r}: use a local path or s3://bucket/key")
        return v


class RoutingSpec(Strict):
    policy: Literal["rules", "learned", "cascade"] = Field(
        default="rules",
        description="rules: SQL predicates; learned: a trained router model; cascade: start "
        "every row at the cheapest tier and escalate until an answer is accepted.",
    )
    rules: list[Rule] = Field(default_factory=list, description="First matching rule wins.")
    default: TierName = Field(default="cheap", description="Tier for rows no rule matches.")
    on_tier_down: Literal["escalate", "defer"] = Field(
        default="escalate",
        description="When no deployment of a row's tier can serve it: try the next tier up "
        "(escalate), or write a retryable `deferred` error row for a later rerun (defer).",
    )
    model: str | None = Field(
        default=None,
        description="learned: the router model file (tierline router train), a path or an "
        "s3:// URI (one place the nightly retrain can replace and every node can read).",
    )
    threshold: float | None = Field(
        default=None, ge=0, description="learned: decision threshold, set directly."
    )
    target: RoutingTarget | None = Field(
        default=None, description="learned: calibrate the threshold to this target."
    )
    optimize: Literal["cost", "balanced", "quality"] | None = Field(
        default=None, description="learned: a preset threshold (cost, balanced, quality)."
    )
    features: list[str] = Field(
        default_factory=list, description="learned: metadata columns the router model reads."
    )
    cascade: CascadeSpec | None = Field(
        default=None,
        description="Validate answers and escalate rejected rows (any policy; implied by "
        "policy cascade).",
    )
    vote: VoteSpec | None = Field(default=None, description="Majority vote for a tier.")
    sensitive: SensitiveSpec | None = Field(
        default=None, description="Rows only some providers may see."
    )
    canary: CanarySpec | None = Field(
        default=None,
        description="A labelled golden set run through every routed deployment before the "
        "job's rows; a deployment scoring below min_accuracy stops the job (exit 1).",
    )
    shift_threshold: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Flag a tier share, escalation rate or disagreement rate that moved by "
        "more than this (absolute change of a share, 0.1 = 10 points) since the previous "
        "run of the same job name under the same output.",
    )

    @model_validator(mode="after")
    def _learned_needs_model(self) -> RoutingSpec:
        if self.policy == "learned" and not self.model:
            raise ValueError("policy 'learned' needs `model`: a file from `tierline router train`")
        return self

    def escalates(self) -> bool:
        return self.policy == "cascade" or self.cascade is not None
