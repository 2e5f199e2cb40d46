"""The job report: figures read from a hand-written job folder, and the HTML drawn from them."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from rich.console import Console

from pipeline.cli.report import print_report_table, report_command
from pipeline.report.data import NotAJob, ReportData, build_report, fmt_usd
from pipeline.report.html import render_html
from pipeline.report.svg import nice_ticks
from pipeline.store import Store
from schemas.prices import load_prices
from schemas.records import COSTS, ERRORS, RESULTS, FileEntry, UnitCommit

EVIL_ID = "<script>alert(1)</script>"
EVIL_MESSAGE = '"><img src=x onerror=alert(2)> & more'
T0 = datetime(2026, 11, 27, 22, 0, 0, tzinfo=UTC)
DEPLOYMENTS = {  # tier -> (provider, model, dollars per call)
    "cheap": ("openai", "gpt-4o-mini", 0.00002),
    "mid": ("anthropic", "claude-3-5-haiku", 0.0005),
    "flagship": ("openai", "gpt-4o", 0.0007),
}


@dataclass
class FakeJob:
    """What was written, so tests can check the report against it."""

    path: Path
    results: pl.DataFrame
    costs: pl.DataFrame
    errors: pl.DataFrame
    stray_ids: list[str] = field(default_factory=list)


def _parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def write_fake_job(
    root: Path,
    *,
    job_id: str = "fake-tickets-0123456789",
    units: int = 4,
    rows_per_unit: int = 250,
    summary: bool = True,
    forecast: Mapping[str, object] | None = None,
    evil: bool = False,
    seed: int = 3,
) -> FakeJob:
    """A job folder as a run writes it: unit files, commit markers, summary, forecast.

    Rows spread over several minutes, some retried, some failed as rate_limited (429),
    timeout or invalid_output; latency is log-normal around 30-400 ms per provider."""
    rng = random.Random(seed)
    prefix = root / job_id
    store = Store.open(str(prefix))
    all_r: list[dict[str, Any]] = []
    all_c: list[dict[str, Any]] = []
    all_e: list[dict[str, Any]] = []
    for u in range(units):
        results: list[dict[str, Any]] = []
        costs: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        done_at = T0 + timedelta(seconds=40 * u)
        for i in range(rows_per_unit):
            rid = f"T-{u * rows_per_unit + i:06d}"
            tier = rng.choices(["cheap", "mid", "flagship"], [0.75, 0.15, 0.10])[0]
            provider, model, price = DEPLOYMENTS[tier]
            roll = rng.random()
            kind = rng.choice(["rate_limited", "rate_limited", "timeout", "invalid_output"])
            message = f"{kind} after 4 attempts"
            if evil and u == 0 and i == 0:  # user data that must come out escaped
                rid, roll, kind, message = EVIL_ID, 0.0, "invalid_output", EVIL_MESSAGE
            if roll < 0.04:
                errors.append(
                    {"id": rid, "error_type": kind, "message": message, "attempts": 4,
                     "tier": tier, "provider": provider, "model": model, "retryable": False,
                     "unit": u}
                )  # fmt: skip
                continue
            attempts = 1 if roll > 0.12 else rng.choice([2, 3])
            limited = rng.randint(0, attempts - 1) if u == 2 else 0  # a burst of 429s
            mean = 3.4 if provider == "openai" else 4.6
            at = done_at + timedelta(seconds=rng.uniform(0, 35))
            routed = "cheap" if tier == "mid" and i % 3 == 0 else tier
            results.append(
                {"id": rid, "output": "billing", "tier": tier, "routed_tier": routed,
                 "provider": provider, "model": model, "status": "ok", "attempts": attempts,
                 "retries": attempts - 1, "rate_limited": limited,
                 "latency_ms": rng.lognormvariate(mean, 0.45), "unit": u, "completed_at": at}
            )  # fmt: skip
            # The last unit reuses answers: from the response cache, or an identical row's.
            reuse = None
            if u == 3 and i % 10 in (1, 2):
                reuse = "cached" if i % 10 == 1 else "duplicate"
            costs.append(
                {"id": rid, "provider": provider, "model": model, "tier": tier,
                 "input_tokens": 120, "output_tokens": 1, "cost_usd": 0.0 if reuse else price,
                 "price_version": "2026-11-01", "call_status": reuse or "ok", "attempt": attempts,
                 "token_method": "provider_usage", "unit": u}
            )  # fmt: skip
        files = {}
        for folder, rows, schema in (
            ("results", results, RESULTS),
            ("costs", costs, COSTS),
            ("errors", errors, ERRORS),
        ):
            data = _parquet(pa.Table.from_pylist(rows, schema=schema))
            rel = f"{folder}/unit-{u:05d}.parquet"
            store.write_bytes(rel, data)
            files[folder] = FileEntry(
                path=rel, rows=len(rows), sha256=hashlib.sha256(data).hexdigest()
            )
        commit = UnitCommit(
            job_id=job_id, unit=u, source=f"part-{u}.parquet", row_groups=[0], row_offset=0,
            row_count=rows_per_unit, rows_ok=len(results), rows_error=len(errors),
            cost_usd=sum(c["cost_usd"] for c in costs), calls=len(costs),
            results=files["results"], costs=files["costs"], errors=files["errors"],
            written_at=(done_at + timedelta(seconds=36)).isoformat(),
        )  # fmt: skip
        store.write_bytes(f"_commits/unit-{u:05d}.json", commit.model_dump_json().encode())
        all_r += results
        all_c += costs
        all_e += errors
    job = FakeJob(
        prefix,
        pl.DataFrame(pl.from_arrow(pa.Table.from_pylist(all_r, schema=RESULTS))),
        pl.DataFrame(pl.from_arrow(pa.Table.from_pylist(all_c, schema=COSTS))),
        pl.DataFrame(pl.from_arrow(pa.Table.from_pylist(all_e, schema=ERRORS))),
    )
    # Written by a unit that never committed: the report must not count it.
    stray = pa.Table.from_pylist(
        [{"id": "STRAY-1", "tier": "cheap", "provider": "openai", "model": "gpt-4o-mini",
          "attempts": 9, "latency_ms": 1.0, "unit": 99, "completed_at": T0}],
        schema=RESULTS,
    )  # fmt: skip
    store.write_bytes("results/unit-00099.parquet", _parquet(stray))
    job.stray_ids = ["STRAY-1"]
    if summary:
        _write_summary(store, job, job_id, units * rows_per_unit)
    if forecast is not None:
        store.write_bytes("forecast.json", json.dumps(forecast).encode())
    return job


def _write_summary(store: Store, job: FakeJob, job_id: str, rows_total: int) -> None:
    """summary.json as the driver writes it (the fields of pipeline.engine.summary.JobSummary)."""
    cost = float(job.costs["cost_usd"].sum())
    baseline = job.costs.height * DEPLOYMENTS["flagship"][2]
    doc = {
        "job_id": job_id, "name": "fake-tickets", "status": "complete",
        "output": str(job.path), "rows_total": rows_total, "rows_ok": job.results.height,
        "rows_error": job.errors.height, "rows_duplicate": 0, "rows_retryable": 0,
        "rows_pending": 0, "units_total": 4, "units_committed": 4, "units_failed": {},
        "bad_files": {}, "calls": job.costs.height, "cost_usd": cost, "by_tier": {},
        "by_model": {}, "errors_by_type": {}, "flagship_model": "openai/gpt-4o",
        "flagship_baseline_usd": baseline, "savings_pct": (1 - cost / baseline) * 100,
        "price_version": "2026-11-01", "budget_usd": 5.0, "wall_s": 171.5,
        "a_field_from_a_newer_version": True,
    }  # fmt: skip
    store.write_bytes("summary.json", json.dumps(doc, indent=2).encode())


FORECAST = {"cost_usd": {"p10": 0.09, "p50": 0.12, "p90": 0.16}, "duration_s": {"p50": 150.0}}


class _Charts(HTMLParser):
    """Counts the drawn marks of each `svg[data-chart]` and checks each has a <title>."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: dict[str, int] = {}
        self.declared: dict[str, int] = {}
        self.untitled = 0
        self.chart: str | None = None
        self.open_mark: str | None = None
        self.titled = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "svg" and "data-chart" in a:
            self.chart = str(a["data-chart"])
            self.marks.setdefault(self.chart, 0)
            self.declared[self.chart] = self.declared.get(self.chart, 0) + int(
                a["data-points"] or 0
            )
        elif self.chart and tag in ("rect", "path", "circle"):
            self.marks[self.chart] += 1
            self.open_mark, self.titled = tag, False
        elif tag == "title" and self.open_mark:
            self.titled = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self.chart = None
        elif tag == self.open_mark:
            self.untitled += not self.titled
            self.open_mark = None


