"""The `tierline` command: the typer app, assembled from one module per command group.

    tierline --help
    python -m pipeline.cli run jobs/examples/classify.yaml

Exit codes: 0 done, 1 job failed or incomplete, 2 bad usage or spec.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Annotated

import typer
from typer.core import TyperOption

from pipeline.cli import cluster, evals, jobs, prices, router, sim


def _flag_type(self: TyperOption, ctx: object) -> str | None:
    """No value column for an on/off flag: `--dry-run`, never `--dry-run <bool>` (typer's
    rich help shows a type for every option, flags included)."""
    if self.is_flag or self.count:
        return None
    return _option_type(self, ctx)  # type: ignore[arg-type]


_option_type = TyperOption.display_type_rich
TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]

app = typer.Typer(
    name="tierline",
    help="Batch LLM jobs that route each row to the cheapest model that does it well.\n\n"
    "Start with:  tierline run jobs/examples/classify.yaml",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command()(jobs.validate)
app.command()(jobs.run)
app.command()(jobs.verify)
app.command()(jobs.report)
app.command()(jobs.schema)
app.command()(jobs.forecast)
app.command("eval")(evals.eval_command)
app.command("submit")(cluster.submit_command)
app.command("status")(cluster.status_command)
app.command("logs")(cluster.logs_command)
app.command("stop")(cluster.stop_command)
app.add_typer(sim.app, name="sim")
app.add_typer(router.app, name="router")
app.add_typer(prices.app, name="prices")


def _version(value: bool) -> None:
    if value:
        try:
            typer.echo(f"tierline {package_version('tierline')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            typer.echo("tierline (not installed)")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Batch LLM jobs that route each row to the cheapest model that does it well.

    Start with:  tierline run jobs/examples/classify.yaml
    """


def main() -> None:
    from pipeline.ownpackages import ensure_own_packages

    try:
        ensure_own_packages()
    except ImportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    app()


if __name__ == "__main__":
    main()
