"""`tierline prices`: the versioned price table.

tierline prices show gpt-4o-mini
tierline prices import model_prices_and_context_window.json --out prices.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from pipeline.cli.common import err, out

app = typer.Typer(help="The versioned price table.", no_args_is_help=True)


@app.command("show")
def show(
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
        err.print(f"[red]error:[/] {exc}")
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


@app.command("import")
def import_(
    source: Annotated[Path, typer.Argument(help="LiteLLM's model_prices_and_context_window.json")],
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Price table YAML to write (a whole table).")
    ] = None,
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            help="Print this model's entry as a `prices:` block to paste into a job spec "
            "(repeatable).",
        ),
    ] = None,
) -> None:
    """Convert LiteLLM's community price list into tierline's table format.

    With --out, the whole table is written (for review before it replaces the packaged
    one); with --model, the entries of those models are printed as a `prices:` block for
    a job spec, the quickest way to price a model the table does not know.

    Example:  tierline prices import model_prices_and_context_window.json --model gpt-9-mini
    """
    import yaml

    from pipeline.prices_import import import_litellm, write_table

    if out_path is None and not models:
        err.print("[red]error:[/] give --out FILE (a whole table) or --model NAME (one entry)")
        raise typer.Exit(2)
    try:
        result = import_litellm(source)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        err.print(f"[red]error:[/] {escape(f'cannot import {source}: {reason}')}")
        raise typer.Exit(2) from None
    if out_path is not None:
        write_table(result.table, out_path)
        r = result.report
        # Beside a printed `prices:` block (stdout), this note goes to stderr.
        (err if models else out).print(
            f"wrote {out_path}: {r.imported} models; skipped {r.skipped_not_chat} non-chat, "
            f"{len(r.skipped_no_price)} without a price, {len(r.skipped_invalid)} invalid"
        )
    if models:
        found = result.table["models"]
        missing = [m for m in models if m not in found]
        if missing:
            import difflib

            for m in missing:
                near = difflib.get_close_matches(m, sorted(found), n=3, cutoff=0.6)
                hint = f" (nearest there: {', '.join(near)})" if near else ""
                err.print(f"[red]error:[/] {escape(f'{source} has no chat model {m!r}{hint}')}")
            raise typer.Exit(2)
        entries = {
            m: {k: v for k, v in found[m].items() if v not in (None, [], ())} for m in models
        }
        out.print(
            "# check these figures against the provider's price page\n"
            + yaml.safe_dump({"prices": entries}, sort_keys=False),
            markup=False,
            highlight=False,
            end="",
        )
