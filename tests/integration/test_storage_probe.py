"""Storage is checked before a job, against a real S3 HTTP endpoint on loopback: a
missing bucket, missing credentials or an endpoint that does not answer fails in seconds
with one line naming the URI, what was tried and the fix; retries say so while they wait.
No Ray is needed: all of it happens before Ray starts."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import boto3
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.store import Store
from pipeline.storeprobe import probe_storage
from tests.integration.helpers import spec_for, write_shards
from tests.s3server import FaultyS3Server

runner = CliRunner()


@pytest.fixture(scope="module")
def buckets(s3_endpoint: str) -> str:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    for name in ("probe-in", "probe-out"):
        s3.create_bucket(Bucket=name)
    s3.put_object(Bucket="probe-in", Key="day/part-000.parquet", Body=b"not read by a probe")
    return s3_endpoint


def _keys(endpoint: str, bucket: str) -> list[str]:
    listed = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=bucket)
    return [o["Key"] for o in listed.get("Contents", [])]


def test_usable_storage_passes_and_leaves_nothing_behind(
    buckets: str, s3_server: FaultyS3Server
) -> None:
    problems = probe_storage(input_uri="s3://probe-in/day/", output_uri="s3://probe-out/out/")
    assert problems == []
    assert _keys(buckets, "probe-out") == []
    s3_server.fail_next(1)  # a moment's throttling does not fail the job
    try:
        assert probe_storage(input_uri="s3://probe-in/day/", output_uri="s3://probe-out/o/") == []
    finally:
        s3_server.heal()


def test_a_missing_bucket_is_one_line_with_the_fix(buckets: str) -> None:
    started = time.monotonic()
    problems = probe_storage(input_uri="s3://probe-in/day/", output_uri="s3://no-such-bucket/out/")
    assert time.monotonic() - started < 10
    assert len(problems) == 1
    line = problems[0]
    assert line.startswith("output.uri s3://no-such-bucket/out/:")
    assert "bucket 'no-such-bucket' does not exist" in line
    assert f"listing s3://no-such-bucket/out/ at endpoint {buckets}" in line
    assert "fix: create it" in line


def test_missing_credentials_are_named_and_no_key_is_echoed(
    buckets: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = "testing"  # what the suite's endpoint is given; a probe never prints a key
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    problems = probe_storage(input_uri="s3://probe-in/day/", output_uri="s3://probe-out/out/")
    assert len(problems) == 1  # one reason, both locations on its line
    line = problems[0]
    assert "input.uri s3://probe-in/day/, output.uri s3://probe-out/out/" in line
    assert "no AWS credentials found" in line and "AWS_ACCESS_KEY_ID" in line
    assert secret not in line.replace("AWS_", "")


def test_an_endpoint_that_does_not_answer_fails_within_the_timeout(
    buckets: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    problems = probe_storage(
        input_uri="s3://probe-in/day/", output_uri="s3://probe-out/out/", timeout_s=2
    )
    assert time.monotonic() - started < 10
    assert problems and f"at endpoint http://127.0.0.1:{port}" in problems[0]
    assert "check the network and AWS_ENDPOINT_URL" in problems[0]


def test_local_folders(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "file").write_text("x")
    assert probe_storage(input_uri=str(tmp_path / "in"), output_uri=str(tmp_path / "new/out")) == []
    problems = probe_storage(
        input_uri=str(tmp_path / "missing"), output_uri=str(tmp_path / "file" / "out")
    )
    assert problems[0].startswith(f"input.uri {tmp_path / 'missing'}: folder does not exist")
    assert problems[1].startswith(f"output.uri {tmp_path / 'file' / 'out'}:")
    assert "is a file, not a folder" in problems[1]


def test_validate_and_run_fail_before_ray_on_a_missing_bucket(buckets: str, tmp_path: Path) -> None:
    write_shards(tmp_path / "in", shards=1, rows=10)
    doc = spec_for(str(tmp_path / "in"), "s3://no-such-bucket/out/").model_dump(mode="json")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc))
    for command in (["validate"], ["run"], ["forecast"], ["run", "--dry-run"]):
        started = time.monotonic()
        result = runner.invoke(app, [*command, str(path)])
        assert result.exit_code == 2, result.output
        assert time.monotonic() - started < 15
        text = " ".join(result.output.split())
        assert "output.uri s3://no-such-bucket/out/: bucket 'no-such-bucket' does not exist" in text
    assert runner.invoke(app, ["validate", "--offline", str(path)]).exit_code == 0


def test_storage_retries_say_so_while_they_wait(
    buckets: str, s3_server: FaultyS3Server, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store.open("s3://probe-out/retried/")
    # More 503s than pyarrow's own attempts absorb: the store's retry takes over.
    s3_server.fail_next(8)
    try:
        with caplog.at_level(logging.WARNING, logger="pipeline.store"):
            store.write_bytes("x.json", b"{}")
    finally:
        s3_server.heal()
    lines = [r.getMessage() for r in caplog.records if r.name == "pipeline.store"]
    assert lines, "a retried storage call said nothing while it waited"
    assert all("s3://probe-out/retried/x.json" in line for line in lines)
    assert any("attempt 2 of 6" in line for line in lines)
    assert all("testing" not in line for line in lines)
