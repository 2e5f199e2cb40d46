"""The job commands: validate, run, forecast, verify, report, schema.

    tierline validate jobs/examples/classify.yaml
    tierline run jobs/examples/classify.yaml --output out/
    tierline verify out/demo-tickets-dce0231161

Exit codes: 0 done, 1 job failed or incomplete, 2 bad usage or spec.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from pipeline.cli.common import (
    InputOpt,
    JobIdOpt,
    OutputFormat,
    OutputOpt,
    SpecArg,
    err,
    load_or_exit,
    out,
    probe_or_exit,
)


def validate(
    spec: SpecArg,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline", help="Check the spec alone; do not ask its input and output storage."
        ),
    ] = False,
) -> None:
    """Check a spec without running it: fields, tiers, rules, prices, key variables, and
    that its input can be listed and its output written (each asked once, briefly).

    Example:  tierline validate jobs/examples/classify.yaml
    """
    s = load_or_exit(spec, checks=True)
    if not offline:
        probe_or_exit(s)
    out.print(f"{spec}: ok ({s.task.kind}, {sum(len(d) for d in s.tiers.values())} deployments)")


def run(
    spec: SpecArg,
    output: OutputOpt = None,
    input_uri: InputOpt = None,
    job_id: JobIdOpt = None,
    output_format: Annotated[
        OutputFormat, typer.Option(help="How to print the summary.")
    ] = OutputFormat.table,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Forecast cost and duration; call nothing.")
    ] = False,
    rehearse: Annotated[
        bool,
        typer.Option(
            "--rehearse",
            help="Every provider played by the built-in simulator (same models, prices, "
            "limits): no key needed, nothing paid; written as job <name>-rehearsal.",
        ),
    ] = False,
    accept_skipped_files: Annotated[
        bool,
        typer.Option(
            "--accept-skipped-files",
            help="End complete (exit 0) even if input files could not be used; they are "
            "named in the summary's bad_files (as input.accept_skipped_files: true).",
        ),
    ] = False,
) -> None:
    """Run a job: plan, call providers, write results/costs/errors and summary.json.

    Running the same command again resumes: committed units are skipped. With
    --rehearse, the same job runs against the simulator first, under a name of its own.

    Example:  tierline run jobs/examples/nightly-tickets.yaml --input data/today/ --rehearse
    """
    from pipeline.cli.console import ConsoleProgress, print_summary, stopped_line
    from pipeline.engine.rayenv import bind_private_ray_to_loopback
    from pipeline.errors import TierlineError

    if dry_run:
        from pipeline.cli.forecast import forecast_command

        forecast_command(
            spec, output, job_id, None, output_format.value, input_uri, rehearse=rehearse
        )
        return
    s = load_or_exit(spec, input_uri=input_uri, checks=True, rehearse=rehearse)
    if accept_skipped_files:
        accepted = s.input.model_copy(update={"accept_skipped_files": True})
        s = s.model_copy(update={"input": accepted})
    probe_or_exit(s, output_uri=output)  # seconds, where a run's retries take a minute
    bind_private_ray_to_loopback()  # before the driver imports Ray
    from pipeline.engine.driver import run_job

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = run_job(s, output_uri=output, job_id=job_id, progress=ConsoleProgress(err))
    except TierlineError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2 if exc.error_type == "config_error" else 1) from None
    if output_format is OutputFormat.json:
        print(json.dumps(summary.model_dump(mode="json"), indent=2))
    elif summary.stopped and summary.status != "complete":
        command = shlex.join(["tierline", *sys.argv[1:]])
        err.print(stopped_line(summary, command), soft_wrap=True, highlight=False, markup=False)
    else:
        print_summary(summary, out)
    raise typer.Exit(0 if summary.status == "complete" else 1)


def forecast(
    spec: SpecArg,
    output: OutputOpt = None,
    input_uri: InputOpt = None,
    job_id: JobIdOpt = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", metavar="PATH", help="Also write JSON here.")
    ] = None,
    output_format: Annotated[OutputFormat, typer.Option(help="How to print it.")] = (
        OutputFormat.table
    ),
) -> None:
    """What a job will cost and how long it will take, before a cent is spent.

    Same planning, routing and token counts as a run; no provider is called. Writes
    forecast.json beside where the run's outputs go.

    Example:  tierline forecast jobs/examples/classify.yaml --json forecast.json
    """
    from pipeline.cli.forecast import forecast_command

    forecast_command(spec, output, job_id, json_path, output_format.value, input_uri)


JobsArg = Annotated[
    list[str],
    typer.Argument(
        help="Job folders (<output>/<job_id>), output roots (every job below) or job specs "
        "(every job of the spec under its output).",
        show_default=False,
    ),
]
Latest = Annotated[
    bool,
    typer.Option("--latest", help="Of each output root or spec, only the job run last."),
]
Rehearsals = Annotated[
    bool,
    typer.Option("--rehearse", help="A spec stands for its rehearsals (run --rehearse)."),
]


def verify(
    prefixes: JobsArg,
    latest: Latest = False,
    rehearse: Rehearsals = False,
    output_format: Annotated[OutputFormat, typer.Option(help="How to print the answer.")] = (
        OutputFormat.table
    ),
) -> None:
    """Check jobs' outputs: every input id exactly once, nothing lost or doubled.

    Also checks that files match their commit markers, that cost rows belong to their
    rows and that the summary adds up. Names every job folder it checked; exits 1 and
    names the offending ids when one fails, 2 when a path holds no job.

    Example:  tierline verify --latest jobs/examples/classify.yaml
    """
    from pipeline.cli.targets import job_targets
    from pipeline.engine.verify import VerifyReport, verify_job

    reports: list[VerifyReport] = [
        verify_job(f) for f in job_targets(prefixes, latest=latest, rehearse=rehearse)
    ]
    if output_format is OutputFormat.json:
        docs = [
            {
                "prefix": r.prefix,
                "ok": r.ok,
                "units_checked": r.units_checked,
                "rows_checked": r.rows_checked,
                "pending_units": r.pending_units,
                "stale_journals": r.stale_journals,
                "problems": r.problems,
                "missing_ids": r.missing_ids,
                "duplicate_ids": r.duplicate_ids,
            }
            for r in reports
        ]
        # One job: its object, as before; several: a list of them.
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
    for r in reports if output_format is OutputFormat.table else []:
        if r.ok:
            pending = f", {r.pending_units} units not done yet" if r.pending_units else ""
            out.print(
                f"[green]ok[/] {escape(r.prefix)}: {r.units_checked} units, "
                f"{r.rows_checked} rows, each id exactly once{pending}"
            )
        else:
            err.print(f"[red]verify failed[/] {escape(r.prefix)}:")
            for p in r.problems:
                err.print(f"  - {escape(p)}")
        if r.stale_journals:
            out.print(
                f"  note: {len(r.stale_journals)} committed units still have an answer "
                "journal (a run ended before clearing it); their markers count, and the "
                "next run removes it"
            )
    failed = [r for r in reports if not r.ok]
    if len(reports) > 1 and output_format is OutputFormat.table:
        out.print(f"checked {len(reports)} job folders: {len(reports) - len(failed)} ok")
    raise typer.Exit(1 if failed else 0)


def report(
    prefixes: JobsArg,
    latest: Latest = False,
    rehearse: Rehearsals = False,
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="HTML file; default ./report-<job_id>.html. With several jobs, a folder "
            "to write each job's report-<job_id>.html in.",
        ),
    ] = None,
    output_format: Annotated[OutputFormat, typer.Option(help="How to print the key figures.")] = (
        OutputFormat.table
    ),
) -> None:
    """Write jobs' self-contained HTML reports and print their key figures.

    The page shows spend by tier and model, tier mix, savings against all-flagship,
    latency per provider, retries and 429s over time, forecast against actual and the
    top errors; it needs no network to open.

    Example:  tierline report tierline-out/demo-tickets-dce0231161 --out report.html
    """
    from pipeline.cli.report import report_command
    from pipeline.cli.targets import job_targets

    folders = job_targets(prefixes, latest=latest, rehearse=rehearse)
    if len(folders) == 1:
        report_command(folders[0], out_path, output_format.value)
        return
    # Several jobs: one page each (in --out, a folder) and, as JSON, one list.
    figures = [
        report_command(f, None, output_format.value, out_dir=out_path, print_json=False)
        for f in folders
    ]
    if output_format is OutputFormat.json:
        print(json.dumps(figures, indent=2, default=str))


def schema(
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Print the job spec's JSON Schema (for editor validation of specs).

    Example:  tierline schema --out schemas/job.schema.json
    """
    from schemas.export import spec_json_schema

    text = spec_json_schema()
    if out_path:
        out_path.write_text(text)
    else:
        sys.stdout.write(text)
