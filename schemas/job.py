"""The job spec: one YAML file, validated before anything runs.

    spec = load_spec("jobs/examples/classify.yaml")
    spec.tiers["flagship"][0].model        # 'gpt-4o'

Every model is frozen and forbids unknown fields, so a typo fails here, with the field
path in the message, before Ray starts or any money is spent. Secrets never live in a
spec: a provider names the environment variable that holds its key (`api_key_env`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import yaml
from pydantic import Field, ValidationInfo, field_validator, model_validator

from schemas.azure import AzureOptions as AzureOptions
from schemas.base import BATCH_KINDS as BATCH_KINDS
from schemas.base import PROVIDER_KINDS as PROVIDER_KINDS
from schemas.base import TIER_ORDER as TIER_ORDER
from schemas.base import Strict as Strict
from schemas.base import TierName as TierName
from schemas.extract import ExtractTask as ExtractTask
from schemas.extract import FieldSpec as FieldSpec
from schemas.prices import PriceTable, load_prices
from schemas.problems import spec_problem
from schemas.prompts import (
    DEFAULT,
    PROMPTS_DESCRIPTION,
    prompt_problems,
    render,
    resolve_variant,
)
from schemas.providers import Limits as Limits
from schemas.providers import ProviderSpec as ProviderSpec
from schemas.providers import SimOptions as SimOptions
from schemas.providers import Timeouts as Timeouts
from schemas.routing import CanarySpec as CanarySpec
from schemas.routing import CascadeSpec as CascadeSpec
from schemas.routing import Deployment as Deployment
from schemas.routing import DeploymentRef as DeploymentRef
from schemas.routing import PoolSpec as PoolSpec
from schemas.routing import RoutingSpec as RoutingSpec
from schemas.routing import RoutingTarget as RoutingTarget
from schemas.routing import Rule as Rule
from schemas.routing import SensitiveSpec as SensitiveSpec
from schemas.routing import TierDeployments
from schemas.routing import VoteSpec as VoteSpec

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


# --- task ---------------------------------------------------------------------------


class ClassifyTask(Strict):
    """Pick exactly one label from a fixed set."""

    kind: Literal["classify"] = Field(description="Task kind: one label per row.")
    labels: list[str] = Field(min_length=2, description="The allowed labels, in order.")
    instructions: str = Field(default="", description="What to classify and how.")
    prompts: dict[str, str] = Field(default_factory=dict, description=PROMPTS_DESCRIPTION)
    max_output_tokens: int = Field(
        default=16, ge=1, le=4096, description="Cap on the answer's tokens (one label)."
    )

    PLACEHOLDERS: ClassVar[tuple[str, ...]] = ("labels",)

    @field_validator("prompts")
    @classmethod
    def _prompts(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        return _checked_prompts(v, info, cls.PLACEHOLDERS)

    def placeholder_values(self) -> dict[str, str]:
        return {"labels": ", ".join(self.labels)}

    @field_validator("labels")
    @classmethod
    def _labels_unique(cls, v: list[str]) -> list[str]:
        clean = [label.strip() for label in v]
        if any(not label for label in clean):
            raise ValueError("labels must be non-empty strings")
        lowered = [label.lower() for label in clean]
        if len(set(lowered)) != len(lowered):
            raise ValueError("labels must be unique (case-insensitive)")
        return clean


class SummariseTask(Strict):
    """Summarise each row's text in at most `max_words` words."""

    kind: Literal["summarise"] = Field(description="Task kind: one summary per row.")
    max_words: int = Field(default=60, ge=5, le=2000, description="Upper bound on summary words.")
    instructions: str = Field(default="", description="Extra guidance for the summary.")
    prompts: dict[str, str] = Field(default_factory=dict, description=PROMPTS_DESCRIPTION)
    max_output_tokens: int | None = Field(
        default=None,
        ge=1,
        le=32768,
        description="Cap on the answer's tokens; default derived from max_words (x2, +16).",
    )

    PLACEHOLDERS: ClassVar[tuple[str, ...]] = ("max_words",)

    @field_validator("prompts")
    @classmethod
    def _prompts(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        return _checked_prompts(v, info, cls.PLACEHOLDERS)

    def placeholder_values(self) -> dict[str, str]:
        return {"max_words": str(self.max_words)}

    def output_token_cap(self) -> int:
        return self.max_output_tokens or self.max_words * 2 + 16


class GenerateTask(Strict):
    """Free-form answers: any non-empty answer is accepted (e.g. replaying recorded ones)."""

    kind: Literal["generate"] = Field(description="Task kind: one free-form answer per row.")
    instructions: str = Field(default="", description="System prompt; empty sends none.")
    prompts: dict[str, str] = Field(default_factory=dict, description=PROMPTS_DESCRIPTION)
    max_output_tokens: int = Field(
        default=512, ge=1, le=32768, description="Cap on the answer's tokens."
    )

    PLACEHOLDERS: ClassVar[tuple[str, ...]] = ()

    @field_validator("prompts")
    @classmethod
    def _prompts(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        return _checked_prompts(v, info, cls.PLACEHOLDERS)

    def placeholder_values(self) -> dict[str, str]:
        return {}


Task = Annotated[
    ClassifyTask | SummariseTask | GenerateTask | ExtractTask, Field(discriminator="kind")
]
AnyTask = ClassifyTask | SummariseTask | GenerateTask | ExtractTask


def _checked_prompts(
    v: dict[str, str], info: ValidationInfo, known: tuple[str, ...]
) -> dict[str, str]:
    problems = prompt_problems(v, str(info.data.get("instructions", "")), known)
    if problems:
        raise ValueError("; ".join(problems))
    return v


def task_prompt(task: AnyTask, model: str | None) -> tuple[str, str]:
    """The variant a model gets: its key and its text, placeholders filled. Without a
    matching variant, ('default', task.instructions) as plain text, as it always was.

        task_prompt(task, "claude-3-5-haiku")      # ('claude', 'Pick one of a, b.')
    """
    key = resolve_variant(task.prompts, model)
    if key in task.prompts:
        return key, render(task.prompts[key], task.placeholder_values())
    return DEFAULT, task.instructions


# --- input / output ------------------------------------------------------------------


def _check_uri(v: str, field: str) -> str:
    v = v.strip()
    if not v:
        raise ValueError(f"{field} must not be empty")
    if "://" in v:
        scheme = v.split("://", 1)[0]
        if scheme not in ("s3", "file"):
            raise ValueError(
                f"{field} scheme {scheme!r} is not supported; "
                "use s3://bucket/prefix or a local folder"
            )
        if scheme == "s3":
            rest = v[len("s3://") :]
            bucket = rest.split("/", 1)[0]
            if len(bucket) < 3:
                raise ValueError(
                    f"{field}: S3 bucket name {bucket!r} must be at least 3 characters"
                )
    return v


class InputSpec(Strict):
    uri: str = Field(description="Folder (local or s3://bucket/prefix/) holding .parquet files.")
    id_column: str = Field(description="Column that identifies each row; unique per job.")
    text_columns: list[str] = Field(
        min_length=1,
        description="Columns joined (with a blank line) into the text sent to the model.",
    )
    rows_per_unit: int = Field(
        default=1000, ge=1, le=1_000_000, description="Upper bound on rows in one work unit."
    )
    accept_skipped_files: bool = Field(
        default=False,
        description="A job whose input had files that could not be used (unreadable, a "
        "column missing) ends complete, the files named in bad_files. Off: such a job is "
        "incomplete (exit 1), since their rows are in neither results nor errors. Not part "
        "of the job's identity: turning it on resumes the same job.",
    )

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        return _check_uri(v, "input.uri")


class OutputSpec(Strict):
    uri: str = Field(
        description="Folder (local or s3://bucket/prefix/) where <job_id>/ is written."
    )

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        return _check_uri(v, "output.uri")


class HedgeSpec(Strict):
    """Hedged requests: a call still unanswered after `after` is also sent to the next
    deployment of its tier's pool; the first answer wins and the other is cancelled."""

    after: Literal["p95"] | float = Field(
        default="p95",
        description="When to hedge: 'p95' (the deployment's observed 95th-percentile "
        "latency, once it has 20 answers) or a fixed time in milliseconds.",
    )
    max_extra_pct: float = Field(
        default=5.0,
        ge=0,
        le=100,
        description="Hedges stop while their worst-case cost would pass this share of the "
        "job's other spend (a cancelled call may still be billed: it counts at its worst "
        "case).",
    )

    @field_validator("after")
    @classmethod
    def _positive(cls, v: str | float) -> str | float:
        if not isinstance(v, str) and v <= 0:
            raise ValueError("after: give 'p95' or a time in milliseconds above 0")
        return v


class RunOptions(Strict):
    workers: int = Field(default=2, ge=1, le=1024, description="Worker actors.")
    max_in_flight: int = Field(
        default=64, ge=1, le=4096, description="Concurrent provider calls per worker."
    )
    max_attempts: int = Field(
        default=4, ge=1, le=20, description="Attempts per call, retries included."
    )
    row_deadline_s: float = Field(
        default=300.0, gt=0, description="Give up on a row after this long, retries included."
    )
    breaker_failures: int = Field(
        default=5, ge=1, description="Consecutive failed calls that open a deployment's breaker."
    )
    breaker_cooldown_s: float = Field(
        default=30.0, gt=0, description="How long an open breaker skips its deployment."
    )
    worker_cpus: float = Field(
        default=0.5, gt=0, description="CPUs Ray reserves per worker (calls are I/O-bound)."
    )
    mode: Literal["sync", "batch", "auto"] = Field(
        default="sync",
        description="sync: one request per call. batch: every call through the provider's "
        "batch API (about half the price; answers within its window). auto: batch while a "
        "batch can end before `deadline`, else sync; near the deadline, rows still in a "
        "batch are taken back and finished synchronously.",
    )
    deadline: str | None = Field(
        default=None,
        description="When the job must be done: a duration from its start ('6h', '90m') or "
        "a UTC time of day ('06:00Z', the next one after the start). Needed by mode auto.",
    )
    batch_turnaround_s: float = Field(
        default=3600.0,
        gt=0,
        description="Expected time from submitting a batch to its end, seconds (a stated "
        "default; providers promise 24 h, most batches end far sooner).",
    )
    batch_poll_s: float = Field(
        default=30.0, gt=0, description="How often a batch in flight is asked for its state."
    )
    batch_sync_reserve_s: float = Field(
        default=300.0,
        ge=0,
        description="Under mode auto, the time before the deadline kept for finishing "
        "synchronously what batches have not answered: batches still running then are "
        "cancelled and their unanswered rows called directly. Give more for large jobs "
        "(about rows left / the providers' sync rows per second).",
    )
    stop_grace_s: float = Field(
        default=20.0,
        ge=0,
        le=3600,
        description="On SIGTERM or Ctrl-C (or a lost actor), how long calls in flight may "
        "finish before the run ends; their answers are journalled and kept. Under "
        "Kubernetes' 30 s termination grace by default.",
    )
    stall_timeout_s: float | None = Field(
        default=900.0,
        gt=0,
        description="A run in which no row is answered and no unit ends for this long "
        "stops (exit 1) naming what it waited for, instead of hanging; what was answered "
        "is kept for the rerun. Time spent waiting on provider batches does not count. "
        "null: never.",
    )
    max_unit_handouts: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Times one unit is handed out; a unit that fails that often for its own "
        "reason is failed, one whose workers or actors keep dying stops the job, naming "
        "the cause.",
    )
    journal_every_rows: int = Field(
        default=32,
        ge=1,
        description="Answers kept in memory before they are written to the unit's "
        "journal; a crash loses at most these (and journal_every_s) to be paid again.",
    )
    journal_every_s: float = Field(
        default=2.0,
        gt=0,
        description="Seconds between journal writes while answers arrive.",
    )
    hedge: HedgeSpec | None = Field(
        default=None,
        description="Hedged requests inside a tier's pool, e.g. {after: p95, max_extra_pct: "
        "5}; off when unset. Only tiers with two or more deployments (not `ordered`) hedge.",
    )

    @field_validator("deadline")
    @classmethod
    def _deadline(cls, v: str | None) -> str | None:
        if v is not None:
            deadline_at(v, datetime.now(UTC))  # raises ValueError naming the forms
        return v

    @model_validator(mode="after")
    def _auto_needs_deadline(self) -> RunOptions:
        if self.mode == "auto" and self.deadline is None:
            raise ValueError("mode auto needs a deadline (e.g. deadline: 6h, or 06:00Z)")
        return self


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_TIME_OF_DAY = re.compile(r"^\s*([01]\d|2[0-3]):([0-5]\d)Z\s*$")


def deadline_at(deadline: str, start: datetime) -> datetime:
    """The UTC moment a job started at `start` must end by.

    deadline_at("6h", start)      # start + 6 hours
    deadline_at("06:00Z", start)  # the next 06:00 UTC after start
    """
    if m := _DURATION.match(deadline):
        seconds = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return start + timedelta(seconds=seconds)
    if m := _TIME_OF_DAY.match(deadline):
        at = start.astimezone(UTC).replace(
            hour=int(m.group(1)), minute=int(m.group(2)), second=0, microsecond=0
        )
        return at if at > start else at + timedelta(days=1)
    raise ValueError(
        f"deadline {deadline!r}: give a duration ('45m', '6h', '1d') or a UTC time of day "
        "('06:00Z')"
    )


# --- the spec -------------------------------------------------------------------------


class JobSpec(Strict):
    """One job: what to do with each row, where rows come from and go, which models.

    spec = load_spec("jobs/examples/classify.yaml")
    spec.tiers["cheap"][0].name          # 'sim/gpt-4o-mini'
    """

    name: str = Field(description="Job name; part of the job id and output path.")
    task: Task = Field(description="What to do with each row.")
    input: InputSpec = Field(description="Where the rows come from.")
    output: OutputSpec = Field(description="Where results, costs and errors go.")
    providers: dict[str, ProviderSpec] = Field(min_length=1, description="Providers by name.")
    tiers: dict[TierName, TierDeployments] = Field(
        description="Per tier, its deployments ('provider/model'), in order of preference; "
        "one model served by several providers may be named once: {model: gpt-4o, "
        "providers: [openai, azure]}. A deployment's price is the table's "
        "'provider/model' entry when there is one (e.g. under `prices:`), else its model's."
    )
    pools: dict[TierName, PoolSpec] = Field(
        default_factory=dict,
        description="Per tier, how rows are shared among its deployments (default for every "
        "tier: strategy cheapest), e.g. {flagship: {strategy: spread}}.",
    )
    routing: RoutingSpec = Field(default_factory=RoutingSpec, description="How rows pick a tier.")
    budget_usd: float | None = Field(default=None, gt=0, description="Hard cap on spend, USD.")
    cache: Literal["off", "read", "read-write"] = Field(
        default="read-write",
        description="Response cache: answers already bought are reused (cost 0, call_status "
        "cached) instead of paid again, across reruns and jobs.",
    )
    cache_uri: str | None = Field(
        default=None,
        description="Where the response cache lives (local or s3://); default <output>/_cache/.",
    )
    prices: dict[str, dict[str, float | int | str]] = Field(
        default_factory=dict,
        description="Price overrides or additions by model (fields of the price table, e.g. "
        "input_per_mtok, output_per_mtok, context_window); the cost rows' price_version says so.",
    )
    run: RunOptions = Field(default_factory=RunOptions, description="Parallelism and retries.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("name must be 1-63 characters of letters, digits, '.', '_' or '-'")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        problems: list[str] = []
        if not any(self.tiers.values()):
            problems.append("tiers: at least one tier needs a deployment")
        for tier, deps in self.tiers.items():
            for dep in deps:
                if dep.provider not in self.providers:
                    problems.append(
                        f"tiers.{tier}: {dep.name!r} names provider {dep.provider!r}, "
                        f"which is not under providers (have: {', '.join(self.providers)})"
                    )
        extra: list[tuple[str, Deployment]] = []
        if self.routing.cascade and self.routing.cascade.agree:
            extra += [("routing.cascade.agree", d) for d in self.routing.cascade.agree]
        if self.routing.vote:
            extra += [("routing.vote.deployments", d) for d in self.routing.vote.deployments]
        for where, dep in extra:
            if dep.provider not in self.providers:
                problems.append(f"{where}: {dep.name!r} names unknown provider {dep.provider!r}")
        if self.routing.sensitive:
            for name in self.routing.sensitive.allowed_providers:
                if name not in self.providers:
                    problems.append(
                        f"routing.sensitive.allowed_providers: {name!r} is not under providers"
                    )
        for tier in self.pools:
            if not self.tiers.get(tier):
                problems.append(
                    f"pools.{tier}: tier {tier!r} has no deployments under tiers; "
                    f"add them there or remove pools.{tier}"
                )
        used = {r.tier for r in self.routing.rules} | {self.routing.default}
        for tier in sorted(used):
            if not self.tiers.get(tier):
                problems.append(
                    f"routing: rows can be routed to tier {tier!r}, which has no deployments; "
                    f"give it one (tiers.{tier}: [provider/model]) or route no rows there"
                )
        if self.routing.canary is not None and self.task.kind in ("summarise", "extract"):
            what = "a summary" if self.task.kind == "summarise" else "an extracted record"
            problems.append(
                f"routing.canary: {what} has no single right answer to score; use a canary "
                "with a classify or generate task, or remove routing.canary"
            )
        problems += self._field_problems()
        problems += self._azure_problems(extra)
        problems += self._price_problems()
        if problems:
            # One line each, every one starting with its own field path (see parse_spec).
            raise ValueError("\n".join(problems))
        return self

    def _field_problems(self) -> list[str]:
        """`cascade.fields` and `vote.fields` name fields of an extract task."""
        named = [
            (
                "routing.cascade.fields",
                self.routing.cascade.fields if self.routing.cascade else None,
            ),
            ("routing.vote.fields", self.routing.vote.fields if self.routing.vote else None),
        ]
        problems = []
        for where, fields in named:
            if not fields:
                continue
            if not isinstance(self.task, ExtractTask):
                problems.append(f"{where}: only an extract task has fields to compare")
                continue
            known = self.task.schema_fields()
            for name in fields:
                if name not in known:
                    problems.append(
                        f"{where}: {name!r} is not a field of the task (fields: {', '.join(known)})"
                    )
        return problems

    def _azure_problems(self, extra: list[tuple[str, Deployment]]) -> list[str]:
        """Every model routed to an azure provider has a deployment; no batch mode there."""
        routed = [(f"tiers.{t}", d) for t, deps in self.tiers.items() for d in deps] + extra
        problems, seen = [], set()
        for where, dep in routed:
            provider = self.providers.get(dep.provider)
            if provider is None or provider.azure is None or (where, dep.name) in seen:
                continue
            seen.add((where, dep.name))
            if dep.model not in provider.azure.deployments:
                problems.append(
                    f"{where}: {dep.name!r} needs an Azure deployment for model {dep.model!r}; "
                    f"add providers.{dep.provider}.azure.deployments.{dep.model}: "
                    "<deployment name> (have: "
                    f"{', '.join(provider.azure.deployments)})"
                )
        if self.run.mode == "batch":
            for name, p in self.providers.items():
                if p.kind not in BATCH_KINDS:
                    problems.append(
                        f"run.mode: batch sends every call through a batch API, and provider "
                        f"{name!r} (kind {p.kind}) has none in tierline; use mode auto (its "
                        "rows then go synchronously) or sync"
                    )
        return problems

    def _price_problems(self) -> list[str]:
        """Each `prices` entry must make a whole price (a new model needs every field)."""
        from pydantic import ValidationError

        problems = []
        table = load_prices() if self.prices else None
        for model, entry in self.prices.items():
            assert table is not None
            try:
                table.with_overrides({model: entry})
            except ValidationError as exc:
                for err in exc.errors():
                    field = ".".join(str(x) for x in err["loc"]) or "entry"
                    msg = err["msg"]
                    if err["type"] == "missing":
                        msg = "required for a model the table does not know"
                    problems.append(f"prices.{model}.{field}: {msg}")
        return problems

    # Helpers the engine uses; kept here so every module reads the spec the same way.
    def price_table(self) -> PriceTable:
        table = load_prices()
        return table.with_overrides(self.prices) if self.prices else table

    def deployments(self) -> list[Deployment]:
        seen: dict[str, Deployment] = {}
        for tier in TIER_ORDER:
            for dep in self.tiers.get(tier, []):  # type: ignore[call-overload]
                seen.setdefault(dep.name, dep)
        return list(seen.values())

    def strategies(self) -> dict[str, str]:
        """Per tier with deployments, how its rows are shared (`pools`, default cheapest)."""
        return {
            t: (self.pools[t].strategy if t in self.pools else PoolSpec().strategy)
            for t, deps in self.tiers.items()
            if deps
        }

    def flagship(self) -> Deployment:
        for tier in reversed(TIER_ORDER):
            deps: list[Deployment] | None = self.tiers.get(tier)  # type: ignore[call-overload]
            if deps:
                return deps[0]
        raise ValueError("no deployments")


class SpecError(ValueError):
    """A spec that cannot run; `problems` lists 'field.path: reason' lines."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def parse_spec(data: object, source: str = "<spec>") -> JobSpec:
    from pydantic import ValidationError

    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        problems: list[str] = []
        for err in exc.errors(include_url=False, include_input=False):
            if not err["loc"] and err["type"] == "value_error":
                # The whole-spec checks: one problem a line, each naming its own field.
                problems += str(err["msg"]).removeprefix("Value error, ").splitlines()
            else:
                problems.append(spec_problem(JobSpec, err))
        raise SpecError(source, problems) from None


def load_spec(path: str | Path) -> JobSpec:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(str(p), [f"cannot read file: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(str(p), [f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise SpecError(str(p), ["the spec must be a YAML mapping"])
    return parse_spec(data, str(p))
