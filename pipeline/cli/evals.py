"""`tierline eval SPEC --golden URI`: each deployment the spec routes to, with each prompt
version, scored on labelled rows, side by side.

    tierline eval jobs/examples/classify.yaml --golden golden.csv
    tierline eval spec.yaml --golden golden.parquet --prompts-from v2.yaml --json eval.json
    tierline eval jobs/examples/extract-tickets.yaml --golden reviewed.parquet  # per field

Exit codes: 0 done, 1 the evaluation failed (a provider, storage), 2 bad spec, golden set
or prompts file (before any call).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from pipeline.cli.common import OutputFormat, SpecArg, err, load_or_exit, out

if TYPE_CHECKING:
    from pipeline.evals.run import EvalReport


def eval_table(report: EvalReport) -> Table:
    """One line per (deployment, prompt version); error counts are in the notes below."""
    # Light borders: deployment names and versions fit an 80-column terminal whole.
    t = Table(
        title=f"eval {report.spec}",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for name, justify in (
        ("deployment", "left"),
        ("prompt", "left"),
        ("version", "left"),
        ("rows", "right"),
        ("accuracy", "right"),
        ("cost_usd", "right"),
    ):
        t.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    last = None
    for r in report.rows:
        if last is not None and r.deployment != last:
            t.add_section()
        last = r.deployment
        t.add_row(
            r.deployment,
            f"{r.prompt_source}:{r.prompt_key}",
            r.prompt_version,
            f"{r.rows:,}",
            f"{r.accuracy:.3f}",
            f"{r.cost_usd:.6f}",
        )
    return t


def eval_command(
    spec: SpecArg,
    golden: Annotated[
        str,
        typer.Option(
            help="Labelled rows (.parquet, .jsonl or .csv; local or s3://) with the spec's "
            "id and text columns and a label column (extract: a column per field to score, "
            "named as the field or out_<field>).",
            show_default=False,
        ),
    ],
    prompts_from: Annotated[
        Path | None,
        typer.Option(
            help="Prompts to compare: another spec, a YAML/JSON mapping of variants, or a "
            "text file (the default prompt)."
        ),
    ] = None,
    label: Annotated[
        str, typer.Option(help="The golden set's label column (not extract: its field columns).")
    ] = "label",
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write JSON here.")] = None,
    output_format: Annotated[OutputFormat, typer.Option(help="How to print it.")] = (
        OutputFormat.table
    ),
) -> None:
    """Score every deployment the spec routes to, with each prompt version, on a golden set.

    Calls go through the same executor, limiter, budget and prices as a job (the spec's
    budget_usd caps the evaluation; the response cache is not used). kind: sim providers
    are started for the evaluation.

    Example:  tierline eval jobs/examples/classify.yaml --golden golden.csv --prompts-from v2.yaml
    """
    from pipeline.errors import TierlineError
    from pipeline.evals.golden import GoldenSetError, read_golden
    from pipeline.evals.prompts import PromptsFromError, load_prompts
    from pipeline.evals.run import evaluate

    job = load_or_exit(spec, checks=True)
    try:
        gold = read_golden(golden, job, label)
        other = load_prompts(prompts_from, job) if prompts_from is not None else None
    except (GoldenSetError, PromptsFromError) as exc:
        err.print(f"[red]error:[/] {exc.message}", highlight=False)
        raise typer.Exit(2) from None
    try:
        report = asyncio.run(evaluate(job, gold, other))
    except TierlineError as exc:
        err.print(f"[red]error:[/] {exc.message}", highlight=False)
        raise typer.Exit(2 if exc.error_type == "config_error" else 1) from None
    text = report.model_dump_json(indent=2)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text + "\n", encoding="utf-8")
    if output_format == OutputFormat.json:
        sys.stdout.write(text + "\n")
        return
    out.print(eval_table(report))
    for r in report.rows:
        if r.field_accuracy:
            fields = ", ".join(f"{f} {a:.3f}" for f, a in r.field_accuracy.items())
            out.print(f"  {r.deployment} with {r.prompt_version}, per field: {fields}")
        if r.errors:
            out.print(
                f"  {r.deployment} with {r.prompt_version}: {r.errors:,} rows without an "
                "answer (counted wrong)"
            )
    scored = f"label column {report.label!r}" if report.label else "scored per field"
    out.print(f"golden set {report.golden}, {scored}; prices {report.price_version}")