def charts_of(html: str) -> _Charts:
    p = _Charts()
    p.feed(html)
    return p


@pytest.fixture
def job(tmp_path: Path) -> FakeJob:
    return write_fake_job(tmp_path, forecast=FORECAST, evil=True)


@pytest.fixture
def data(job: FakeJob) -> ReportData:
    return build_report(str(job.path))


def test_figures_come_from_the_committed_units(job: FakeJob, data: ReportData) -> None:
    assert data.job_id == "fake-tickets-0123456789" and data.status == "complete"
    assert data.rows_ok == job.results.height and data.rows_error == job.errors.height
    reused = job.costs.filter(pl.col("call_status").is_in(["cached", "duplicate"]))
    assert 0 < reused.height < job.costs.height
    assert data.calls == job.costs.height - reused.height  # answers reused are not calls
    assert sum(s.calls for s in data.by_tier) == data.calls
    assert data.cost_usd == pytest.approx(float(job.costs["cost_usd"].sum()))
    assert sum(s.cost_usd for s in data.by_tier) == pytest.approx(data.cost_usd)
    assert sum(s.cost_usd for s in data.by_model) == pytest.approx(data.cost_usd)
    assert sum(s.calls for s in data.by_tier_model) == data.calls
    pairs = job.costs.select("tier", pl.format("{}/{}", "provider", "model")).unique().rows()
    assert {(s.group, s.key) for s in data.by_tier_model} == set(pairs)
    assert [s.key for s in data.by_tier] == ["cheap", "mid", "flagship"]
    routed = pl.concat([job.results.select("tier"), job.errors.select("tier")])
    assert {s.key: s.rows for s in data.by_tier} == dict(routed.group_by("tier").len().rows())
    assert {s.key for s in data.by_model} == {
        "openai/gpt-4o-mini",
        "anthropic/claude-3-5-haiku",
        "openai/gpt-4o",
    }
    assert data.savings_pct is not None and 0 < data.savings_pct < 100
    # The stray file has no commit marker: its row is nowhere.
    assert data.rows_ok + data.rows_error == 4 * 250
    assert sum(data.timeline.rows) == job.results.height


