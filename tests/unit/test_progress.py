"""Live figures: what the worker counts and what the progress line shows."""

from __future__ import annotations

import io

from rich.console import Console

from pipeline.cli.console import ConsoleProgress
from pipeline.engine.worker import UnitReport
from pipeline.metrics import Metrics


def test_metrics_count_calls_in_flight_429s_and_rows() -> None:
    m = Metrics("job-1")  # no Ray here: Prometheus instruments are no-ops, counts still kept
    with m.call("openai", "gpt-4o"):
        assert m.snapshot()["in_flight"] == {"openai": 1}
    m.limited("openai")
    m.retry("openai", "rate_limited")
    m.row("cheap", True)
    snap = m.snapshot()
    assert snap["in_flight"] == {"openai": 0}
    assert snap["rate_limited"] == {"openai": 1} and snap["rows_done"] == 1


def test_progress_line_shows_rate_budget_forecast_tiers_and_eta() -> None:
    p = ConsoleProgress(Console(file=io.StringIO(), force_terminal=False), every_s=3600)
    p.start("job-1", 1000, 0, 4, budget_usd=5.0, forecast_usd=0.4)
    p.advance(UnitReport(0, 250, 245, 5, 245, 0.1, {"cheap": 200, "flagship": 50}))
    p.live({"unit_rows": 100, "in_flight": {"openai": 12}, "rate_limited": {"openai": 3}})
    line = p.line()
    assert line.startswith("350/1,000 rows")
    for part in (
        "$0.1000 of $5",
        "forecast $0.4000",
        "cheap 80%",
        "flagship 20%",
        "in flight openai 12",
        "429s openai 3",
        "ETA",
    ):
        assert part in line, (part, line)
