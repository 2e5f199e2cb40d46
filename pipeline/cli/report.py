"""`tierline report PREFIX`: write a job's HTML report and print its key figures.

    tierline report s3://acme-support/tierline/nightly-tickets-1a2b3c4d5e/ --out report.html

Exit codes as for every command: 0 written, 1 storage kept failing, 2 no job under the
prefix or bad usage.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline.errors import ConfigError, TierlineError
from pipeline.report.data import NotAJob, ReportData, build_report, fmt_delta, fmt_usd
from pipeline.report.html import render_html

FORMATS = ("table", "json")


def report_command(
    prefix: str,
    out: Path | None,
    output_format: str,
    *,
    out_dir: Path | None = None,
    print_json: bool = True,
) -> dict[str, object]:
    """Build the report of the job at `prefix`, write it as HTML (default
    `<out_dir or .>/report-<job_id>.html`), then print the key figures as a table or JSON
    (unless `print_json` is off: the caller prints several jobs as one list). Returns
    the figures."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if output_format not in FORMATS:
        err.print(f"error: --output-format must be one of {', '.join(FORMATS)}", markup=False)
        raise typer.Exit(2)
    try:
        data = build_report(prefix)
    except (NotAJob, ConfigError) as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    except TierlineError as exc:
        err.print(f"error: cannot read the job at {prefix}: {exc}", markup=False)
        raise typer.Exit(1) from None
    name = f"report-{re.sub(r'[^A-Za-z0-9._-]', '_', data.job_id)}.html"
    path = out or (out_dir or Path.cwd()) / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_html(data), encoding="utf-8")
    except OSError as exc:
        err.print(f"error: cannot write {path}: {exc.strerror or exc}", markup=False)
        raise typer.Exit(2) from None
    figures = dataclasses.asdict(data)
    if output_format == "json":
        if print_json:
            print(json.dumps(figures, indent=2, default=str))
        err.print(f"report written to {path}", markup=False)
    else:
        console = Console()
        print_report_table(data, console)
        console.print(f"report written to {path}", markup=False, highlight=False)
    return figures


def print_report_table(data: ReportData, console: Console) -> None:
    """The report's key figures: spend by tier and model, savings, latency, retries, forecast."""
    spend = Table(title=escape(f"{data.job_id}  ({data.status})"), header_style="bold")
    spend.add_column("")
    # calls: paid calls; reused: rows answered without one. As in `tierline run`'s table.
    for col in ("rows", "reused", "calls", "cost", "share"):
        spend.add_column(col, justify="right")
    for label, rows in (("tier", data.by_tier), ("model", data.by_model)):
        for s in rows:
            share = f"{s.cost_usd / data.cost_usd:.0%}" if data.cost_usd else ""
            spend.add_row(
                escape(f"{label} {s.key}"),
                f"{s.rows:,}",
                f"{s.reused:,}",
                f"{s.calls:,}",
                fmt_usd(s.cost_usd),
                share,
            )
        spend.add_section()
    done = f"{data.rows_ok:,} ok / {data.rows_error:,} error"
    reused = f"{data.cache_hits + data.duplicates:,}"
    spend.add_row("total", done, reused, f"{data.calls:,}", fmt_usd(data.cost_usd), "")
    if data.flagship_model:
        base = fmt_usd(data.flagship_baseline_usd)
        spend.add_row(escape(f"all on {data.flagship_model}"), "", "", "", base, "")
    saved = "n/a" if data.savings_pct is None else f"{data.savings_pct:.1f}%"
    spend.add_row("savings", "", "", "", saved, "")
    if any(m.key == "batch" for m in data.by_mode):
        for m in data.by_mode:
            mode = f"mode {m.key or 'sync'}"
            spend.add_row(mode, "", "", f"{m.calls:,}", fmt_usd(m.cost_usd), "")
    if data.cache_hits or data.duplicates:
        kept = "n/a" if data.reuse_saved_usd is None else fmt_usd(data.reuse_saved_usd)
        reused = f"{data.cache_hits:,} cached + {data.duplicates:,} identical"
        spend.add_row("answers reused (not paid)", reused, "", "", kept, "")
    console.print(spend)

    run = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    run.add_column(style="bold")
    run.add_column()
    wall = "n/a" if data.wall_s is None else f"{data.wall_s:,.1f} s"
    units = f"{data.units_committed}" + (f"/{data.units_total}" if data.units_total else "")
    run.add_row("rows", f"{data.rows_total:,} in all, {units} units committed, wall {wall}")
    for h in data.latency:
        figures = f"p50 {h.p50:,.0f} ms, p95 {h.p95:,.0f} ms, p99 {h.p99:,.0f} ms ({h.n:,} rows)"
        run.add_row(escape(f"latency {h.provider}"), figures)
    for d in data.pools:
        run.add_row(
            escape(f"pool {d.tier} {d.deployment}"),
            f"{d.rows:,} rows ({d.share:.0%}), {d.rate_limited:,} 429s, "
            f"p50 {d.p50_ms:,.0f} ms, p95 {d.p95_ms:,.0f} ms",
        )
    tl = data.timeline
    run.add_row("rows retried", f"{sum(tl.retried):,}")
    how = "" if tl.per_call_429 else " (rows that failed as rate_limited)"
    run.add_row("429s", f"{sum(tl.rate_limited):,}{how}")
    f = data.forecast
    if f is None:
        run.add_row("forecast", "no forecast")
    else:
        if f.cost_p50 is not None:
            delta = fmt_delta(f.actual_cost, f.cost_p50)
            run.add_row(
                "forecast cost",
                f"p50 {fmt_usd(f.cost_p50)}, actual {fmt_usd(f.actual_cost)} ({delta})",
            )
        if f.duration_p50 is not None:
            actual = "n/a" if f.actual_duration is None else f"{f.actual_duration:,.1f} s"
            delta = fmt_delta(f.actual_duration, f.duration_p50)
            run.add_row(
                "forecast duration",
                f"p50 {f.duration_p50:,.1f} s, actual {actual}" + (f" ({delta})" if delta else ""),
            )
    for e in data.errors:
        ids = ", ".join(e.example_ids[:3])
        run.add_row(escape(f"errors {e.error_type}"), escape(f"{e.count:,} (e.g. {ids})"))
    console.print(run)
    for p in data.problems:
        console.print(f"[red]{escape(p)}[/]")
    for n in data.notes:
        console.print(f"[dim]note: {escape(n)}[/]")