def test_reused_answers_and_what_they_saved(job: FakeJob, data: ReportData) -> None:
    status = job.costs["call_status"]
    assert data.cache_hits == (status == "cached").sum() > 0
    assert data.duplicates == (status == "duplicate").sum() > 0
    # The summary has no figure here, so the report prices the reused calls itself.
    prices = load_prices()
    free = job.costs.filter(status.is_in(["cached", "duplicate"]))
    expected = sum(
        prices.lookup(m).input_per_mtok * i / 1e6 + prices.lookup(m).output_per_mtok * o / 1e6
        for m, i, o in free.select("model", "input_tokens", "output_tokens").iter_rows()
    )
    assert data.reuse_saved_usd == pytest.approx(expected)
    html = render_html(data)
    assert "Answers reused" in html and fmt_usd(expected) in html
    console = Console(record=True, width=140)
    print_report_table(data, console)
    assert f"{data.cache_hits:,} cached + {data.duplicates:,} identical" in console.export_text()


def test_latency_retries_and_429s(job: FakeJob, data: ReportData) -> None:
    # Latency is of rows that made calls: a reused answer waited for none of its own.
    reused = job.costs.filter(pl.col("call_status").is_in(["cached", "duplicate"]))["id"]
    called = job.results.filter(~pl.col("id").is_in(reused.implode()))
    per_provider = dict(called.group_by("provider").len().rows())
    assert {h.provider: sum(h.counts) for h in data.latency} == per_provider
    for h in data.latency:
        assert len(h.edges_ms) == len(h.counts) + 1 and h.p50 <= h.p95 <= h.p99
    anthropic = next(h for h in data.latency if h.provider == "anthropic")
    lat = called.filter(pl.col("provider") == "anthropic")["latency_ms"]
    # Read from fixed buckets 12% wide (they add up across units): within a bucket.
    assert anthropic.p50 == pytest.approx(lat.median(), rel=0.06)
    assert anthropic.p95 == pytest.approx(lat.quantile(0.95), rel=0.12)
    tl = data.timeline
    assert sum(tl.retried) == job.results.filter(pl.col("attempts") > 1).height > 0
    failed = job.errors.filter(pl.col("error_type") == "rate_limited").height
    answers = int(job.results["rate_limited"].sum())
    assert failed > 0 and answers > 0 and tl.per_call_429
    assert sum(tl.rate_limited) == answers + failed
    assert 1 <= tl.step_s <= 5 and len(tl.rows) <= 60  # about three minutes of work
    assert data.rows_escalated == job.results.filter(pl.col("routed_tier") != pl.col("tier")).height


