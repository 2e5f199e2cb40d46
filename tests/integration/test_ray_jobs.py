"""`tierline submit/status/logs/stop` against Ray's own Jobs server.

A head started with `ray start --head` on loopback, token authentication on as Ray sets it
up (a token in ~/.ray/auth_token), the dashboard on a free port. The CLI finds the token
where Ray's CLI does; the job's entrypoint is the cluster's `python`, whose PATH here holds
no `tierline` script; the working directory holds the spec alone. The stand-in client of
tests/unit/test_cli_cluster.py stays for fast runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli.app import app
from tests.integration.helpers import spec_doc, write_shards
from tests.raynodes import RayNodes

pytestmark = pytest.mark.integration

# The session's own Ray settings stay out of the commands' environment.
CLEAN = ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")
Ran = subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayNodes]:
    # The cluster's Python on its PATH as `python`, and no console script beside it.
    bin_dir = tmp_path_factory.mktemp("cluster-bin")
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    nodes = RayNodes.start_head(num_cpus=2, path_prefix=str(bin_dir))
    yield nodes
    nodes.stop()


def cli(nodes: RayNodes, *args: str, home: Path | None = None, **env: str) -> Ran:
    """`tierline ARGS --address DASHBOARD` in a process of its own, as a user runs it."""
    every = {k: v for k, v in os.environ.items() if k not in CLEAN}
    every |= {"HOME": str(home or nodes.home), **env}
    cmd = [sys.executable, "-m", "pipeline.cli", *args, "--address", nodes.dashboard]
    return subprocess.run(cmd, env=every, capture_output=True, text=True, timeout=120)


def one_line(ran: Ran) -> str:
    lines = [x for x in ran.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in ran.stderr, ran.stderr
    return lines[0]


def test_a_missing_or_wrong_token_is_one_line_naming_where_it_is_looked_for(
    head: RayNodes, tmp_path: Path
) -> None:
    token = head.token_file.read_text().strip()
    missing = cli(head, "status", "tierline-x", home=tmp_path)
    assert missing.returncode == 1
    line = one_line(missing)
    assert "wants an authentication token" in line and "RAY_AUTH_TOKEN_PATH" in line
    assert "~/.ray/auth_token" in line and "ray get-auth-token" in line

    wrong = cli(head, "status", "tierline-x", RAY_AUTH_TOKEN="0" * len(token))
    assert wrong.returncode == 1
    line = one_line(wrong)
    assert "refused the token from RAY_AUTH_TOKEN" in line and "0000" not in line

    named = tmp_path / "token"
    named.write_text(token + "\n")
    found = cli(head, "status", "tierline-x", home=tmp_path, RAY_AUTH_TOKEN_PATH=str(named))
    # Authenticated now: Ray answers that no such job exists, in one line.
    assert found.returncode == 1 and "does not exist" in one_line(found)
    assert all(token not in r.stdout + r.stderr for r in (missing, wrong, found))


def write_spec(tmp_path: Path, **run: Any) -> Path:
    write_shards(tmp_path / "in", shards=2, rows=60, row_group=30)
    doc = spec_doc(str(tmp_path / "in"), str(tmp_path / "out"), name="rayjobs")
    doc["run"] = {**doc["run"], **run}
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(doc))
    return spec


def wait_for(nodes: RayNodes, sid: str, states: set[str], timeout_s: float = 120) -> str:
    """Polls Ray's REST API directly: a command per poll would cost a second each."""
    deadline = time.monotonic() + timeout_s
    state = "unknown"
    while time.monotonic() < deadline:
        state = str(nodes.get(f"/api/jobs/{sid}")["status"])
        if state in states or state in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        time.sleep(0.3)
    if state in states:
        return state
    raise AssertionError(f"{sid} {state}, not in {states}: {cli(nodes, 'logs', sid).stdout}")


def test_submit_status_logs_stop_and_wait_on_a_real_jobs_server(
    head: RayNodes, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path, stop_grace_s=1)
    sim = {"kind": "sim", "sim": {"latency_ms": 400, "jitter_ms": 10}}
    slow = yaml.safe_load(spec.read_text())
    slow["providers"] = {"sim": sim}
    slow["run"]["max_in_flight"] = 2
    slow_spec = tmp_path / "slow.yaml"
    slow_spec.write_text(yaml.safe_dump(slow))

    submitted = cli(head, "submit", str(slow_spec))
    assert submitted.returncode == 0, submitted.stderr + head.log_tail()
    sid = submitted.stdout.strip()
    wait_for(head, sid, {"RUNNING"})
    status = cli(head, "status", sid, "--output-format", "json")
    info = json.loads(status.stdout)
    assert info["status"] == "RUNNING"
    assert info["entrypoint"] == "python -m pipeline.cli run spec.yaml"
    stopped = cli(head, "stop", sid)
    assert stopped.returncode == 0 and "stopping" in stopped.stdout
    assert wait_for(head, sid, {"STOPPED", "SUCCEEDED", "FAILED"}) == "STOPPED"
    logs = cli(head, "logs", sid)
    assert logs.returncode == 0 and "Running entrypoint" in logs.stdout

    finished = cli(head, "submit", str(spec), "--wait")
    assert finished.returncode == 0, finished.stderr + cli(head, "logs", finished.stdout).stdout
    (job,) = [p.parent for p in (tmp_path / "out").glob("*/_job.json")]
    verified = CliRunner().invoke(app, ["verify", str(job)])
    assert verified.exit_code == 0, verified.output
