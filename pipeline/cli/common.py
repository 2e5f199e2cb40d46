"""What the command modules share: the consoles, common options, and loading a spec
with its problems printed one way everywhere.

    spec = load_or_exit(path, input_uri=uri)          # exits 2, listing every problem
    out.print(...); err.print(...)
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from schemas.job import JobSpec, SpecError

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


SpecArg = Annotated[Path, typer.Argument(help="Job spec (YAML).", show_default=False)]
InputOpt = Annotated[
    str | None,
    typer.Option("--input", metavar="URI", help="Input folder or s3:// URI (overrides the spec)."),
]
OutputOpt = Annotated[
    str | None,
    typer.Option(
        "--output", metavar="URI", help="Output folder or s3:// URI (overrides the spec)."
    ),
]
JobIdOpt = Annotated[
    str | None,
    typer.Option("--job-id", metavar="ID", help="Job id; default derived from spec and input."),
]
Address = Annotated[
    str | None,
    typer.Option(help="Ray dashboard address (default $RAY_ADDRESS or http://127.0.0.1:8265)."),
]


def spec_failed(source: object, problems: list[str], hint: str | None = None) -> NoReturn:
    """Print every problem of a spec (field path and the whole reason) and exit 2."""
    err.print(f"[red]invalid spec[/] {escape(str(source))}:")
    for p in problems:
        err.print(f"  - {escape(p)}")
    if hint:
        err.print(escape(hint))
    raise typer.Exit(2)


def load_or_exit(
    spec_path: Path,
    *,
    input_uri: str | None = None,
    output_uri: str | None = None,
    checks: bool = False,
    need_keys: bool = True,
    rehearse: bool = False,
) -> JobSpec:
    """Load a spec (with the command line's input/output in place of the spec's); with
    `checks`, also what stops a job before it spends (prices, routers, key variables);
    with `rehearse`, its rehearsal on the simulator (schemas.rehearsal)."""
    from pipeline.api import check, load_spec
    from schemas.rehearsal import rehearsal

    try:
        spec = load_spec(spec_path, input=input_uri, output=output_uri)
        if rehearse:
            spec = rehearsal(spec)
    except SpecError as exc:
        spec_failed(exc.source, exc.problems)
    if checks:
        problems = check(spec, need_keys=need_keys)
        if problems:
            hint = None
            if any(".api_key_env:" in p for p in problems):
                hint = (
                    f"No key yet? `tierline run {spec_path} --rehearse` runs this job on the "
                    "built-in simulator: same models, prices and limits, no key, nothing paid."
                )
            spec_failed(spec_path, problems, hint)
    return spec


def probe_or_exit(spec: JobSpec, *, output_uri: str | None = None) -> None:
    """Before Ray starts or a call is made: the input can be listed and the output (and
    the response cache) written, each asked once with a short timeout. Exits 2 with one
    line per location: the URI, what was tried and the fix."""
    from pipeline.storeprobe import probe_spec

    with err.status("checking storage", spinner="dots"):
        problems = probe_spec(spec, output_uri=output_uri)
    if problems:
        err.print("[red]storage not usable[/]:")
        for p in problems:
            err.print(f"  - {escape(p)}")
        raise typer.Exit(2)
