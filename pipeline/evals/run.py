"""Every deployment a spec routes to, with each prompt version, on a golden set.

    report = await evaluate(spec, read_golden("golden.csv", spec), other=prompt_set)
    for row in report.rows:
        row.deployment, row.prompt_version, row.accuracy, row.cost_usd

Each (deployment, prompt version) pair is a one-tier copy of the spec: the deployment
alone, rules routing to it, no cascade or vote, the response cache off (a cached answer
would score a prompt it was not asked with, at $0) and sync calls. Its rows go through
the job's own unit runner: the same row preparation, executor (retries, budget), limiter
and pricing as `tierline run`, in this process, without Ray. The spec's `budget_usd`
caps the whole evaluation. `kind: sim` providers are started here for its length.

A row is correct when its answer equals its label, case, surrounding punctuation and
runs of white space forgiven (`pipeline.routing.cascade.normalise`); rows that end as
errors (invalid output, too long, a failed call) count as wrong. An extract task is
scored one field at a time against the golden set's field columns
(`pipeline.evals.fields`): `field_accuracy` per field, and a row is correct when every
scored field is.
"""

from __future__ import annotations

import contextlib
import json
import tempfile

import pyarrow.compute as pc
from pydantic import BaseModel, Field

from jobs.base import get_job_kind
from pipeline.engine.outputs import unit_tables
from pipeline.engine.worker import UnitRunner
from pipeline.evals.fields import score_fields
from pipeline.evals.golden import EvalSet
from pipeline.evals.prompts import PromptSet
from pipeline.limits.budget import BudgetClient, Budgets, LeaseBook, LocalSource
from pipeline.routing.cascade import normalise
from schemas.base import TIER_ORDER
from schemas.job import Deployment, JobSpec, parse_spec

SPEC_SOURCE = "spec"


class EvalRow(BaseModel):
    deployment: str = Field(description="provider/model.")
    tier: str = Field(description="The spec's tier the deployment is first listed in.")
    prompt_source: str = Field(description="'spec', or the --prompts-from file's name.")
    prompt_key: str = Field(description="The variant's key ('default', a family, a model).")
    prompt_version: str = Field(description="p- and 8 hex of the variant's text.")
    rows: int = Field(description="Golden rows scored.")
    correct: int = Field(description="Rows whose answer equals the label.")
    errors: int = Field(description="Rows without an answer (error rows).")
    calls: int = Field(description="Billed calls, retries and long-document steps included.")
    accuracy: float = Field(description="correct / rows.")
    cost_usd: float = Field(description="Priced from the price table, as a job's cost rows.")
    field_accuracy: dict[str, float] = Field(
        default_factory=dict,
        description="extract: per scored field, rows whose value equals the golden one / rows.",
    )


class EvalReport(BaseModel):
    spec: str
    golden: str
    label: str
    price_version: str
    rows: list[EvalRow]


