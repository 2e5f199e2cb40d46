"""`tierline submit/status/logs/stop` against a recording stand-in for Ray's job client."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline.cli import cluster
from pipeline.cli.app import app

REFERENCE = Path(__file__).resolve().parents[2] / "jobs" / "examples" / "nightly-tickets.yaml"


class FakeClient:
    def __init__(self) -> None:
        self.submitted: list[dict[str, Any]] = []
        self.files: dict[str, str] = {}
        self.states: dict[str, str] = {}

    def submit_job(self, **kw: Any) -> str:
        wd = Path(kw["runtime_env"]["working_dir"])
        self.files = {p.name: p.read_text() for p in wd.iterdir()}
        self.submitted.append(kw)
        self.states[kw["submission_id"]] = "PENDING"
        return str(kw["submission_id"])

    def list_jobs(self) -> list[Any]:
        return [SimpleNamespace(submission_id=k, status=v) for k, v in self.states.items()]

    def stop_job(self, sid: str) -> bool:
        return True


def test_submit_sends_the_spec_and_only_the_names_of_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeClient()
    monkeypatch.setattr(cluster, "client", lambda address, token: fake)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-must-not-travel-123456")
    day = "s3://acme-support/tickets/2026-11-28/"
    result = CliRunner().invoke(app, ["submit", str(REFERENCE), "--input", day])
    assert result.exit_code == 0, result.output
    sub = fake.submitted[0]
    assert result.output.strip() == sub["submission_id"]
    assert sub["submission_id"].startswith("tierline-nightly-tickets-")
    assert sub["entrypoint"] == f"python -m pipeline.cli run spec.yaml --input {day}"
    assert sub["metadata"]["secret_env_vars"] == "OPENAI_API_KEY"
    assert "sk-live" not in repr(sub) and "sk-live" not in "".join(fake.files.values())
    assert "name: nightly-tickets" in fake.files["spec.yaml"]
    # `tierline stop` (SIGTERM from Ray) leaves the run its graceful stop, not Ray's 3 s.
    assert int(sub["runtime_env"]["env_vars"]["RAY_JOB_STOP_WAIT_TIME_S"]) >= 20 + 10
    # The same night submitted while it runs is refused, naming the job.
    again = CliRunner().invoke(app, ["submit", str(REFERENCE), "--input", day])
    assert again.exit_code == 1 and len(fake.submitted) == 1
    assert f"{sub['submission_id']} is already PENDING" in again.output
    # Once it has ended (stopped, failed), submitting again is a numbered attempt.
    fake.states[sub["submission_id"]] = "STOPPED"
    resumed = CliRunner().invoke(app, ["submit", str(REFERENCE), "--input", day])
    assert resumed.exit_code == 0, resumed.output
    assert fake.submitted[1]["submission_id"] == sub["submission_id"] + "-2"
    other = CliRunner().invoke(app, ["submit", str(REFERENCE), "--input", day.replace("28", "29")])
    assert other.exit_code == 0 and fake.submitted[2]["submission_id"] != sub["submission_id"]


def test_stop_reports_what_happened(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "client", lambda address, token: FakeClient())
    result = CliRunner().invoke(app, ["stop", "tierline-x-1"])
    assert result.exit_code == 0 and "stopping" in result.output


@pytest.mark.parametrize(
    "command",
    ["run", "validate", "forecast", "verify", "report", "submit", "status", "logs", "stop"],
)
def test_every_command_help_shows_an_example(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Example:" in result.output
