"""The nightly workflow through the CLI, as the README gives it: the spec written once,
each night's input on the command line; forecast it as it will run, rehearse it on the
simulator, then check and report the night's job without spelling out its id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli.app import app
from tests.integration.helpers import write_shards

REPO = Path(__file__).resolve().parents[2]
NIGHTLY = REPO / "jobs" / "examples" / "nightly-tickets.yaml"

runner = CliRunner()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


@pytest.fixture
def nightly(tmp_path: Path) -> Path:
    """The example nightly spec, writing to a local folder (its input comes per night)."""
    doc = yaml.safe_load(NIGHTLY.read_text())
    doc["output"] = {"uri": str(tmp_path / "out")}
    doc["input"]["rows_per_unit"] = 20
    doc["providers"]["openai"]["limits"] = {"rpm": 6000, "max_concurrency": 32}
    path = tmp_path / "nightly.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_night_forecast_rehearsed_verified_and_reported(
    nightly: Path, tmp_path: Path, ray_local: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a rehearsal needs no key
    nights = {}
    for day in ("2026-12-03", "2026-12-04"):
        nights[day] = tmp_path / "tickets" / day
        write_shards(nights[day], shards=1, rows=30)

    # Forecast the night as it will run: its input from the command line.
    day = str(nights["2026-12-03"])
    fc = tmp_path / "fc.json"
    _ok(["forecast", str(nightly), "--input", day, "--json", str(fc)])
    assert json.loads(fc.read_text())["rows_total"] == 30
    assert "would be sent" in _ok(["run", str(nightly), "--dry-run", "--input", day])

    # Without its key the real run stops before anything starts, naming the variable...
    refused = runner.invoke(app, ["run", str(nightly), "--input", day])
    assert refused.exit_code == 2 and "OPENAI_API_KEY is not set" in refused.output
    # ...and the rehearsal runs on the simulator, under a name of its own.
    for night in nights.values():
        _ok(["run", str(nightly), "--input", str(night), "--rehearse"])
    out = tmp_path / "out"
    jobs = sorted(p.name for p in out.glob("nightly-tickets-rehearsal-*"))
    assert len(jobs) == 2
    forecast_only = [p.name for p in out.glob("nightly-tickets-*") if p.name not in jobs]

    # The real spec has no job yet: said so, with the way to its rehearsals.
    none = runner.invoke(app, ["verify", "--latest", str(nightly)])
    assert none.exit_code == 2 and "add --rehearse" in none.output

    # The newest rehearsal, by its spec alone; then every job under the output root.
    latest = _ok(["verify", "--latest", "--rehearse", str(nightly)])
    assert latest.count("ok ") == 1 and "30 rows" in latest
    every = _ok(["verify", str(out)])
    assert all(j in every for j in jobs) and "checked 2 job folders: 2 ok" in every
    assert f"skipped {out / forecast_only[0]}: forecast only, never run" in every
    # A shell glob over the job folders works the same.
    _ok(["verify", *[str(tmp_path / "out" / j) for j in jobs]])

    pages = tmp_path / "pages"
    _ok(["report", str(tmp_path / "out"), "--out", str(pages)])
    assert sorted(p.name for p in pages.iterdir()) == [f"report-{j}.html" for j in jobs]
