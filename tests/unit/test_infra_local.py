"""Local services: the compose file holds together, and s3-local.sh really starts an S3
endpoint, creates the buckets, prints usable exports and stops what it started. The two
tests that start moto's server (on a free loopback port) are marked `integration`."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
LOCAL = REPO / "infra" / "local"
SCRIPT = LOCAL / "s3-local.sh"


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((LOCAL / "compose.yaml").read_text()))


# --- compose ------------------------------------------------------------------------------


def test_compose_services_and_order() -> None:
    services = compose()["services"]
    assert set(services) == {"minio", "create-buckets", "ray-head"}
    assert services["create-buckets"]["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert services["ray-head"]["depends_on"] == {
        "create-buckets": {"condition": "service_completed_successfully"}
    }
    assert "healthcheck" in services["minio"]


def test_compose_images_pinned() -> None:
    for name, service in compose()["services"].items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: {image}"
    # The local head runs the image the cluster runs, built from the same Dockerfile.
    k8s_tag = re.search(
        r'newTag: "?([^"\s]+)', (REPO / "infra/kuberay/image/kustomization.yaml").read_text()
    )
    assert k8s_tag and compose()["services"]["ray-head"]["image"] == f"tierline:{k8s_tag[1]}"


def test_compose_listens_on_loopback_only() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} (the Jobs API runs code)"


def test_compose_head_points_at_minio_and_the_buckets_exist() -> None:
    services = compose()["services"]
    env = services["ray-head"]["environment"]
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert env["AWS_ACCESS_KEY_ID"] == services["minio"]["environment"]["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
    buckets = services["create-buckets"]["environment"]["BUCKETS"].split()
    assert "tierline-local" in buckets
    for bucket in buckets:
        assert re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket), bucket


def test_compose_leaves_container_variables_to_the_container_shell() -> None:
    # Compose interpolates `$VAR` itself, from the host; `$$VAR` reaches the container shell.
    for name, service in compose()["services"].items():
        for part in (service.get("command"), service.get("entrypoint")):
            text = "\n".join(part) if isinstance(part, list) else part or ""
            single = re.findall(r"(?<!\$)\$(?!\$)\{?\w+", text.replace("$$", ""))
            assert not single, f"{name}: {single} would be interpolated by compose"


# --- s3-local.sh: arguments ------------------------------------------------------------------


def run(*args: str, timeout: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env=os.environ | {"PYTHON": sys.executable} | env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help() -> None:
    proc = run("--help")
    assert proc.returncode == 0 and "--detach" in proc.stdout and "moto" in proc.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("--port", "0"),
        ("--port", "70000"),
        ("--port", "x"),
        ("--bucket", "No_Caps"),
        ("--bucket", "ab"),
        ("--what",),
    ],
)
def test_rejects_bad_arguments(args: tuple[str, ...]) -> None:
    proc = run(*args)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr


# --- s3-local.sh: a real server --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_closed(port: int, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while port_open(port):
        assert time.monotonic() < deadline, f"port {port} still open"
        time.sleep(0.1)


def exports(stdout: str) -> dict[str, str]:
    return dict(re.findall(r"^export (\w+)=(\S+)$", stdout, re.M))


def buckets_at(env: dict[str, str]) -> set[str]:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    return {b["Name"] for b in s3.list_buckets()["Buckets"]}


@pytest.mark.integration
def test_detached_server_serves_the_buckets(tmp_path: Path) -> None:
    port = free_port()
    proc = run("--detach", "--port", str(port), "--bucket", "tl-one", "--bucket", "tl-two",
               timeout=60, TMPDIR=str(tmp_path))  # fmt: skip
    pid_match = re.search(r"kill (\d+)", proc.stdout)
    try:
        assert proc.returncode == 0, proc.stderr
        env = exports(proc.stdout)
        assert env["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{port}"
        assert set(env) >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"}
        assert buckets_at(env) == {"tl-one", "tl-two"}
        # A second server on the same port is refused, not silently pointed at this one.
        again = run("--detach", "--port", str(port), TMPDIR=str(tmp_path))
        assert again.returncode == 1 and "already listens" in again.stderr
    finally:
        if pid_match:
            os.kill(int(pid_match[1]), signal.SIGTERM)
    wait_closed(port)


@pytest.mark.integration
def test_foreground_server_stops_with_the_script(tmp_path: Path) -> None:
    port = free_port()
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("w") as o, err.open("w") as e:
        script = subprocess.Popen(
            ["bash", str(SCRIPT), "--port", str(port)],
            env=os.environ | {"PYTHON": sys.executable, "TMPDIR": str(tmp_path)},
            stdin=subprocess.DEVNULL,
            stdout=o,
            stderr=e,
        )
    try:
        deadline = time.monotonic() + 60
        while "running (pid" not in err.read_text():
            assert script.poll() is None, err.read_text()
            assert time.monotonic() < deadline, "no server after 60 s"
            time.sleep(0.1)
        assert buckets_at(exports(out.read_text())) == {"tierline-local"}
        script.send_signal(signal.SIGTERM)
        assert script.wait(timeout=20) == 143
    finally:
        if script.poll() is None:
            script.kill()
            script.wait(timeout=10)
    wait_closed(port)
    assert not list(tmp_path.glob("tierline-s3-local.*")), "the log is removed on exit"
