"""The `tierline` command. Parses arguments, then calls the engine; nothing else.

Exit codes: 0 done, 1 job failed or incomplete, 2 bad usage or spec.
"""

from __future__ import annotations

import json
import logging
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from schemas.job import JobSpec, SpecError, load_spec, parse_spec

app = typer.Typer(
    name="tierline",
    help="Batch LLM jobs that route each row to the cheapest model that does it well.\n\n"
    "Start with:  tierline run jobs/examples/classify.yaml",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sim_app = typer.Typer(help="The built-in provider simulator.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


SpecArg = Annotated[Path, typer.Argument(help="Job spec (YAML).", show_default=False)]


def _load(spec_path: Path, input_uri: str | None = None) -> JobSpec:
    try:
        spec = load_spec(spec_path)
        if input_uri:
            # Nightly jobs keep one spec and point it at the day's prefix.
            doc = spec.model_dump(mode="json")
            doc["input"]["uri"] = input_uri
            spec = parse_spec(doc, str(spec_path))
        return spec
    except SpecError as exc:
        err.print(f"[red]invalid spec[/] {exc.source}:")
        for p in exc.problems:
            err.print(f"  - {p}")
        raise typer.Exit(2) from None


@app.command()
def validate(spec: SpecArg) -> None:
    """Check a spec without running it: fields, tiers, rules, prices, key variables.

    Example:  tierline validate jobs/examples/classify.yaml
    """
    from pipeline.checks import check_spec

    s = _load(spec)
    problems = check_spec(s)
    if problems:
        err.print(f"[red]invalid spec[/] {spec}:")
        for p in problems:
            err.print(f"  - {p}")
        raise typer.Exit(2)
    out.print(f"{spec}: ok ({s.task.kind}, {sum(len(d) for d in s.tiers.values())} deployments)")


@app.command()
def run(
    spec: SpecArg,
    output: Annotated[
        str | None, typer.Option(help="Output folder or s3:// URI (overrides the spec).")
    ] = None,
    input_uri: Annotated[
        str | None,
        typer.Option("--input", help="Input folder or s3:// URI (overrides the spec)."),
    ] = None,
    job_id: Annotated[
        str | None, typer.Option(help="Job id; default derived from spec and input.")
    ] = None,
    output_format: Annotated[
        OutputFormat, typer.Option(help="How to print the summary.")
    ] = OutputFormat.table,
) -> None:
    """Run a job: plan, call providers, write results/costs/errors and summary.json.

    Running the same command again resumes: committed units are skipped.

    Example:  tierline run jobs/examples/classify.yaml --output out/
    """
    from pipeline.checks import check_spec
    from pipeline.console import ConsoleProgress, print_summary
    from pipeline.driver import run_job
    from pipeline.errors import TierlineError

    s = _load(spec, input_uri)
    problems = check_spec(s)
    if problems:
        err.print(f"[red]invalid spec[/] {spec}:")
        for p in problems:
            err.print(f"  - {p}")
        raise typer.Exit(2)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = run_job(s, output_uri=output, job_id=job_id, progress=ConsoleProgress(err))
    except TierlineError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2 if exc.error_type == "config_error" else 1) from None
    if output_format is OutputFormat.json:
        print(json.dumps(summary.model_dump(mode="json"), indent=2))
    else:
        print_summary(summary, out)
    raise typer.Exit(0 if summary.status == "complete" else 1)


@app.command()
def verify(
    prefix: Annotated[str, typer.Argument(help="A job's output prefix: <output>/<job_id>.")],
    output_format: Annotated[OutputFormat, typer.Option(help="How to print the answer.")] = (
        OutputFormat.table
    ),
) -> None:
    """Check a job's outputs: every input id exactly once in results or errors, files
    match their commit markers, costs belong to their rows, the summary adds up.

    Exits 1 and names the offending ids when anything is off.

    Example:  tierline verify tierline-out/demo-tickets-dce0231161
    """
    from pipeline.verify import verify_job

    report = verify_job(prefix)
    if output_format is OutputFormat.json:
        doc = {
            "prefix": report.prefix,
            "ok": report.ok,
            "units_checked": report.units_checked,
            "rows_checked": report.rows_checked,
            "pending_units": report.pending_units,
            "problems": report.problems,
            "missing_ids": report.missing_ids,
            "duplicate_ids": report.duplicate_ids,
        }
        print(json.dumps(doc, indent=2))
    elif report.ok:
        pending = f", {report.pending_units} units not done yet" if report.pending_units else ""
        out.print(
            f"[green]ok[/] {report.prefix}: {report.units_checked} units, "
            f"{report.rows_checked} rows, each id exactly once{pending}"
        )
    else:
        err.print(f"[red]verify failed[/] {report.prefix}:")
        for p in report.problems:
            err.print(f"  - {p}")
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def report(
    prefix: Annotated[str, typer.Argument(help="A job's output prefix: <output>/<job_id>.")],
    out_path: Annotated[
        Path | None, typer.Option("--out", help="HTML file; default ./report-<job_id>.html.")
    ] = None,
    output_format: Annotated[OutputFormat, typer.Option(help="How to print the key figures.")] = (
        OutputFormat.table
    ),
) -> None:
    """Write a job's self-contained HTML report (spend, tier mix, savings, latency,
    retries and 429s, forecast against actual, top errors) and print its key figures.

    Example:  tierline report tierline-out/demo-tickets-dce0231161 --out report.html
    """
    from pipeline.commands.report import report_command

    report_command(prefix, out_path, output_format.value)


@app.command()
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


@sim_app.command("serve")
def sim_serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8089,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    latency_ms: Annotated[float, typer.Option(help="Mean latency per answer.")] = 20.0,
    config: Annotated[Path | None, typer.Option(help="Simulator config (YAML or JSON).")] = None,
) -> None:
    """Serve the simulator alone; point any OpenAI or Anthropic client at it.

    Example:  tierline sim serve --port 8089   then  base_url http://127.0.0.1:8089/v1
    """
    import yaml

    from pipeline.sim import SimConfig, serve

    if config:
        cfg = SimConfig.model_validate(yaml.safe_load(config.read_text()))
    else:
        cfg = SimConfig.model_validate({"latency": {"mean_ms": latency_ms}})
    serve(cfg, host, port)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
