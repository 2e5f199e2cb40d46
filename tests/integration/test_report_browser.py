"""The HTML report in a real headless Chromium, driven over the DevTools protocol.

The page must load with no console errors, no exceptions and no network requests; every
chart must be laid out with a real size and draw one mark per data point. Screenshots land
in tests/artifacts/ (git-ignored) for a person to look at. Skipped when no Chromium is
installed (Debian: `apt-get install -y chromium`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest

from pipeline.engine.driver import run_job
from pipeline.report.data import build_report
from pipeline.report.html import render_html
from pipeline.store import Store
from tests.integration.helpers import spec_for, write_shards
from tests.unit.test_report import EVIL_ID, FORECAST, write_fake_job

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
)
CHARTS_JS = """JSON.stringify([...document.querySelectorAll('svg[data-chart]')].map(s => {
  const r = s.getBoundingClientRect();
  const marks = [...s.querySelectorAll('rect, path, circle')];
  return {chart: s.dataset.chart, declared: Number(s.dataset.points), marks: marks.length,
          width: r.width, height: r.height,
          sized: marks.filter(m => m.getBBox().width > 0 && m.getBBox().height > 0).length,
          titled: marks.filter(m => m.querySelector('title')).length};
}))"""
ALL_MARKS_JS = (
    "document.querySelectorAll("
    "'svg[data-chart] rect, svg[data-chart] path, svg[data-chart] circle').length"
)


def _browser() -> str | None:
    return next((b for b in map(shutil.which, BROWSERS) if b), None)


@dataclass
class PageRun:
    """What the browser saw while loading one page."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    charts: list[dict[str, Any]] = field(default_factory=list)
    marks: int = 0
    overflow_px: float = 0.0