def test_errors_keep_five_example_ids_each(job: FakeJob, data: ReportData) -> None:
    counts = dict(job.errors.group_by("error_type").len().rows())
    assert {e.error_type: e.count for e in data.errors} == counts
    assert [e.count for e in data.errors] == sorted(counts.values(), reverse=True)
    for e in data.errors:
        assert 1 <= len(e.example_ids) <= 5
        of_type = job.errors.filter(pl.col("error_type") == e.error_type)["id"].to_list()
        assert set(e.example_ids) <= set(of_type)


def test_forecast_against_actual(data: ReportData) -> None:
    f = data.forecast
    assert f is not None
    assert (f.cost_low, f.cost_p50, f.cost_high) == (0.09, 0.12, 0.16)
    assert f.duration_p50 == 150.0 and f.duration_low is None
    assert f.actual_cost == pytest.approx(data.cost_usd) and f.actual_duration == 171.5


@pytest.mark.parametrize(
    ("doc", "cost", "duration"),
    [
        ({"cost_usd.p50": 1.5, "duration_s.p50": 30}, 1.5, 30.0),
        ({"cost_usd": 2.0}, 2.0, None),
        ({"cost_usd": {"p50": "cheap"}, "duration_s": {"p50": 12}}, None, 12.0),
    ],
)
def test_forecast_formats_are_read_defensively(
    tmp_path: Path, doc: dict[str, object], cost: float | None, duration: float | None
) -> None:
    job = write_fake_job(tmp_path, units=1, rows_per_unit=20, forecast=doc)
    f = build_report(str(job.path)).forecast
    assert f is not None and (f.cost_p50, f.duration_p50) == (cost, duration)


@pytest.mark.parametrize("doc", [[1, 2], {"cost_usd": None}, {"other": 1}])
def test_unusable_forecast_is_no_forecast(tmp_path: Path, doc: object) -> None:
    job = write_fake_job(tmp_path, units=1, rows_per_unit=20)
    (job.path / "forecast.json").write_text(json.dumps(doc))
    data = build_report(str(job.path))
    assert data.forecast is None and any("forecast.json" in n for n in data.notes)
    assert "no forecast" in render_html(data)


def test_without_summary_figures_cover_committed_units(tmp_path: Path) -> None:
    job = write_fake_job(tmp_path, summary=False, units=2, rows_per_unit=50)
    data = build_report(str(job.path))
    assert data.status == "incomplete" and data.rows_total == 100
    assert data.savings_pct is None and data.wall_s is None and data.forecast is None
    assert any("no summary.json" in n for n in data.notes)
    html = render_html(data)
    assert "no forecast" in html and "n/a" in html


