"""Session-wide services: a real S3 HTTP endpoint on loopback (moto server) and one local
Ray. The S3 endpoint starts first so the Ray workers inherit AWS_ENDPOINT_URL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.s3server import FaultyS3Server

# Ray started by the tests binds to loopback only (read by Ray at import time).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Fake provider keys for the secrets test. Set before Ray starts, as a real cluster's pods
# hold keys in their environment: only the variable names travel with a job.
CANARY_KEYS = {
    "TIERLINE_CANARY_GOOD": "sk-canary-GOOD-7c1e0a93b4d2f6",
    "TIERLINE_CANARY_BAD": "sk-canary-BAD-51f0d2aa8e3c90",
}
os.environ.update(CANARY_KEYS)

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[FaultyS3Server]:
    server = FaultyS3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_endpoint(s3_server: FaultyS3Server) -> Iterator[str]:
    host, port = s3_server.server.server_address[:2]  # type: ignore[union-attr]
    url = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in _S3_ENV}
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    yield url
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


_S3_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EC2_METADATA_DISABLED",
)


@pytest.fixture(scope="session")
def ray_cluster(s3_endpoint: str) -> Iterator[Any]:
    """One local Ray for the whole session: a head node that tests may add nodes to
    (`ray_cluster.add_node(...)`) and take away again, as a real cluster loses them."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False}
    )
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="session")
def ray_local(ray_cluster: Any) -> None:
    """Ray is up (see `ray_cluster`)."""
