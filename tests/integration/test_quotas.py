"""Cluster-wide quotas, retries and fallbacks against a real simulator over HTTP."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline.engine.driver import run_job
from pipeline.sim import SimConfig, run_in_thread
from pipeline.store import Store
from tests.integration.helpers import read_all, spec_for, write_shards

pytestmark = pytest.mark.integration


@pytest.fixture
def sim() -> Iterator[Any]:
    """A standalone simulator; `sim.url` is its OpenAI base URL, `sim.configure(cfg)`."""

    class Handle:
        url = ""

        def stats(self) -> dict[str, Any]:
            with urllib.request.urlopen(self.url.removesuffix("/v1") + "/stats") as r:
                return dict(json.load(r))

        def configure(self, cfg: dict[str, Any]) -> None:
            req = urllib.request.Request(
                self.url.removesuffix("/v1") + "/admin/config",
                data=json.dumps(cfg).encode(),
                headers={"Content-Type": "application/json"},
            )
            urllib.request.urlopen(req).close()

    h = Handle()
    h.url, stop = run_in_thread(SimConfig())
    yield h
    stop()


def openai_provider(url: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "openai", "base_url": url, **extra}


def _ids_once(out: Store, n: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    results, errors = read_all(out, "results"), read_all(out, "errors")
    ids = pl.concat([results["id"], errors["id"]]) if errors.height else results["id"]
    assert ids.n_unique() == ids.len() == n
    return results, errors


def test_two_jobs_sharing_a_provider_stay_within_its_limit(
    tmp_path: Path, ray_local: None, sim: Any
) -> None:
    rpm = 3000  # 50 requests/s, enforced by the simulator per key like a real provider
    sim.configure({"default_limits": {"rpm": rpm}})
    specs = []
    for name in ("job-a", "job-b"):
        write_shards(tmp_path / name, shards=2, rows=100)
        specs.append(
            spec_for(
                str(tmp_path / name),
                str(tmp_path / "out"),
                name=name,
                providers={"p": openai_provider(sim.url, limits={"rpm": rpm})},
                tiers={
                    "cheap": ["p/gpt-4o-mini"],
                    "mid": ["p/gpt-4o-mini"],
                    "flagship": ["p/gpt-4o"],
                },
            )
        )
    summaries: list[Any] = []
    started = time.monotonic()
    threads = [threading.Thread(target=lambda s=s: summaries.append(run_job(s))) for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    stats = sim.stats()
    calls = sum(s.calls for s in summaries)
    assert len(summaries) == 2 and all(s.status == "complete" for s in summaries)
    assert stats["total"]["rate_limited"] == 0, stats["total"]
    # Together they were paced at the shared limit: ~380 calls at 50/s, after a 1 s burst.
    assert wall >= (calls - 60) / (rpm / 60)


def test_429_storm_pauses_and_every_row_still_finishes(
    tmp_path: Path, ray_local: None, sim: Any
) -> None:
    sim.configure({"faults": {"error_rates": {"429": 0.3}, "retry_after_s": 1}})
    data = write_shards(tmp_path / "in", shards=1, rows=80)
    spec = spec_for(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        providers={"p": openai_provider(sim.url)},
        tiers={"cheap": ["p/gpt-4o-mini"], "mid": ["p/gpt-4o-mini"], "flagship": ["p/gpt-4o"]},
        run={"max_attempts": 8, "workers": 1},
    )
    summary = run_job(spec)
    results, errors = _ids_once(
        Store.open(str(tmp_path / "out")).child(summary.job_id), data.height
    )
    assert set(errors["error_type"].to_list()) <= {"empty_text"}
    assert int(results["rate_limited"].sum()) > 0
    assert sim.stats()["total"]["rate_limited"] == int(results["rate_limited"].sum())


def test_401_stops_the_provider_and_rows_fall_back(
    tmp_path: Path, ray_local: None, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-wrong-key-0123456789"
    monkeypatch.setenv("BAD_KEY_FOR_TEST", secret)
    sim.configure({"require_api_key": True, "api_keys": ["sk-the-right-one"]})
    data = write_shards(tmp_path / "in", shards=1, rows=60)
    spec = spec_for(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        providers={
            "locked": openai_provider(sim.url, api_key_env="BAD_KEY_FOR_TEST"),
            "sim": {"kind": "sim", "sim": {"latency_ms": 1}},
        },
        tiers={
            "cheap": ["locked/gpt-4o-mini", "sim/gpt-4o-mini"],
            "mid": ["sim/claude-3-5-haiku"],
            "flagship": ["sim/gpt-4o"],
        },
        run={"workers": 1},
    )
    summary = run_job(spec)
    out = Store.open(str(tmp_path / "out")).child(summary.job_id)
    results, _ = _ids_once(out, data.height)
    assert "locked" not in set(results["provider"].to_list())
    # The provider was dropped after its first 401, not hammered for every row.
    assert sim.stats()["total"]["requests"] <= 2
    blob = b"".join(out.read_bytes(f.path) for f in out.list_files())
    assert secret.encode() not in blob


@pytest.mark.parametrize("on_tier_down", ["escalate", "defer"])
def test_tier_down_escalates_or_defers(tmp_path: Path, ray_local: None, on_tier_down: str) -> None:
    data = write_shards(tmp_path / "in", shards=1, rows=60)
    spec = spec_for(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        providers={
            # Nothing listens on port 9 of loopback: every call is refused at once.
            "down": openai_provider(
                "http://127.0.0.1:9/v1", timeouts={"connect_s": 1, "total_s": 2}
            ),
            "sim": {"kind": "sim", "sim": {"latency_ms": 1}},
        },
        tiers={
            "cheap": ["down/gpt-4o-mini"],
            "mid": ["sim/claude-3-5-haiku"],
            "flagship": ["sim/gpt-4o"],
        },
        routing={"policy": "rules", "rules": [], "default": "cheap", "on_tier_down": on_tier_down},
        run={"workers": 1, "max_attempts": 2, "breaker_failures": 3},
    )
    summary = run_job(spec)
    results, errors = _ids_once(
        Store.open(str(tmp_path / "out")).child(summary.job_id), data.height
    )
    if on_tier_down == "escalate":
        assert set(results["tier"].to_list()) == {"mid"}
        assert set(results["routed_tier"].to_list()) == {"cheap"}
        assert set(errors["error_type"].to_list()) == {"empty_text"}
    else:
        assert results.height == 0
        deferred = errors.filter(pl.col("error_type") == "deferred")
        empty = errors.filter(pl.col("error_type") == "empty_text")
        assert empty.height > 0 and deferred.height == data.height - empty.height
        assert deferred["retryable"].all() and not empty["retryable"].any()
        assert "down" in deferred["message"][0]


def test_faults_leave_every_row_exactly_once(tmp_path: Path, ray_local: None, sim: Any) -> None:
    sim.configure({"faults": {"error_rates": {"500": 0.1}, "hang_rate": 0.02, "max_hang_s": 30}})
    data = write_shards(tmp_path / "in", shards=2, rows=100)
    spec = spec_for(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        providers={"p": openai_provider(sim.url, timeouts={"connect_s": 1, "total_s": 1})},
        tiers={"cheap": ["p/gpt-4o-mini"], "mid": ["p/gpt-4o-mini"], "flagship": ["p/gpt-4o"]},
        run={"max_attempts": 4, "breaker_failures": 50},
    )
    summary = run_job(spec)
    results, _ = _ids_once(Store.open(str(tmp_path / "out")).child(summary.job_id), data.height)
    assert int(results["retries"].sum()) > 0
    assert summary.status == "complete"


def test_deferred_rows_are_finished_by_a_rerun(tmp_path: Path, ray_local: None, sim: Any) -> None:
    data = write_shards(tmp_path / "in", shards=1, rows=60)
    sim.configure({"faults": {"error_rates": {"503": 1.0}}})
    spec = spec_for(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        providers={"p": openai_provider(sim.url, timeouts={"connect_s": 1, "total_s": 2})},
        tiers={"cheap": ["p/gpt-4o-mini"], "mid": ["p/gpt-4o-mini"], "flagship": ["p/gpt-4o"]},
        routing={"policy": "rules", "rules": [], "default": "cheap", "on_tier_down": "defer"},
        run={"workers": 1, "max_attempts": 2, "breaker_failures": 2},
    )
    first = run_job(spec)
    assert first.status == "incomplete" and first.rows_retryable == first.rows_error - 4
    sim.configure({})  # the provider is back
    second = run_job(spec)
    out = Store.open(str(tmp_path / "out")).child(second.job_id)
    results, errors = _ids_once(out, data.height)
    assert second.status == "complete" and second.rows_retryable == 0
    assert set(errors["error_type"].to_list()) == {"empty_text"}
    # Only the next generation's files remain: a glob over the folders sees each id once.
    assert len(out.list_files("results")) == len(out.list_files("_commits"))
    assert second.calls == results.height