def test_a_unit_whose_files_disagree_with_its_marker_is_left_out(tmp_path: Path) -> None:
    job = write_fake_job(tmp_path, units=3, rows_per_unit=40)
    (job.path / "costs" / "unit-00001.parquet").write_bytes(
        _parquet(pa.Table.from_pylist([], schema=COSTS))
    )
    (job.path / "_commits" / "unit-00002.json").write_text("{not json")
    data = build_report(str(job.path))
    assert data.units_committed == 2  # unit 2's marker is unreadable
    assert data.rows_ok + data.rows_error == 40  # unit 1 disagrees, only unit 0 counts
    assert any("unit 1 left out" in n for n in data.notes)
    assert any("unit-00002.json" in n for n in data.notes)


def test_a_prefix_without_a_job_names_the_jobs_below_it(tmp_path: Path) -> None:
    write_fake_job(tmp_path, units=1, rows_per_unit=10)
    with pytest.raises(NotAJob, match="fake-tickets-0123456789"):
        build_report(str(tmp_path))
    with pytest.raises(NotAJob, match="holds no tierline job"):
        build_report(str(tmp_path / "missing"))


def test_every_chart_draws_one_mark_per_data_point(data: ReportData) -> None:
    html = render_html(data)
    charts = charts_of(html)
    tl = data.timeline
    expected = {
        "spend-by-tier": len([s for s in data.by_tier_model if s.cost_usd > 0]),
        "spend-by-model": len(data.by_model),
        "tier-mix": len(data.by_tier),
        "savings": 2,
        "latency": sum(1 for h in data.latency for n in h.counts if n),
        "retries": sum(1 for v in (*tl.rows, *tl.retried, *tl.rate_limited) if v),
        "forecast": 4,  # cost p50 and actual, duration p50 and actual
    }
    assert charts.marks == expected
    assert charts.declared == expected
    assert charts.untitled == 0
    assert html.count('data-chart="latency"') == 2  # one histogram per provider
    assert expected["spend-by-tier"] == 3 and expected["retries"] > len(tl.rows)