class _EvalRunner(UnitRunner):
    """A unit runner whose budget is the evaluation's, in this process."""

    def __init__(self, *args: object, budgets: Budgets, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._eval_budgets = budgets

    def _budgets(self) -> Budgets:
        return self._eval_budgets


def deployments(spec: JobSpec) -> list[tuple[str, Deployment]]:
    """(tier, deployment) for every deployment of the spec's tiers, cheapest tier first."""
    seen: dict[str, tuple[str, Deployment]] = {}
    for tier in TIER_ORDER:
        for dep in spec.tiers.get(tier) or []:  # type: ignore[call-overload]
            seen.setdefault(dep.name, (tier, dep))
    return list(seen.values())


def one_deployment_spec(spec: JobSpec, dep: Deployment, prompts: PromptSet) -> JobSpec:
    doc = spec.model_dump(mode="json")
    doc["task"] = prompts.task.model_dump(mode="json")
    doc["tiers"] = {"cheap": [dep.name]}
    doc["routing"] = {"policy": "rules", "rules": [], "default": "cheap"}
    doc["cache"], doc["cache_uri"] = "off", None
    doc["run"]["mode"] = "sync"
    return parse_spec(doc, f"{spec.name} on {dep.name}")


def score(golden: EvalSet, answers: dict[str, str]) -> tuple[int, dict[str, int]]:
    """(rows whose answer equals the label (normalised), {}); extract: (rows right in
    every scored field, {field: rows right})."""
    if golden.expected:
        return score_fields(golden.expected, {k: json.loads(v) for k, v in answers.items()})
    right = sum(
        1
        for rid, label in golden.labels.items()
        if rid in answers and normalise(answers[rid]) == normalise(label)
    )
    return right, {}


async def _one(
    spec: JobSpec, golden: EvalSet, endpoints: dict[str, str], book: LeaseBook, out_uri: str
) -> tuple[tuple[int, dict[str, int]], int, int, float]:
    """(score, errors, calls, cost) of the golden rows on a one-deployment spec."""
    budgets = Budgets(BudgetClient(LocalSource(book, "eval"))) if spec.budget_usd else Budgets()
    runner = _EvalRunner(spec, "eval", out_uri, endpoints, budgets=budgets)
    async with runner:
        todo, early = runner.prepare(golden.table)
        outcomes = early + await runner.call_all(todo)
        results, costs, errors = unit_tables(0, outcomes, runner.prices)
    answers = dict(zip(results["id"].to_pylist(), results["output"].to_pylist(), strict=True))
    cost = float(pc.sum(costs["cost_usd"]).as_py() or 0.0) if costs.num_rows else 0.0
    return score(golden, answers), errors.num_rows, costs.num_rows, cost


async def evaluate(
    spec: JobSpec,
    golden: EvalSet,
    other: PromptSet | None = None,
    *,
    endpoints: dict[str, str] | None = None,
) -> EvalReport:
    """Score every (deployment, prompt version) pair; a pair the two prompt sets share
    is run once. `endpoints`: provider name -> base URL (default: start the simulators)."""
    sets = [PromptSet(SPEC_SOURCE, spec.task)] + ([other] if other is not None else [])
    book = LeaseBook(spec.budget_usd or 0.0)
    rows: list[EvalRow] = []
    async with contextlib.AsyncExitStack() as stack:
        urls = dict(endpoints or {})
        urls.update(await _start_sims(spec, stack, skip=set(urls)))
        out_uri = stack.enter_context(tempfile.TemporaryDirectory(prefix="tierline-eval-"))
        for tier, dep in deployments(spec):
            done: dict[str, EvalRow] = {}
            for prompts in sets:
                prompt = get_job_kind(prompts.task).prompt(dep.model)
                if (same := done.get(prompt.version)) is not None:
                    same.prompt_source += f" + {prompts.source}"  # one text, asked once
                    continue
                one = one_deployment_spec(spec, dep, prompts)
                scored, errors, calls, cost = await _one(one, golden, urls, book, out_uri)
                correct, per_field = scored
                done[prompt.version] = row = EvalRow(
                    deployment=dep.name,
                    tier=tier,
                    prompt_source=prompts.source,
                    prompt_key=prompt.key,
                    prompt_version=prompt.version,
                    rows=golden.rows,
                    correct=correct,
                    errors=errors,
                    calls=calls,
                    accuracy=correct / golden.rows if golden.rows else 0.0,
                    cost_usd=cost,
                    field_accuracy={f: n / golden.rows for f, n in per_field.items()},
                )
                rows.append(row)
    return EvalReport(
        spec=spec.name,
        golden=golden.uri,
        label=golden.label,
        price_version=spec.price_table().version or "",
        rows=rows,
    )


async def _start_sims(
    spec: JobSpec, stack: contextlib.AsyncExitStack, skip: set[str]
) -> dict[str, str]:
    """Start the simulator of every `kind: sim` provider the tiers use."""
    from pipeline.sim import SimServer

    urls: dict[str, str] = {}
    for _, dep in deployments(spec):
        name = dep.provider
        if name in urls or name in skip or spec.providers[name].kind != "sim":
            continue
        served = [d.model for _, d in deployments(spec) if d.provider == name]
        server = SimServer(spec.providers[name].sim.to_sim_config(served))
        await stack.enter_async_context(server)
        urls[name] = server.base_url
    return urls
