"""Which job folders `verify` and `report` look at: job folders, output roots or specs.

    folders = job_targets(["tierline-out/"], latest=False)            # every job below
    folders = job_targets(["jobs/examples/classify.yaml"], latest=True)  # its newest job

A job folder is itself; an output root stands for every job folder directly below it; a
spec file (.yaml) for every job of that spec's name under its `output.uri`. `--latest`
keeps the job run last of each root or spec. A path that holds no job exits 2, naming the
job folders below it (or beside it), because the usual slip is one level off.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.markup import escape

from pipeline.cli.common import err, load_or_exit
from pipeline.errors import TierlineError
from pipeline.jobfolder import JobFolder, job_folders_below
from pipeline.store import Store
from schemas.rehearsal import rehearsal_name

SPEC_SUFFIXES = (".yaml", ".yml")
SHOWN = 8


def job_targets(given: list[str], *, latest: bool, rehearse: bool = False) -> list[str]:
    """The job folders `given` stands for, in the order given, each once; exits 2 when
    one of them holds no job. With `rehearse`, a spec stands for its rehearsals."""
    found: list[str] = []
    for arg in given:
        try:
            folders = _expand(arg, rehearse)
        except TierlineError as exc:
            _fail(f"cannot look at {arg}: {exc}", code=1)
        if latest and len(folders) > 1:
            folders = [max(folders, key=lambda f: f.last_touched())]
        found += [f.display() for f in folders if f.display() not in found]
    return found


def _expand(arg: str, rehearse: bool) -> list[JobFolder]:
    if arg.endswith(SPEC_SUFFIXES) and Path(arg).is_file():
        spec = load_or_exit(Path(arg), rehearse=rehearse)
        root = Store.open(spec.output.uri)
        below = job_folders_below(root)
        jobs = _ran([f for f in below if _name(f) == spec.name])
        if not jobs:
            flag = " --rehearse" if rehearse else ""
            rehearsals = [f for f in below if _name(f) == rehearsal_name(spec.name)]
            hint = " (it has rehearsals: add --rehearse)" if rehearsals and not rehearse else ""
            _fail(
                f"no job of spec {arg} (name {spec.name!r}) has run under {root.display()} "
                f"yet{hint}; run it first: tierline run {arg}{flag}"
            )
        return jobs
    folder = JobFolder.at(arg)
    if folder.holds_job():
        return [folder]
    below = job_folders_below(folder.store)
    if not below:
        _fail(_no_job(folder.store))
    jobs = _ran(below)
    if not jobs:
        _fail(f"no job under {arg} has run yet (only forecasts); run it first")
    return jobs


def _ran(folders: list[JobFolder]) -> list[JobFolder]:
    """Of the jobs below a root, those that ran: a forecast alone has nothing to check."""
    ran = [f for f in folders if f.has_run()]
    for f in folders:
        if f not in ran:
            err.print(f"[dim]skipped {escape(f.display())}: forecast only, never run[/]")
    return ran


def _name(folder: JobFolder) -> str | None:
    try:
        manifest = folder.read_manifest()
    except ValueError:
        return None
    return None if manifest is None else str(manifest.get("name"))


def _no_job(store: Store) -> str:
    """Say so, and name the job folders beside it: a mistyped id is the usual slip."""
    msg = f"{store.display()} holds no tierline job (no _job.json, summary.json or _commits/)"
    parent_uri, _, _ = store.display().rstrip("/").rpartition("/")
    if not parent_uri or parent_uri.endswith(":/"):
        return msg + "; give a job folder (<output>/<job_id>), an output root or a spec"
    beside = [f.display() for f in job_folders_below(Store.open(parent_uri))]
    if not beside:
        return msg + "; give a job folder (<output>/<job_id>), an output root or a spec"
    more = f" (+{len(beside) - SHOWN} more)" if len(beside) > SHOWN else ""
    return f"{msg}; job folders in {parent_uri}: {', '.join(beside[:SHOWN])}{more}"


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[red]error:[/] {escape(message)}")
    raise typer.Exit(code)
