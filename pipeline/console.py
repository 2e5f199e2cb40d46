"""What a person sees: a progress bar on a terminal, plain log lines elsewhere, and the
summary as a table."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from pipeline.summary import JobSummary
from pipeline.worker import UnitReport


class ConsoleProgress:
    """Live bar when stderr is a terminal; a log line every few seconds otherwise."""

    def __init__(self, console: Console | None = None, every_s: float = 5.0) -> None:
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal
        self.every_s = every_s
        self.bar: Progress | None = None
        self.task: int | None = None
        self.rows_total = 0
        self.rows_done = 0
        self.cost = 0.0
        self.started = 0.0
        self.last_log = 0.0

    def start(self, job_id: str, rows_total: int, rows_done: int, units_todo: int) -> None:
        self.rows_total, self.rows_done = rows_total, rows_done
        self.started = self.last_log = time.monotonic()
        self.console.print(
            f"job [bold]{job_id}[/]: {units_todo} units to do, {rows_total} rows in all"
        )
        if self.live:
            self.bar = Progress(
                TextColumn("[bold]rows"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} rows/s  ${task.fields[cost]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self.bar.start()
            self.task = self.bar.add_task(
                "rows", total=rows_total, completed=rows_done, rate="0", cost="0.0000"
            )

    def advance(self, report: UnitReport) -> None:
        self.rows_done += report.rows
        self.cost += report.cost_usd
        elapsed = max(1e-6, time.monotonic() - self.started)
        rate = f"{(self.rows_done / elapsed):,.0f}"
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, advance=report.rows, rate=rate, cost=f"{self.cost:.4f}")
        elif time.monotonic() - self.last_log >= self.every_s:
            self.last_log = time.monotonic()
            print(
                f"progress: {self.rows_done}/{self.rows_total} rows, "
                f"{rate} rows/s, ${self.cost:.4f}",
                file=sys.stderr,
                flush=True,
            )

    def note(self, message: str) -> None:
        self.console.print(f"[yellow]{message}[/]" if self.live else message)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def summary_table(s: JobSummary) -> Table:
    t = Table(title=f"{s.job_id}  ({s.status})", show_header=True, header_style="bold")
    t.add_column("")
    t.add_column("rows", justify="right")
    t.add_column("calls", justify="right")
    t.add_column("cost USD", justify="right")
    for tier, b in s.by_tier.items():
        t.add_row(f"tier {tier}", str(b.rows), str(b.calls), f"{b.cost_usd:.6f}")
    for model, b in s.by_model.items():
        t.add_row(f"model {model}", str(b.rows), str(b.calls), f"{b.cost_usd:.6f}")
    t.add_section()
    t.add_row("total", f"{s.rows_ok} ok / {s.rows_error} error", str(s.calls), f"{s.cost_usd:.6f}")
    t.add_row(f"all on {s.flagship_model}", "", "", f"{s.flagship_baseline_usd:.6f}")
    t.add_row("savings", "", "", f"{s.savings_pct:.1f}%")
    return t


def print_summary(s: JobSummary, console: Console | None = None) -> None:
    console = console or Console()
    console.print(summary_table(s))
    extra = [f"rows {s.rows_total} in all", f"wall {s.wall_s:.1f}s", f"prices {s.price_version}"]
    if s.rows_duplicate:
        extra.append(f"{s.rows_duplicate} duplicate-id rows skipped")
    if s.rows_retryable:
        extra.append(
            f"{s.rows_retryable} rows deferred or over budget "
            "(rerun the same command to finish them)"
        )
    if s.rows_pending:
        extra.append(f"{s.rows_pending} rows not done yet (rerun the same command to resume)")
    console.print(", ".join(extra))
    for etype, n in s.errors_by_type.items():
        console.print(f"  errors {etype}: {n}")
    for f, reason in s.bad_files.items():
        console.print(f"  [red]bad input file[/] {f}: {reason}")
    for u, reason in s.units_failed.items():
        console.print(f"  [red]unit {u} failed[/]: {reason}")
    console.print(f"outputs under {s.output}")
