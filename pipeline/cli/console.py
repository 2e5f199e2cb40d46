"""What a person sees: a progress bar on a terminal, plain log lines elsewhere, and the
summary as a table."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from pipeline.engine.summary import JobSummary
from pipeline.engine.worker import UnitReport


class ConsoleProgress:
    """Live bar when stderr is a terminal; a log line every few seconds otherwise.

    Shows rows done of all, rows/s, spend against the budget and the forecast, the tier
    mix so far, calls in flight and 429s per provider, and the time left.
    """

    def __init__(self, console: Console | None = None, every_s: float = 5.0) -> None:
        self.console = console or Console(stderr=True)
        self.is_live = self.console.is_terminal
        self.every_s = every_s
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        self.rows_total = 0
        self.rows_base = 0  # committed before this run
        self.rows_done = 0  # committed in this run
        self.unit_rows = 0  # finished inside units still running
        self.cost = 0.0
        self.budget: float | None = None
        self.forecast: float | None = None
        self.tiers: Counter[str] = Counter()
        self.in_flight: dict[str, int] = {}
        self.limited: dict[str, int] = {}
        self.started = 0.0
        self.last_log = 0.0

    def start(
        self,
        job_id: str,
        rows_total: int,
        rows_done: int,
        units_todo: int,
        *,
        budget_usd: float | None = None,
        forecast_usd: float | None = None,
        spent_usd: float = 0.0,
    ) -> None:
        self.rows_total, self.rows_base = rows_total, rows_done
        self.budget, self.forecast, self.cost = budget_usd, forecast_usd, spent_usd
        self.started = self.last_log = time.monotonic()
        self.console.print(
            f"job [bold]{job_id}[/]: {units_todo} units to do, {rows_total} rows in all"
        )
        if self.is_live:
            self.bar = Progress(
                TextColumn("[bold]rows"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=self.console,
                transient=False,
            )
            self.bar.start()
            self.task = self.bar.add_task("rows", total=rows_total, completed=rows_done, info="")

    def line(self) -> str:
        # A poll can see a unit's rows just before its report arrives: never overcount.
        done = min(self.rows_total, self.rows_base + self.rows_done + self.unit_rows)
        elapsed = max(1e-6, time.monotonic() - self.started)
        rate = (self.rows_done + self.unit_rows) / elapsed
        parts = [f"{rate:,.0f} rows/s", f"${self.cost:.4f}"]
        if self.budget:
            parts[-1] += f" of ${self.budget:g}"
        if self.forecast is not None:
            parts.append(f"forecast ${self.forecast:.4f}")
        total = sum(self.tiers.values())
        if total:
            parts.append(" ".join(f"{t} {n / total:.0%}" for t, n in sorted(self.tiers.items())))
        if self.in_flight:
            parts.append(
                "in flight " + " ".join(f"{p} {n}" for p, n in sorted(self.in_flight.items()))
            )
        if any(self.limited.values()):
            parts.append("429s " + " ".join(f"{p} {n}" for p, n in sorted(self.limited.items())))
        left = self.rows_total - done
        if rate > 0 and left > 0:
            parts.append(f"ETA {left / rate:,.0f}s")
        return f"{done:,}/{self.rows_total:,} rows, " + ", ".join(parts)

    def _show(self) -> None:
        if self.bar is not None and self.task is not None:
            done = min(self.rows_total, self.rows_base + self.rows_done + self.unit_rows)
            self.bar.update(self.task, completed=done, info=self.line())
        elif time.monotonic() - self.last_log >= self.every_s:
            self.last_log = time.monotonic()
            print(f"progress: {self.line()}", file=sys.stderr, flush=True)

    def advance(self, report: UnitReport) -> None:
        self.rows_done += report.rows
        self.unit_rows = 0
        self.cost += report.cost_usd
        self.tiers.update(report.tiers)
        self._show()

    def live(self, figures: dict[str, Any]) -> None:
        self.unit_rows = int(figures.get("unit_rows", 0))
        self.in_flight = {k: v for k, v in figures.get("in_flight", {}).items() if v}
        for k, v in figures.get("rate_limited", {}).items():
            self.limited[k] = max(self.limited.get(k, 0), int(v))
        self._show()

    def note(self, message: str) -> None:
        self.console.print(f"[yellow]{message}[/]" if self.is_live else message)

    def stop(self) -> None:
        self.unit_rows, self.in_flight = 0, {}
        if self.bar is not None:
            self._show()
            self.bar.stop()
        else:
            print(f"done: {self.line()}", file=sys.stderr, flush=True)


def summary_table(s: JobSummary) -> Table:
    t = Table(title=f"{s.job_id}  ({s.status})", show_header=True, header_style="bold")
    t.add_column("")
    t.add_column("rows", justify="right")
    t.add_column("reused", justify="right")
    t.add_column("calls", justify="right")
    t.add_column("cost USD", justify="right")
    # calls: paid calls; reused: rows answered without one (cache, identical row). The
    # report's table and summary.json count them the same way (pipeline.engine.figures).
    for tier, b in s.by_tier.items():
        t.add_row(f"tier {tier}", str(b.rows), str(b.reused), str(b.calls), f"{b.cost_usd:.6f}")
    for model, b in s.by_model.items():
        t.add_row(f"model {model}", str(b.rows), str(b.reused), str(b.calls), f"{b.cost_usd:.6f}")
    t.add_section()
    done = f"{s.rows_ok} ok / {s.rows_error} error"
    t.add_row("total", done, str(s.rows_reused), str(s.calls), f"{s.cost_usd:.6f}")
    t.add_row(f"all on {s.flagship_model}", "", "", "", f"{s.flagship_baseline_usd:.6f}")
    t.add_row("savings", "", "", "", f"{s.savings_pct:.1f}%")
    return t


def stopped_line(s: JobSummary, command: str) -> str:
    """One line for a run that stopped early: what was kept, what was spent, how to finish.

    stopped by SIGTERM: kept 0 of 3,000 rows (0/4 units committed) and 221 answered rows
    in journals; spent $0.0265; finish with: tierline run jobs/examples/classify.yaml
    """
    kept = s.rows_total - s.rows_pending
    return (
        f"{s.stopped}: kept {kept:,} of {s.rows_total:,} rows ({s.units_committed}/"
        f"{s.units_total} units committed) and {s.rows_journalled:,} answered rows in "
        f"journals; spent ${s.cost_usd + s.journalled_usd:.4f}; finish with: {command}"
    )


def print_summary(s: JobSummary, console: Console | None = None) -> None:
    console = console or Console()
    console.print(summary_table(s))
    extra = [f"rows {s.rows_total} in all", f"wall {s.wall_s:.1f}s", f"prices {s.price_version}"]
    if s.cache_hits or s.duplicates:
        extra.append(
            f"{s.cache_hits} answers reused from the cache and {s.duplicates} identical rows "
            f"sent once (saved ${s.cache_saved_usd:.4f})"
        )
    if "batch" in s.by_mode:
        spend = ", ".join(f"{m} ${b.cost_usd:.4f} ({b.calls} calls)" for m, b in s.by_mode.items())
        extra.append(f"spend by mode: {spend}")
    if s.cached_input_tokens:
        extra.append(
            f"{s.cached_input_tokens:,} input tokens from the providers' prompt cache "
            f"(saved ${s.prompt_cache_saved_usd:.4f})"
        )
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
    f = s.forecast_vs_actual
    if f:
        cost_err, time_err = f.get("cost_error_pct"), f.get("duration_error_pct")
        console.print(
            f"forecast ${f['forecast_cost_usd']:.4f} against actual ${f['actual_cost_usd']:.4f}"
            + (f" ({cost_err:+.1f}%)" if cost_err is not None else "")
            + f", {f['forecast_duration_s']:.1f} s against {f['actual_duration_s']:.1f} s"
            + (f" ({time_err:+.1f}%)" if time_err is not None else "")
        )
    _print_drift(s, console)
    for etype, n in s.errors_by_type.items():
        console.print(f"  errors {etype}: {n}")
    for path, reason in s.bad_files.items():
        console.print(f"  [red]bad input file[/] {path}: {reason}")
    for u, reason in s.units_failed.items():
        console.print(f"  [red]unit {u} failed[/]: {reason}")
    console.print(f"outputs under {s.output}")


def _print_drift(s: JobSummary, console: Console) -> None:
    """The canary's verdict per deployment and any shift since the previous run."""
    if s.canary is not None:
        c = s.canary
        scores = ", ".join(f"{d.deployment} {d.accuracy:.2f}" for d in c.deployments)
        again = " (earlier pass, not asked again)" if c.reused else f" ${c.cost_usd:.4f}"
        console.print(f"canary {c.rows} rows, floor {c.min_accuracy:g}: {scores}{again}")
    shift = s.shift
    if shift is None:
        return
    if not shift.metrics:
        console.print(f"shift: {shift.note}")
    elif shift.flagged:
        moved = ", ".join(
            f"{m.metric} {m.previous:.2f} -> {m.now:.2f}" for m in shift.metrics if m.flagged
        )
        console.print(
            f"[yellow]shift since {shift.previous_job}[/] (threshold {shift.threshold:g}): {moved}"
        )
    else:
        console.print(f"shift since {shift.previous_job}: none past {shift.threshold:g}")
