"""Answers already bought are not bought again: across jobs, and within a unit."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline.engine.driver import run_job
from pipeline.engine.verify import verify_job
from pipeline.sim import SimConfig, run_in_thread
from pipeline.store import Store
from tests.integration.helpers import read_all, spec_for, ticket_frame

pytestmark = pytest.mark.integration


def _requests(url: str) -> int:
    with urllib.request.urlopen(url.removesuffix("/v1") + "/stats") as r:
        return int(json.load(r)["total"]["requests"])


def test_second_job_over_the_same_rows_pays_nothing_and_identical_rows_go_once(
    tmp_path: Path, ray_local: None
) -> None:
    url, stop = run_in_thread(SimConfig())
    try:
        inp = tmp_path / "in"
        inp.mkdir()
        df = ticket_frame(0, 60)
        # Ten rows repeat the text of another row (different ids): sent once per unit.
        copies = df.head(10).with_columns(
            pl.format("DUP-{}", pl.col("ticket_id")).alias("ticket_id")
        )
        pl.concat([df, copies]).write_parquet(inp / "a.parquet")
        common: dict[str, Any] = {
            "providers": {"p": {"kind": "openai", "base_url": url}},
            "tiers": {
                "cheap": ["p/gpt-4o-mini"],
                "mid": ["p/gpt-4o-mini"],
                "flagship": ["p/gpt-4o"],
            },
            "input": {
                "uri": str(inp),
                "id_column": "ticket_id",
                "text_columns": ["subject", "body"],
                "rows_per_unit": 1000,
            },
        }
        first = run_job(spec_for(str(inp), str(tmp_path / "out"), **common))
        paid_first = _requests(url)
        # Four of the sixty have no text (error rows, never sent), two of them copied.
        assert first.duplicates == 8 and paid_first == first.calls == 56
        # Another job (another id) over the same rows: every answer comes from the cache.
        second = run_job(spec_for(str(inp), str(tmp_path / "out"), name="again", **common))
        assert _requests(url) == paid_first
        assert second.calls == 0 and second.cost_usd == 0.0
        assert second.cache_hits + second.duplicates == first.calls + first.duplicates
        assert second.cache_saved_usd == pytest.approx(first.cost_usd + first.cache_saved_usd)
    finally:
        stop()
    out = Store.open(second.output)
    results, costs = read_all(out, "results"), read_all(out, "costs")
    assert set(costs["call_status"].to_list()) <= {"cached", "duplicate"}
    assert results.height == first.rows_ok
    assert verify_job(second.output).ok and verify_job(first.output).ok


def test_identical_rows_of_units_running_at_once_on_a_worker_are_paid_once(
    tmp_path: Path, ray_local: None
) -> None:
    # One worker runs two units at once; the second unit repeats the first one's texts
    # under other ids. With the cache off, only sharing the calls in flight avoids paying
    # twice: each text must reach the provider once, and every row gets its answer.
    url, stop = run_in_thread(SimConfig(latency={"mean_ms": 300, "jitter_ms": 0}))
    try:
        inp = tmp_path / "in"
        inp.mkdir()
        first = ticket_frame(0, 30).filter(pl.col("body").str.strip_chars() != "")
        again = first.with_columns(pl.format("AGAIN-{}", pl.col("ticket_id")).alias("ticket_id"))
        pl.concat([first, again]).write_parquet(inp / "a.parquet", row_group_size=first.height)
        spec = spec_for(
            str(inp),
            str(tmp_path / "out"),
            providers={"p": {"kind": "openai", "base_url": url}},
            tiers={"cheap": ["p/gpt-4o-mini"], "mid": ["p/gpt-4o"], "flagship": ["p/gpt-4o"]},
            input={
                "uri": str(inp),
                "id_column": "ticket_id",
                "text_columns": ["subject", "body"],
                "rows_per_unit": first.height,
            },
            cache="off",
            run={"workers": 1, "max_in_flight": 64},
        )
        summary = run_job(spec)
        assert summary.units_total == 2 and summary.rows_ok == 2 * first.height
        assert _requests(url) == summary.calls == first.height
        assert summary.duplicates == first.height
        assert verify_job(summary.output).ok
    finally:
        stop()
