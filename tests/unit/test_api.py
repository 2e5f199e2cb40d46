"""The Python entry point checks a spec as `tierline validate` does, before Ray starts, and
an incomplete job is a result that says why (and raises on request)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import ray

import pipeline
from pipeline.engine.checks import check_spec
from pipeline.engine.summary import JobSummary
from schemas.job import load_spec

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ray_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray may already run in this process (another test started it): what counts is
    that the call under test does not reach it."""

    def never(*_: Any, **__: Any) -> None:
        raise AssertionError("Ray was started")

    monkeypatch.setattr(ray, "init", never)


def _unpriced(tmp_path: Path) -> Path:
    text = (REPO / "jobs/examples/classify.yaml").read_text()
    text = text.replace("sim/gpt-4o-mini", "sim/gpt-unpriced-9")
    text = text.replace("jobs/examples/data", str(REPO / "jobs/examples/data"))
    spec = tmp_path / "unpriced.yaml"
    spec.write_text(text)
    return spec


def test_run_refuses_an_unpriced_spec_before_ray_with_the_validate_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ray_refused: None
) -> None:
    import pipeline.engine.driver as driver

    def never(*_: Any, **__: Any) -> None:
        raise AssertionError("the job was started")

    monkeypatch.setattr(driver, "run_job", never)
    spec = _unpriced(tmp_path)
    for how in (spec, pipeline.load_spec(spec), str(spec)):
        with pytest.raises(pipeline.SpecError) as exc:
            pipeline.run(how, output=str(tmp_path / "out"))
        assert any(p.startswith("tiers.cheap.0: no price for model 'gpt-unpriced-9'")
                   for p in exc.value.problems)  # fmt: skip
        # The very problems `tierline validate` prints (it calls check_spec too).
        assert exc.value.problems == check_spec(load_spec(spec))
    assert not (tmp_path / "out").exists()


def test_the_engine_itself_checks_before_it_starts(tmp_path: Path, ray_refused: None) -> None:
    """A caller that goes around the public API gets the same refusal, not a job that
    retries every unit against a price it cannot find."""
    from pipeline.engine.driver import run_job

    with pytest.raises(pipeline.SpecError, match=r"tiers\.cheap\.0: no price"):
        run_job(load_spec(_unpriced(tmp_path)), output_uri=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def _summary(**over: Any) -> JobSummary:
    doc: dict[str, Any] = dict(
        job_id="demo-1", name="demo", status="incomplete", output="/tmp/x", rows_total=10,
        rows_ok=4, rows_error=1, rows_duplicate=0, rows_retryable=2, rows_pending=3,
        units_total=3, units_committed=2, units_failed={"2": "input file unreadable"},
        bad_files={}, calls=4, cost_usd=0.1, by_tier={}, by_model={}, errors_by_type={},
        flagship_model="sim/gpt-4o", flagship_baseline_usd=1.0, savings_pct=90.0,
        price_version="v", budget_usd=None, wall_s=1.0,
    )  # fmt: skip
    doc.update(over)
    return JobSummary(**doc)


def test_an_incomplete_job_says_why_and_raises_on_request() -> None:
    s = _summary()
    s.reasons = s.why_incomplete()
    assert not s.ok
    assert s.reasons == [
        "unit 2: input file unreadable",
        "2 rows deferred or over budget",
        "3 rows not done",
    ]
    with pytest.raises(pipeline.JobIncomplete) as exc:
        s.raise_for_status()
    assert exc.value.reasons == s.reasons
    assert "unit 2: input file unreadable" in str(exc.value) and "resume" in str(exc.value)
    assert exc.value.context["units_failed"] == {"2": "input file unreadable"}


def test_a_complete_job_has_no_reasons() -> None:
    s = _summary(status="complete", rows_retryable=0, rows_pending=0, units_failed={})
    assert s.ok and s.why_incomplete() == [] and s.raise_for_status() is s


def test_run_refuses_storage_it_cannot_write_before_ray(tmp_path: Path, ray_refused: None) -> None:
    """An output under a regular file cannot be written: the Python entry point says so
    with the URI and the fix, as `tierline run` does, and neither Ray nor a job starts."""

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    spec = (REPO / "jobs/examples/classify.yaml").read_text()
    spec = spec.replace("jobs/examples/data", str(REPO / "jobs/examples/data"))
    path = tmp_path / "classify.yaml"
    path.write_text(spec)
    with pytest.raises(pipeline.StorageUnusable) as exc:
        pipeline.run(path, output=str(blocker / "out"))
    assert exc.value.problems and str(blocker) in exc.value.problems[0]
    assert "fix" in exc.value.problems[0]
