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
router_app = typer.Typer(help="Train and inspect learned routers.", no_args_is_help=True)
app.add_typer(router_app, name="router")
prices_app = typer.Typer(help="The versioned price table.", no_args_is_help=True)
app.add_typer(prices_app, name="prices")
Address = Annotated[
    str | None,
    typer.Option(help="Ray dashboard address (default $RAY_ADDRESS or http://127.0.0.1:8265)."),
]

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
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Forecast cost and duration; call nothing.")
    ] = False,
) -> None:
    """Run a job: plan, call providers, write results/costs/errors and summary.json.

    Running the same command again resumes: committed units are skipped.

    Example:  tierline run jobs/examples/classify.yaml --output out/
    """
    from pipeline.checks import check_spec
    from pipeline.console import ConsoleProgress, print_summary
    from pipeline.driver import run_job
    from pipeline.errors import TierlineError

    if dry_run:
        from pipeline.commands.forecast import forecast_command

        if input_uri:
            err.print("--input with --dry-run: edit the spec's input.uri instead")
            raise typer.Exit(2)
        forecast_command(spec, output, job_id, None, output_format.value)
        return
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
    """Check a job's outputs: every input id exactly once, nothing lost or doubled.

    Also checks that files match their commit markers, that cost rows belong to their
    rows and that the summary adds up. Exits 1 and names the offending ids when not.

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
    """Write a job's self-contained HTML report and print its key figures.

    The page shows spend by tier and model, tier mix, savings against all-flagship,
    latency per provider, retries and 429s over time, forecast against actual and the
    top errors; it needs no network to open.

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


@app.command()
def forecast(
    spec: SpecArg,
    output: Annotated[str | None, typer.Option(help="Output folder (overrides the spec).")] = None,
    job_id: Annotated[str | None, typer.Option(help="Job id; default as for run.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write JSON here.")] = None,
    output_format: Annotated[OutputFormat, typer.Option(help="How to print it.")] = (
        OutputFormat.table
    ),
) -> None:
    """What a job will cost and how long it will take, before a cent is spent.

    Same planning, routing and token counts as a run; no provider is called. Writes
    forecast.json beside where the run's outputs go.

    Example:  tierline forecast jobs/examples/classify.yaml --json forecast.json
    """
    from pipeline.commands.forecast import forecast_command

    forecast_command(spec, output, job_id, json_path, output_format.value)


@app.command()
def submit(
    spec: SpecArg,
    address: Address = None,
    input_uri: Annotated[
        str | None, typer.Option("--input", help="Input URI (overrides the spec).")
    ] = None,
    package: Annotated[
        str, typer.Option(help="pip requirement the cluster installs (empty: already there).")
    ] = "",
    wait_for_end: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait for the job and exit with its result.")
    ] = False,
) -> None:
    """Submit a job to a Ray cluster (Ray Jobs API); prints the submission id.

    Provider keys are not sent: the cluster's pods hold the variables the spec names.

    Example:  tierline submit jobs/examples/nightly-tickets.yaml --address http://ray-head:8265
    """
    from pipeline.commands import cluster

    s = _load(spec, input_uri)
    args = ["--input", input_uri] if input_uri else []
    try:
        sid = cluster.submit(s, spec.read_text(), address=address, package=package, extra_args=args)
    except (RuntimeError, ValueError, ConnectionError) as exc:
        err.print(f"[red]submit failed:[/] {str(exc).splitlines()[0]}")
        raise typer.Exit(1) from None
    print(sid)
    if wait_for_end:
        final = cluster.wait(sid, address)
        err.print(f"{sid}: {final}")
        raise typer.Exit(0 if final == "SUCCEEDED" else 1)


@app.command()
def status(
    submission_id: Annotated[str, typer.Argument(help="Id printed by `tierline submit`.")],
    address: Address = None,
    output_format: Annotated[OutputFormat, typer.Option(help="How to print it.")] = (
        OutputFormat.table
    ),
) -> None:
    """Show a submitted job's state (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED).

    Example:  tierline status tierline-nightly-tickets-3f2a9c1b7e
    """
    from pipeline.commands import cluster

    info = cluster.status(submission_id, address)
    if output_format is OutputFormat.json:
        print(json.dumps(info, indent=2))
    else:
        out.print(f"{submission_id}: {info['status']} {info['message'] or ''}".rstrip())