def test_page_is_self_contained(data: ReportData) -> None:
    html = render_html(data)
    assert html.startswith("<!doctype html>")
    assert not re.search(r"<script|<link|<iframe|<object|<embed|<img|@import|url\(", html, re.I)
    assert not re.search(r"""(src|href|xlink:href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)


def test_user_strings_are_escaped(data: ReportData) -> None:
    html = render_html(data)
    assert EVIL_ID not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img" not in html and "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in html


def test_nothing_committed_yet_still_renders(tmp_path: Path) -> None:
    job = write_fake_job(tmp_path, units=1, rows_per_unit=5)
    for p in (job.path / "_commits").iterdir():
        p.unlink()
    data = build_report(str(job.path))
    assert data.rows_ok == data.calls == 0 and data.units_committed == 0
    charts = charts_of(render_html(data))
    assert charts.marks.keys() >= {"spend-by-tier", "tier-mix", "latency", "retries", "forecast"}
    assert charts.marks["tier-mix"] == charts.marks["latency"] == charts.marks["retries"] == 0


def test_files_without_per_row_429_counts_still_report(tmp_path: Path) -> None:
    job = write_fake_job(tmp_path, units=3, rows_per_unit=60)
    for rel in (job.path / "results").glob("unit-0000*.parquet"):
        table = pq.read_table(rel)
        old = table.drop_columns(["rate_limited", "retries", "routed_tier"])
        rel.write_bytes(_parquet(old))
    data = build_report(str(job.path))
    assert not data.timeline.per_call_429 and data.rows_escalated == 0
    failed = job.errors.filter(pl.col("error_type") == "rate_limited").height
    assert sum(data.timeline.rate_limited) == failed
    assert "predate per-row 429 counts" in render_html(data)


def test_terminal_table_has_the_key_figures(data: ReportData) -> None:
    console = Console(record=True, width=140)
    print_report_table(data, console)
    text = console.export_text()
    for figure in ("tier cheap", "model openai/gpt-4o", "savings", f"{data.savings_pct:.1f}%"):
        assert figure in text
    assert "latency anthropic" in text and "forecast cost" in text and "rate_limited" in text
    assert fmt_usd(data.cost_usd) in text
    assert EVIL_ID in text  # shown verbatim: user strings are never read as rich markup


def test_command_writes_the_page_and_exits_2_without_a_job(
    job: FakeJob,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    report_command(str(job.path), None, "json")
    page = tmp_path / "report-fake-tickets-0123456789.html"
    assert page.read_text().startswith("<!doctype html>")
    assert json.loads(capsys.readouterr().out)["job_id"] == "fake-tickets-0123456789"
    report_command(str(job.path), tmp_path / "r.html", "table")
    assert "report written to" in capsys.readouterr().out and (tmp_path / "r.html").exists()
    with pytest.raises(typer.Exit) as exc:
        report_command(str(tmp_path / "empty"), None, "table")
    assert exc.value.exit_code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "holds no tierline job" in err and "\n" not in err


def test_nice_ticks_cover_the_maximum() -> None:
    assert nice_ticks(0.187) == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert nice_ticks(1489, 3)[-1] >= 1489 and nice_ticks(0) == [0.0, 1.0]


def test_pool_shares_count_rows_429s_and_latency_per_deployment() -> None:
    """Each deployment's share of its tier's rows, the 429s rows met on it and its latency,
    summed from two units' figures as the report sums its markers."""
    from pipeline.engine.figures import conform, unit_figures
    from pipeline.report.data import deployment_shares
    from schemas.figures import UnitFigures
    from schemas.records import COSTS, ERRORS, RESULTS

    results = conform(
        pl.DataFrame(
            {
                "id": ["1", "2", "3", "4", "5"],
                "tier": ["flagship"] * 4 + ["cheap"],
                "provider": ["a", "b", "b", "b", "c"],
                "model": ["gpt-4o"] * 4 + ["gpt-4o-mini"],
                "latency_ms": [50.0, 40.0, 60.0, 5000.0, 20.0],
                # The second row met a 429 on a, then b answered it.
                "rate_limited_by": [None, '{"a/gpt-4o": 1}', None, '{"a/gpt-4o": 2}', None],
            }
        ),
        RESULTS,
    )
    costs = pl.DataFrame(pl.from_arrow(COSTS.empty_table()))
    errors = pl.DataFrame(pl.from_arrow(ERRORS.empty_table()))
    units = [unit_figures(part, costs, errors) for part in (results[:2], results[2:])]
    a, b = deployment_shares(UnitFigures.total(units).pools)  # cheap: one deployment, no 429s
    assert (a.deployment, a.rows, a.share, a.rate_limited) == ("a/gpt-4o", 1, 0.25, 3)
    assert (b.deployment, b.rows, b.share, b.rate_limited) == ("b/gpt-4o", 3, 0.75, 0)
    # The median of 40, 60 and 5,000 ms, read from fixed buckets (within 12%).
    assert b.p50_ms == pytest.approx(60.0, rel=0.12)


def test_the_timeline_keeps_rows_whose_time_rounds_past_its_start() -> None:
    """1764950000.3 s on 0.1 s buckets: floor(t / 0.1) * 0.1 is a hair above t, which once
    left the timeline no bucket at all (the report failed with an IndexError)."""
    from pipeline.report.data import timeline
    from schemas.figures import Completions

    t = 1764950000.3
    one = Completions(start_s=t, step_s=0.1, buckets={0: [3, 1, 2]})
    later = Completions(start_s=t, step_s=0.1, buckets={0: [1, 0, 0], 25: [4, 0, 1]})
    tl = timeline([one, later])
    assert sum(tl.rows) == 8 and sum(tl.retried) == 1 and sum(tl.rate_limited) == 3
    assert tl.rows[0] == 4 and tl.rows[-1] == 4
    assert tl.start is not None and tl.start.timestamp() <= t + 1e-6
    assert timeline([one]).rows == (3,)
