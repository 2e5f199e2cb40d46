"""`tierline prices`: the versioned price table.

tierline prices show gpt-4o-mini
tierline prices import model_prices_and_context_window.json --out prices.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
