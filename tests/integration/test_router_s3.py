"""A router model kept on S3 (a real S3 HTTP endpoint on loopback): the nightly retrain
replaces it there and every node reads it from there."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from pipeline.cli.router import router_train_command
from pipeline.routing.learned import RouterFileError, RouterModel, load_model
from tests.unit.test_routing_learned import TIERS, write_two_file

pytestmark = pytest.mark.integration


def test_router_model_written_and_read_through_s3(s3_endpoint: str, tmp_path: Path) -> None:
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="tl-models")
    write_two_file(tmp_path / "data", n=200)
    uri = "s3://tl-models/routers/router.npz"
    tiers = ",".join(f"{t}={m}" for t, m in TIERS.items())
    router_train_command(tmp_path / "data", uri, tiers=tiers, folds=3, echo=lambda _: None)
    model = load_model(uri)
    assert model.tiers == TIERS and load_model(uri) is model  # read once per version
    # Replaced in place (as the nightly retrain does): the next load sees the new file.
    write_two_file(tmp_path / "later", n=160, seed=7)
    router_train_command(tmp_path / "later", uri, tiers=tiers, folds=3, echo=lambda _: None)
    newer = load_model(uri)
    assert newer is not model
    assert newer.info["data_sha256"] != model.info["data_sha256"]
    assert newer.info["rows"] == RouterModel.load(uri).info["rows"] != model.info["rows"]
    with pytest.raises(RouterFileError, match="no such router model file"):
        load_model("s3://tl-models/routers/missing.npz")