@app.command()
def logs(
    submission_id: Annotated[str, typer.Argument(help="Id printed by `tierline submit`.")],
    address: Address = None,
) -> None:
    """Print a submitted job's driver logs.

    Example:  tierline logs tierline-nightly-tickets-3f2a9c1b7e
    """
    from pipeline.commands import cluster

    sys.stdout.write(cluster.logs(submission_id, address))


@app.command()
def stop(
    submission_id: Annotated[str, typer.Argument(help="Id printed by `tierline submit`.")],
    address: Address = None,
) -> None:
    """Stop a submitted job. Committed units stay; submitting again resumes the rest.

    Example:  tierline stop tierline-nightly-tickets-3f2a9c1b7e
    """
    from pipeline.commands import cluster

    stopped = cluster.stop(submission_id, address)
    out.print(f"{submission_id}: {'stopping' if stopped else 'not running'}")


@router_app.command("train")
def router_train(
    out_path: Annotated[Path, typer.Option("--out", help="Router model file to write.")],
    data: Annotated[
        Path | None,
        typer.Option(help="Folder of prompts.parquet + responses.parquet (recorded answers)."),
    ] = None,
    runs: Annotated[
        list[str] | None, typer.Option("--run", help="Earlier job output prefix (repeatable).")
    ] = None,
    runs_input: Annotated[
        str | None, typer.Option(help="Input folder of those runs (for the text).")
    ] = None,
    tiers: Annotated[str | None, typer.Option(help="cheap=MODEL,mid=MODEL,flagship=MODEL")] = None,
    features: Annotated[
        list[str] | None, typer.Option("--feature", help="Metadata column (repeatable).")
    ] = None,
    cascade: Annotated[
        bool, typer.Option(help="Train for use with a cheap/mid agreement cascade.")
    ] = False,
) -> None:
    """Fit a learned router: per tier, the probability its answer is good enough.

    Example:  tierline router train --data recorded/ --feature eval_name --out router.npz
    """
    from pipeline.commands.router import router_train_command

    try:
        router_train_command(
            data,
            out_path,
            tiers=tiers,
            features=tuple(features or ()),
            runs=tuple(runs or ()),
            runs_input=runs_input,
            cascade=cascade,
            echo=out.print,
        )
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


@prices_app.command("show")
def prices_show(
    model: Annotated[str | None, typer.Argument(help="One model; default all.")] = None,
) -> None:
    """Show prices (USD per 1M tokens), context windows and the table's version.

    Example:  tierline prices show gpt-4o-mini
    """
    from rich.table import Table

    from schemas.prices import UnknownPrice, load_prices

    table = load_prices()
    try:
        names = [table.resolve(model)] if model else sorted(table.models)
    except UnknownPrice as exc:
        err.print(f"[red]error:[/] {exc.args[0] if exc.args else exc}")
        raise typer.Exit(2) from None
    t = Table(title=f"prices {table.version}")
    for col in ("model", "input", "cached input", "output", "context", "since"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for name in names:
        p = table.models[name]
        t.add_row(
            name,
            f"{p.input_per_mtok:g}",
            f"{p.cached_input_price:g}",
            f"{p.output_per_mtok:g}",
            f"{p.context_window:,}",
            str(p.effective_date or ""),
        )
    out.print(t)


@prices_app.command("import")
def prices_import(
    source: Annotated[Path, typer.Argument(help="LiteLLM's model_prices_and_context_window.json")],
    out_path: Annotated[Path, typer.Option("--out", help="Price table YAML to write.")],
) -> None:
    """Convert LiteLLM's community price list into tierline's table format.

    Example:  tierline prices import model_prices_and_context_window.json --out prices.yaml
    """
    from pipeline.prices_import import import_litellm, write_table

    result = import_litellm(source)
    write_table(result.table, out_path)
    r = result.report
    out.print(
        f"wrote {out_path}: {r.imported} models; skipped {r.skipped_not_chat} non-chat, "
        f"{len(r.skipped_no_price)} without a price, {len(r.skipped_invalid)} invalid"
    )


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