class DevTools:
    """Just enough of the DevTools protocol: commands, and events collected as they come."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(self.ws.receive_json(), timeout=30)
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))
            self.events.append(msg)

    async def wait_for(self, event: str, timeout: float = 30) -> None:
        if any(e.get("method") == event for e in self.events):
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = await asyncio.wait_for(self.ws.receive_json(), timeout=timeout)
            self.events.append(msg)
            if msg.get("method") == event:
                return
        raise TimeoutError(event)

    async def evaluate(self, expression: str) -> Any:
        res = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return res["result"].get("value")


@pytest.fixture(scope="module")
def browser_port() -> Iterator[int]:
    """One headless Chromium for the module; its DevTools port read from the profile dir."""
    binary = _browser()
    if binary is None:
        pytest.skip("no Chromium found (Debian: apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="report-browser-") as profile:
        proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            active = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not (active.exists() and active.read_text().strip()):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Chromium did not start (exit code {proc.poll()})")
                time.sleep(0.05)
            yield int(active.read_text().split()[0])
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _load(port: int, page: Path, shot: Path, width: int) -> PageRun:
    async with aiohttp.ClientSession() as http:
        async with http.put(f"http://127.0.0.1:{port}/json/new?about:blank") as resp:
            target = await resp.json(content_type=None)
        try:
            async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                return await _drive(DevTools(ws), page, shot, width)
        finally:
            async with http.get(f"http://127.0.0.1:{port}/json/close/{target['id']}") as resp:
                await resp.read()


async def _drive(dt: DevTools, page: Path, shot: Path, width: int) -> PageRun:
    for domain in ("Page", "Runtime", "Log", "Network"):
        await dt.call(f"{domain}.enable")
    await dt.call(
        "Emulation.setDeviceMetricsOverride",
        width=width,
        height=900,
        deviceScaleFactor=1,
        mobile=width < 600,
    )
    await dt.call("Page.navigate", url=page.as_uri())
    await dt.wait_for("Page.loadEventFired")
    run = PageRun()
    run.charts = json.loads(await dt.evaluate(CHARTS_JS))
    run.marks = int(await dt.evaluate(ALL_MARKS_JS))
    run.overflow_px = float(
        await dt.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    )
    size = (await dt.call("Page.getLayoutMetrics"))["cssContentSize"]
    png = await dt.call(
        "Page.captureScreenshot",
        format="png",
        captureBeyondViewport=True,
        clip={"x": 0, "y": 0, "width": width, "height": size["height"], "scale": 1},
    )
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.write_bytes(base64.b64decode(png["data"]))
    for e in dt.events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            run.errors.append(json.dumps(params["exceptionDetails"])[:300])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            run.errors.append(json.dumps(params.get("args"))[:300])
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            run.errors.append(params["entry"].get("text", "")[:300])
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not url.startswith(("file:", "data:", "about:")):
                run.requests.append(url)
    return run


def _check(run: PageRun, expect_charts: set[str]) -> None:
    assert run.errors == [], run.errors
    assert run.requests == [], f"the page fetched {run.requests}"
    assert {c["chart"] for c in run.charts} == expect_charts
    for c in run.charts:
        assert c["width"] > 100 and c["height"] > 50, c  # laid out, not collapsed
        assert c["marks"] == c["declared"] == c["sized"] == c["titled"], c
    assert run.marks == sum(c["marks"] for c in run.charts) > 0


ALL_CHARTS = {
    "spend-by-tier",
    "spend-by-model",
    "tier-mix",
    "savings",
    "latency",
    "retries",
    "forecast",
}


def test_report_of_a_busy_job_renders_cleanly(browser_port: int, tmp_path: Path) -> None:
    """Two providers, retries, 429s, errors with a hostile id, and a forecast."""
    job = write_fake_job(tmp_path, forecast=FORECAST, evil=True)
    data = build_report(str(job.path))
    page = tmp_path / "report.html"
    page.write_text(render_html(data), encoding="utf-8")

    run = asyncio.run(_load(browser_port, page, ARTIFACTS / "report.png", 1280))
    _check(run, ALL_CHARTS)
    by_name = {c["chart"]: c for c in run.charts}
    assert by_name["forecast"]["marks"] == 4 and by_name["savings"]["marks"] == 2
    assert sum(c["marks"] for c in run.charts if c["chart"] == "latency") > 10
    assert by_name["retries"]["marks"] > len(data.timeline.rows)  # rows, retries and 429s
    assert run.overflow_px <= 0

    # Narrow screens: the page reflows, wide charts scroll inside their cards.
    narrow = asyncio.run(_load(browser_port, page, ARTIFACTS / "report-narrow.png", 420))
    _check(narrow, ALL_CHARTS)
    assert narrow.overflow_px <= 0
    assert EVIL_ID not in page.read_text()


def test_report_of_a_real_run_renders_cleanly(
    browser_port: int, ray_local: None, tmp_path: Path
) -> None:
    write_shards(tmp_path / "in", shards=2, rows=120)
    summary = run_job(spec_for(str(tmp_path / "in"), str(tmp_path / "out")))
    data = build_report(str(tmp_path / "out" / summary.job_id))
    assert data.rows_ok == summary.rows_ok and data.rows_error == summary.rows_error
    assert data.cost_usd == pytest.approx(summary.cost_usd)
    assert data.savings_pct == pytest.approx(summary.savings_pct)
    assert data.forecast is None and data.status == "complete"
    page = tmp_path / "report.html"
    page.write_text(render_html(data), encoding="utf-8")

    run = asyncio.run(_load(browser_port, page, ARTIFACTS / "report-run.png", 1280))
    _check(run, ALL_CHARTS)
    assert {c["chart"]: c["marks"] for c in run.charts}["forecast"] == 0  # "no forecast"


def test_report_reads_a_job_on_s3(s3_endpoint: str, tmp_path: Path) -> None:
    job = write_fake_job(tmp_path, forecast=FORECAST, units=2, rows_per_unit=80)
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="report-jobs")
    remote = Store.open("s3://report-jobs/tierline")
    for f in Store.open(str(tmp_path)).list_files():
        remote.write_bytes(f.path, (tmp_path / f.path).read_bytes())

    on_s3 = build_report(f"s3://report-jobs/tierline/{job.path.name}/")
    local = build_report(str(job.path))
    assert on_s3.prefix.startswith("s3://report-jobs/tierline/")
    assert (on_s3.rows_ok, on_s3.rows_error, on_s3.calls) == (
        local.rows_ok,
        local.rows_error,
        local.calls,
    )
    assert on_s3.cost_usd == pytest.approx(local.cost_usd)
    assert on_s3.timeline == local.timeline and on_s3.forecast == local.forecast
