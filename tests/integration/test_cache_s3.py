"""The response cache on a real S3 HTTP endpoint (moto server on loopback)."""

from __future__ import annotations

import asyncio
import hashlib
import re

import boto3
import pytest

from pipeline.calls.cache import CachedAnswer, ResponseCache
from pipeline.store import Store
from tests.s3server import FaultyS3Server

pytestmark = pytest.mark.integration

URI = "s3://tl-cache/shared/_cache"


def key(i: int) -> str:
    return hashlib.sha256(f"s3-{i}".encode()).hexdigest()


def answer(i: int) -> CachedAnswer:
    return CachedAnswer(f"summary {i}", 1_000 + i, 60, "gpt-4o-mini")


def test_cache_round_trip_layout_and_compaction_on_s3(
    s3_endpoint: str, s3_server: FaultyS3Server
) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="tl-cache")

    def objects() -> list[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket="tl-cache")
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def laid_out(names: list[str]) -> bool:
        pattern = r"shared/_cache/(shard=[0-9a-f]{2}|mixed)/seg-[0-9a-f]{32}\.parquet"
        return all(re.fullmatch(pattern, n) for n in names)

    async def go() -> None:
        # A segment per shard for every flush, however few answers (segment_min=1).
        writer = ResponseCache(Store.open(URI), "read-write", compact_after=2, segment_min=1)
        writer.put_many({key(i): answer(i) for i in range(150)})
        s3_server.fail_next(2)  # throttled PUTs are retried by the store
        written = await writer.flush()
        assert len(objects()) == written <= 150 and laid_out(objects())

        reader = ResponseCache(Store.open(URI), "read")
        hits = await reader.get_many([key(i) for i in range(160)])
        assert hits == {key(i): answer(i) for i in range(150)}

        stale = ResponseCache(Store.open(URI), "read")
        await stale.get_many([key(10_000)])  # lists now; compaction below deletes segments
        await writer.get_many([key(i) for i in range(150, 300)])
        writer.put_many({key(i): answer(i) for i in range(150, 300)})
        await writer.flush()
        assert writer.stats.segments_deleted > 0
        names = objects()
        assert len(names) <= 256 and laid_out(names)  # batch deletes leave no dir markers
        # segments deleted under a stale listing are misses, never errors or wrong answers
        partial = await stale.get_many([key(i) for i in range(150)])
        assert len(partial) < 150 and all(v == answer(int(v.text[8:])) for v in partial.values())

        fresh = ResponseCache(Store.open(URI), "read")
        assert len(await fresh.get_many([key(i) for i in range(300)])) == 300

        # A worker's last few answers: one mixed segment, split into shards with the next.
        mixed = ResponseCache(Store.open(URI), "read-write", compact_after=2)
        for batch in (range(300, 340), range(340, 380)):
            await mixed.get_many([key(i) for i in batch])
            mixed.put_many({key(i): answer(i) for i in batch})
            assert await mixed.flush() == 1
        assert laid_out(objects()) and not any("/mixed/" in n for n in objects())
        again = ResponseCache(Store.open(URI), "read")
        assert len(await again.get_many([key(i) for i in range(380)])) == 380

    asyncio.run(go())
