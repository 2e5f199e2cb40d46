"""`tierline forecast SPEC` (and `tierline run --dry-run`): what a job would cost and
how long it would take, with no provider calls.

    forecast_command(Path("jobs/examples/classify.yaml"), output=None, job_id=None,
                     json_path=None, output_format="table")

Exit codes: 0 done, 1 the forecast failed (storage, input), 2 bad spec or usage.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from pipeline.dryrun.forecast import Forecast
from pipeline.dryrun.sums import ForecastBucket

FORMATS = ("table", "json")


def _usd(v: float) -> str:
    return f"{v:,.4f}" if v < 100 else f"{v:,.2f}"


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def forecast_table(fc: Forecast) -> Table:
    """Cost p10 / p50 / p90 by tier and by model, with rows and tokens."""
    t = Table(title=f"forecast {fc.job_id}", header_style="bold")
    for name, justify in (
        ("", "left"),
        ("rows", "right"),
        ("input tokens", "right"),
        ("output tokens (est.)", "right"),
        ("USD p10", "right"),
        ("USD p50", "right"),
        ("USD p90", "right"),
    ):
        t.add_column(name, justify=justify)  # type: ignore[arg-type]

    def row(label: str, b: ForecastBucket) -> None:
        c = b.cost_usd
        rows = f"{b.rows:,}" if b.rows else f"({b.calls:,.0f} calls)"
        t.add_row(
            label,
            rows,
            f"{b.input_tokens:,}",
            f"{b.est_output_tokens:,}",
            _usd(c.p10),
            _usd(c.p50),
            _usd(c.p90),
        )

    for tier, b in fc.by_tier.items():
        row(f"tier {tier}", b)
    t.add_section()
    for model, b in fc.by_model.items():
        row(model, b)
    t.add_section()
    if fc.canary is not None:
        k = fc.canary
        t.add_row(
            f"canary ({k.rows} rows x {len(k.deployments)} deployments)",
            f"({k.calls:,} calls)",
            f"{sum(d.input_tokens for d in k.deployments):,}",
            f"{sum(d.est_output_tokens for d in k.deployments):,}",
            _usd(k.cost_usd.p10),
            _usd(k.cost_usd.p50),
            _usd(k.cost_usd.p90),
        )
    c = fc.cost_usd
    t.add_row(
        "total",
        f"{fc.rows_callable:,}",
        f"{fc.input_tokens:,}",
        f"{fc.est_output_tokens:,}",
        _usd(c.p10),
        _usd(c.p50),
        _usd(c.p90),
        style="bold",
    )
    return t


def print_forecast(fc: Forecast, console: Console) -> None:
    console.print(forecast_table(fc))
    d = fc.duration_s
    console.print(
        f"duration {_duration(d.p50)} (p10 {_duration(d.p10)}, p90 {_duration(d.p90)}); "
        f"binding limit: [bold]{fc.binding_limit}[/]"
    )
    for p in fc.providers:
        console.print(
            f"  {p.provider}: {p.requests:,.0f} requests, {_duration(p.duration_s.p50)}, "
            f"bound by {p.binding_limit}"
        )
    if fc.cost_by_mode:
        sync, batch = fc.cost_by_mode["sync"].p50, fc.cost_by_mode["batch"].p50
        console.print(
            f"calls go out [bold]{fc.mode}[/]; USD p50 sync {_usd(sync)}, batch {_usd(batch)}"
            + (f" ({batch / sync:.0%} of sync)" if sync else "")
        )
    if fc.finish_by:
        verdict = ""
        if fc.deadline is not None:
            verdict = (
                f"; deadline {fc.deadline}: [green]holds[/]"
                if fc.deadline_holds
                else f"; deadline {fc.deadline}: [red]missed even at this pace[/]"
            )
        console.print(f"expected end if started now: {fc.finish_by}{verdict}")
    rows = [f"{fc.rows_total:,} rows in all", f"{fc.rows_callable:,} would be sent"]
    rows += [f"{n:,} {kind}" for kind, n in fc.rows_early_error.items()]
    if fc.rows_duplicate:
        rows.append(f"{fc.rows_duplicate:,} duplicate ids")
    console.print(", ".join(rows))
    if fc.rows_todo != fc.rows_total:
        todo = fc.cost_todo_usd
        console.print(
            f"still to do: {fc.rows_todo:,} rows in {fc.units_todo} units, "
            f"USD {_usd(todo.p50)} (p10 {_usd(todo.p10)}, p90 {_usd(todo.p90)})"
        )
    for note in fc.method:
        console.print(f"  [dim]{note}[/]")
    console.print(f"prices {fc.price_version}; written to {fc.output}/forecast.json")


def forecast_command(
    spec: Path,
    output: str | None,
    job_id: str | None,
    json_path: Path | None,
    output_format: str,
    input_uri: str | None = None,
    *,
    rehearse: bool = False,
) -> None:
    """Forecast a job and print it; raises `typer.Exit` with 2 on a bad spec."""
    from pipeline.cli.common import load_or_exit, probe_or_exit
    from pipeline.dryrun.forecast import forecast_job
    from pipeline.errors import TierlineError
    from schemas.prices import UnknownPrice

    err = Console(stderr=True)
    fmt = str(getattr(output_format, "value", output_format))
    if fmt not in FORMATS:
        err.print(f"[red]unknown output format[/] {fmt!r}; use one of: {', '.join(FORMATS)}")
        raise typer.Exit(2)
    # Missing API keys do not stop a forecast (it makes no calls); unknown prices do.
    job = load_or_exit(spec, input_uri=input_uri, checks=True, need_keys=False, rehearse=rehearse)
    probe_or_exit(job, output_uri=output)
    try:
        fc = forecast_job(job, output_uri=output, job_id=job_id)
    except (UnknownPrice, TierlineError) as exc:
        err.print(f"[red]error:[/] {exc}")
        config = isinstance(exc, UnknownPrice) or exc.error_type == "config_error"
        raise typer.Exit(2 if config else 1) from None
    text = fc.model_dump_json(indent=2)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text + "\n", encoding="utf-8")
    if fmt == "json":
        sys.stdout.write(text + "\n")
    else:
        print_forecast(fc, Console())
