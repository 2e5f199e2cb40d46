"""`verify` and `report` take job folders, output roots or specs, and say what they looked at."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.cli.targets import job_targets
from schemas.job import load_spec
from schemas.rehearsal import rehearsal
from tests.unit.test_report import write_fake_job

REPO = Path(__file__).resolve().parents[2]
NIGHTLY = REPO / "jobs" / "examples" / "nightly-tickets.yaml"


def _job(root: Path, job_id: str, name: str, when: float) -> Path:
    folder = root / job_id
    folder.mkdir(parents=True)
    (folder / "_job.json").write_text(json.dumps({"job_id": job_id, "name": name}))
    (folder / "summary.json").write_text(json.dumps({"job_id": job_id, "name": name}))
    for f in ("_job.json", "summary.json"):
        os.utime(folder / f, (when, when))
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    _job(out, "nightly-aaaa", "nightly", when=1_000)
    _job(out, "nightly-bbbb", "nightly", when=3_000)  # run last
    _job(out, "other-cccc", "other", when=2_000)
    (out / "_cache").mkdir()  # the response cache is not a job
    (out / "notes").mkdir()  # nor is a folder tierline did not write
    forecast_only = out / "nightly-dddd"  # a forecast writes the manifest, nothing to check
    forecast_only.mkdir()
    (forecast_only / "_job.json").write_text(json.dumps({"name": "nightly"}))
    return out


def test_a_job_folder_is_itself_and_a_root_is_every_job_below(root: Path) -> None:
    assert job_targets([str(root / "other-cccc")], latest=False) == [str(root / "other-cccc")]
    below = [str(root / n) for n in ("nightly-aaaa", "nightly-bbbb", "other-cccc")]
    assert job_targets([str(root)], latest=False) == below
    # A shell glob hands over several folders; each counts once.
    assert job_targets([*below, below[0]], latest=False) == below


def test_latest_of_a_root_and_of_a_spec(root: Path, tmp_path: Path) -> None:
    assert job_targets([str(root)], latest=True) == [str(root / "nightly-bbbb")]
    spec = tmp_path / "other.yaml"
    doc = yaml.safe_load(NIGHTLY.read_text())
    doc.update(name="other", output={"uri": str(root)})
    spec.write_text(yaml.safe_dump(doc))
    assert job_targets([str(spec)], latest=False) == [str(root / "other-cccc")]
    doc["name"] = "nightly"
    spec.write_text(yaml.safe_dump(doc))
    assert job_targets([str(spec)], latest=True) == [str(root / "nightly-bbbb")]


def test_a_path_without_a_job_exits_2_naming_the_jobs_beside_it(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as exc:
        job_targets([str(root / "nightly-zzzz")], latest=False)
    assert exc.value.exit_code == 2
    text = " ".join(capsys.readouterr().err.split())
    assert f"{root / 'nightly-zzzz'} holds no tierline job" in text
    assert str(root / "nightly-aaaa") in text and str(root / "other-cccc") in text


def test_a_spec_never_run_says_how_to_run_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "n.yaml"
    doc = yaml.safe_load(NIGHTLY.read_text())
    doc["output"] = {"uri": str(tmp_path / "empty")}
    spec.write_text(yaml.safe_dump(doc))
    with pytest.raises(typer.Exit) as exc:
        job_targets([str(spec)], latest=True)
    assert exc.value.exit_code == 2
    assert f"tierline run {spec}" in " ".join(capsys.readouterr().err.split())


def test_verify_on_a_wrong_path_is_bad_usage(root: Path) -> None:
    result = CliRunner().invoke(app, ["verify", str(root / "nightly-zzzz")])
    assert result.exit_code == 2
    assert "nightly-aaaa" in result.output


def test_report_of_an_output_root_writes_one_page_per_job(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for job_id in ("fake-tickets-0000000001", "fake-tickets-0000000002"):
        write_fake_job(out, job_id=job_id, units=1, rows_per_unit=20)
    pages = tmp_path / "pages"
    result = CliRunner().invoke(app, ["report", str(out), "--out", str(pages)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in pages.iterdir()) == [
        "report-fake-tickets-0000000001.html",
        "report-fake-tickets-0000000002.html",
    ]
    assert result.output.count("report written to") == 2
    as_json = CliRunner().invoke(
        app, ["report", str(out), "--out", str(pages), "--output-format", "json"]
    )
    assert as_json.exit_code == 0
    assert [d["job_id"] for d in json.loads(as_json.stdout)] == [
        "fake-tickets-0000000001",
        "fake-tickets-0000000002",
    ]


def test_rehearsal_plays_every_provider_with_the_simulator() -> None:
    real = load_spec(NIGHTLY)
    rehearsed = rehearsal(real)
    assert rehearsed.name == "nightly-tickets-rehearsal"
    assert {p.kind for p in rehearsed.providers.values()} == {"sim"}
    assert all(p.api_key_env is None for p in rehearsed.providers.values())
    # Same deployments, prices and routing: it plans, routes and pays as the real job.
    assert rehearsed.tiers == real.tiers and rehearsed.routing == real.routing
    openai = rehearsed.providers["openai"]
    assert openai.limits == real.providers["openai"].limits
    assert openai.sim.limits.rpm == real.providers["openai"].limits.rpm
    long = real.model_copy(update={"name": "n" * 63})
    assert len(rehearsal(long).name) == 63
