"""The functions behind `import pipeline`: the same checks and steps as the CLI.

    spec = load_spec("nightly.yaml", input="s3://acme/tickets/2026-12-04/")
    summary = run(spec)                       # raises SpecError (or StorageUnusable)
                                              # before Ray starts
    summary.raise_for_status()                # JobIncomplete naming failed units

Each function takes a path, a mapping or a `JobSpec`. A spec that cannot run raises
`SpecError` listing every problem (field path and reason), exactly what `tierline
validate` prints; nothing is started and no provider is called.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.ownpackages import ensure_own_packages

# Before importing `schemas`: a user's folder of that name fails here, naming itself.
ensure_own_packages()

from schemas.job import JobSpec, SpecError, parse_spec  # noqa: E402
from schemas.job import load_spec as _load_file  # noqa: E402

if TYPE_CHECKING:
    from pipeline.dryrun.forecast import Forecast
    from pipeline.engine.driver import Progress
    from pipeline.engine.summary import JobSummary
    from pipeline.engine.verify import VerifyReport

SpecLike = str | Path | Mapping[str, Any] | JobSpec


def load_spec(spec: SpecLike, *, input: str | None = None, output: str | None = None) -> JobSpec:
    """Read and validate a spec; `input`/`output` replace the spec's URIs (a nightly job
    keeps one spec and points it at the day's prefix).

        load_spec("jobs/examples/classify.yaml", output="/tmp/out")
    """
    if isinstance(spec, JobSpec):
        job, source = spec, "<JobSpec>"
    elif isinstance(spec, Mapping):
        job, source = parse_spec(dict(spec), "<mapping>"), "<mapping>"
    else:
        job, source = _load_file(spec), str(spec)
    if input is None and output is None:
        return job
    doc = job.model_dump(mode="json")
    if input is not None:
        doc["input"]["uri"] = input
    if output is not None:
        doc["output"]["uri"] = output
    return parse_spec(doc, source)


def check(spec: SpecLike, *, need_keys: bool = True) -> list[str]:
    """Problems that stop a job before it spends: prices, routers, key variables.
    `need_keys=False` for a forecast, which calls nothing. [] when the job can start."""
    from pipeline.engine.checks import check_spec

    problems = check_spec(load_spec(spec))
    if not need_keys:
        problems = [p for p in problems if ".api_key_env:" not in p]
    return problems


def _checked(spec: SpecLike, input: str | None, output: str | None, *, keys: bool) -> JobSpec:
    job = load_spec(spec, input=input, output=output)
    problems = check(job, need_keys=keys)
    if problems:
        raise SpecError(_source(spec), problems)
    return job


def _probed(job: JobSpec) -> None:
    """The input listed and the output (and cache) written once, with a short timeout,
    before Ray starts: `StorageUnusable` names each location that fails and the fix."""
    from pipeline.errors import StorageUnusable
    from pipeline.storeprobe import probe_spec

    problems = probe_spec(job)
    if problems:
        raise StorageUnusable("storage not usable: " + "; ".join(problems), problems=problems)


def _source(spec: SpecLike) -> str:
    return str(spec) if isinstance(spec, str | Path) else f"<{type(spec).__name__}>"


def run(
    spec: SpecLike,
    *,
    input: str | None = None,
    output: str | None = None,
    job_id: str | None = None,
    progress: Progress | None = None,
) -> JobSummary:
    """Run a job to its end and return its summary (also written as summary.json).

    Running it again resumes: committed units are skipped and never paid twice. A job
    that ends with units not done returns `status == "incomplete"`; call
    `raise_for_status()` on the summary to turn that into `JobIncomplete`.

        summary = pipeline.run("jobs/examples/classify.yaml", output="/tmp/out")
        summary.rows_ok, summary.cost_usd, summary.savings_pct
    """
    job = _checked(spec, input, output, keys=True)
    _probed(job)
    from pipeline.engine.rayenv import bind_private_ray_to_loopback

    bind_private_ray_to_loopback()
    from pipeline.engine.driver import run_job

    return run_job(job, job_id=job_id, progress=progress)


def forecast(
    spec: SpecLike,
    *,
    input: str | None = None,
    output: str | None = None,
    job_id: str | None = None,
    write: bool = True,
) -> Forecast:
    """What the job would cost and how long it would take, without a provider call.
    Writes forecast.json beside where the run's outputs go unless `write=False`.

        fc = pipeline.forecast("jobs/examples/classify.yaml", write=False)
        fc.cost_usd.p50, fc.duration_s.p50
    """
    job = _checked(spec, input, output, keys=False)
    if write:
        _probed(job)
    from pipeline.dryrun.forecast import forecast_job

    return forecast_job(job, job_id=job_id, write=write)


def verify(prefix: str | Path) -> VerifyReport:
    """Check one job folder: every input id exactly once in results or errors, files
    agreeing with their commit markers, summary.json agreeing with the cost rows.

        report = pipeline.verify("tierline-out/demo-tickets-1a2b3c4d5e")
        report.ok, report.problems
    """
    from pipeline.engine.verify import verify_job

    return verify_job(str(prefix))
