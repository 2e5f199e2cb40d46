"""The same job with input and output on S3, over real HTTP to a loopback S3 server."""

from __future__ import annotations

import boto3
import polars as pl
import pytest

from pipeline.engine.driver import run_job
from pipeline.store import Store
from tests.integration.helpers import spec_for, ticket_frame, upload_shards

pytestmark = pytest.mark.integration


def test_job_reads_and_writes_s3(s3_endpoint: str, ray_local: None) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="tickets-in")
    s3.create_bucket(Bucket="tierline-out")
    data = ticket_frame(0, 150)
    upload_shards(Store.open("s3://tickets-in/2026-11-27"), "", data, shards=2)
    # A marker file beside the shards, as Spark writes them, is not input.
    s3.put_object(Bucket="tickets-in", Key="2026-11-27/_SUCCESS", Body=b"")

    spec = spec_for("s3://tickets-in/2026-11-27/", "s3://tierline-out/jobs/")
    summary = run_job(spec)

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="tierline-out")["Contents"]]
    prefix = f"jobs/{summary.job_id}/"
    assert f"{prefix}summary.json" in keys
    assert any(k.startswith(f"{prefix}_commits/") for k in keys)
    # Users query the outputs with polars straight from S3.
    opts = {"aws_endpoint_url": s3_endpoint, "aws_region": "us-east-1", "aws_allow_http": "true"}
    results = pl.read_parquet(f"s3://tierline-out/{prefix}results/*.parquet", storage_options=opts)
    errors = pl.read_parquet(f"s3://tierline-out/{prefix}errors/*.parquet", storage_options=opts)
    ids = pl.concat([results["id"], errors["id"]])
    assert ids.n_unique() == ids.len() == data.height
    assert summary.status == "complete" and summary.rows_total == data.height
