from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from pipeline.calls.cache import (
    CachedAnswer,
    ResponseCache,
    cache_key,
    chat_body,
    dedupe_within,
)
from pipeline.providers.base import ChatRequest, Message
from pipeline.store import Store


def key(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def answer(i: int) -> CachedAnswer:
    return CachedAnswer(f"summary {i}", 100 + i, 10, "gpt-4o-mini")


def segments(root: Path) -> list[Path]:
    return sorted(root.rglob("seg-*.parquet"))


def cache(root: Path, mode: str = "read-write", **kw: object) -> ResponseCache:
    return ResponseCache(Store.open(str(root)), mode, **kw)  # type: ignore[arg-type]


async def put_flush(c: ResponseCache, ids: range) -> int:
    c.put_many({key(i): answer(i) for i in ids})
    return await c.flush()


# --- keys --------------------------------------------------------------------------------


def test_key_is_canonical_and_ignores_secrets() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    same = {"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "model": "m"}
    k = cache_key("openai", "m", body)
    assert len(k) == 64 and k == cache_key("openai", "m", same)
    assert k == cache_key("openai", "m", {**body, "api_key": "sk-secret", "Authorization": "x"})
    assert k != cache_key("anthropic", "m", body)
    assert k != cache_key("openai", "m2", body)
    assert k != cache_key("openai", "m", {**body, "max_tokens": 6})


def test_chat_body_carries_everything_that_changes_the_answer() -> None:
    req = ChatRequest("gpt-4o", (Message("system", "s"), Message("user", "u")), 64, 0.0)
    assert chat_body(req) == {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
        "max_tokens": 64,
        "temperature": 0.0,
    }


def test_dedupe_within_sends_each_request_once_and_fans_out() -> None:
    d = dedupe_within(["a", "b", "a", "c", "b"])
    assert d.send == (0, 1, 3)
    assert d.leader == (0, 1, 0, 3, 1)
    assert [d.is_duplicate(i) for i in range(5)] == [False, False, True, False, True]
    assert d.fan_out(["A", "B", "C"]) == ["A", "B", "A", "C", "B"]


def test_bad_keys_and_modes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        cache(tmp_path, "sometimes")
    with pytest.raises(ValueError, match="sha256"):
        asyncio.run(cache(tmp_path).get_many(["../../etc/passwd"]))


# --- round trips -------------------------------------------------------------------------


def test_put_flush_get_round_trip_and_miss(tmp_path: Path) -> None:
    async def go() -> None:
        writer = cache(tmp_path)
        await put_flush(writer, range(10))
        reader = cache(tmp_path)  # a new process: nothing in memory
        hits = await reader.get_many([key(i) for i in range(12)])
        assert hits == {key(i): answer(i) for i in range(10)}
        assert reader.stats.hits == 10 and reader.stats.lookups == 12

    asyncio.run(go())


def test_answers_are_served_before_the_flush(tmp_path: Path) -> None:
    async def go() -> None:
        c = cache(tmp_path)
        c.put_many({key(1): answer(1)})
        assert c.pending == 1
        assert await c.get_many([key(1)]) == {key(1): answer(1)}
        assert segments(tmp_path) == []

    asyncio.run(go())


def test_a_due_flush_writes_full_shards_and_waits_with_the_rest(tmp_path: Path) -> None:
    """After a unit, only shards holding `segment_min` answers are written; the others
    wait (served from memory) until the oldest has waited `flush_every_s`, or a full
    flush at the worker's end: a segment per shard per unit was 256 PUTs a unit."""

    async def go() -> None:
        now = [0.0]
        c = cache(tmp_path, segment_min=3, flush_every_s=60.0, clock=lambda: now[0])
        ids = range(300)  # 300 answers over 256 shards: a few shards hold 3
        c.put_many({key(i): answer(i) for i in ids})
        by_shard: dict[str, int] = {}
        for i in ids:
            by_shard[key(i)[:2]] = by_shard.get(key(i)[:2], 0) + 1
        full = sorted(s for s, n in by_shard.items() if n >= 3)
        assert full, "the test needs a shard with three answers"
        assert await c.flush(due_only=True) == len(full)
        assert sorted(p.parent.name.removeprefix("shard=") for p in segments(tmp_path)) == full
        assert c.pending == 300 - sum(by_shard[s] for s in full)
        # waiting answers are still served, from memory
        assert len(await c.get_many([key(i) for i in ids])) == 300
        assert await c.flush(due_only=True) == 0  # nothing more is due yet
        now[0] = 61.0  # the oldest has waited past flush_every_s: all of it goes,
        # in one mixed segment (too few answers a shard for a segment each)
        assert await c.flush(due_only=True) == 1
        assert c.pending == 0
        assert len([p for p in segments(tmp_path) if p.parent.name == "mixed"]) == 1
        fresh = cache(tmp_path)
        assert len(await fresh.get_many([key(i) for i in ids])) == 300

    asyncio.run(go())


def test_a_full_flush_writes_everything_waiting(tmp_path: Path) -> None:
    async def go() -> None:
        c = cache(tmp_path, segment_min=1_000)
        c.put_many({key(i): answer(i) for i in range(40)})
        assert await c.flush(due_only=True) == 0 and segments(tmp_path) == []
        assert await c.flush() == 1  # a worker's last answers: one mixed segment
        assert [p.parent.name for p in segments(tmp_path)] == ["mixed"]
        assert c.pending == 0
        assert len(await cache(tmp_path).get_many([key(i) for i in range(40)])) == 40

    asyncio.run(go())


def test_mixed_segments_are_read_by_others_and_split_into_their_shards(
    tmp_path: Path,
) -> None:
    """A flush of a few answers a shard writes one mixed segment; every reader finds its
    answers; `compact_after` mixed segments are split into per-shard segments."""

    async def go() -> None:
        a = cache(tmp_path, compact_after=3)
        for batch in (range(0, 100), range(100, 200)):
            assert await put_flush(a, batch) == 1
        assert {p.parent.name for p in segments(tmp_path)} == {"mixed"}
        b = cache(tmp_path)  # another worker: reads the mixed segments for any shard
        assert len(await b.get_many([key(i) for i in range(0, 200, 3)])) == 67
        await a.get_many([key(10_000)])  # a lists the segments b may have written
        assert await put_flush(a, range(200, 300)) == 1  # the third: split
        names = {p.parent.name for p in segments(tmp_path)}
        assert "mixed" not in names and len(names) > 100
        assert a.stats.segments_deleted == 3
        # b still lists the deleted mixed segments: answers it read stay, others are
        # found in the shards once its listing is refreshed
        fresh = cache(tmp_path)
        assert len(await fresh.get_many([key(i) for i in range(300)])) == 300
        assert len(await b.get_many([key(i) for i in range(0, 200)])) == 200

    asyncio.run(go())


def test_read_mode_never_writes(tmp_path: Path) -> None:
    async def go() -> None:
        await put_flush(cache(tmp_path), range(3))
        before = segments(tmp_path)
        c = cache(tmp_path, "read")
        assert len(await c.get_many([key(0), key(1)])) == 2
        assert await put_flush(c, range(100, 200)) == 0
        assert c.pending == 0 and segments(tmp_path) == before

    asyncio.run(go())


def test_off_does_nothing(tmp_path: Path) -> None:
    async def go() -> None:
        await put_flush(cache(tmp_path / "c"), range(3))
        off = cache(tmp_path / "c", "off")
        assert await off.get_many([key(0)]) == {}
        assert await put_flush(off, range(5, 9)) == 0
        assert off.stats.listings == 0 and len(segments(tmp_path)) <= 3
        assert await cache(tmp_path / "none", "off").get_many([key(0)]) == {}
        assert not (tmp_path / "none").exists()

    asyncio.run(go())


def test_many_keys_make_a_bounded_number_of_files(tmp_path: Path) -> None:
    async def go() -> None:
        c = cache(tmp_path, compact_after=2, segment_min=8)
        assert await put_flush(c, range(3_000)) <= 256
        assert len(segments(tmp_path)) <= 256
        # a second flush touches most shards again; compaction merges them back to one
        await c.get_many([key(i) for i in range(3_000, 3_400)])
        assert await put_flush(c, range(3_000, 3_400)) == 1  # 1-2 a shard: one mixed
        assert c.stats.segments_deleted > 0  # the mixed segments split into their shards
        assert await put_flush(c, range(3_400, 6_400)) > 100
        per_shard: dict[str, int] = {}
        for p in segments(tmp_path):
            if p.parent.name != "mixed":  # the few shards with fewer than 8 answers
                per_shard[p.parent.name] = per_shard.get(p.parent.name, 0) + 1
        assert len(per_shard) == 256 and max(per_shard.values()) <= 2
        assert c.stats.segments_deleted > 0
        fresh = cache(tmp_path)
        wanted = [key(i) for i in range(0, 3_400, 7)]
        assert len(await fresh.get_many(wanted)) == len(wanted)

    asyncio.run(go())


def test_two_writers_at_once_lose_nothing(tmp_path: Path) -> None:
    async def go() -> None:
        # listing_ttl_s=0: each sees the segments of the other, and compacts (deletes) them
        a, b = (cache(tmp_path, compact_after=2, listing_ttl_s=0.0) for _ in range(2))
        for lo in range(0, 600, 200):
            mine, theirs = range(lo, lo + 120), range(lo + 80, lo + 200)  # 40 shared answers
            await asyncio.gather(
                a.get_many([key(i) for i in mine]), b.get_many([key(i) for i in theirs])
            )
            await asyncio.gather(put_flush(a, mine), put_flush(b, theirs))
        fresh = cache(tmp_path)
        hits = await fresh.get_many([key(i) for i in range(600)])
        assert hits == {key(i): answer(i) for i in range(600)}
        assert a.stats.segments_deleted + b.stats.segments_deleted > 0

    asyncio.run(go())


def test_listing_is_reused_until_its_ttl(tmp_path: Path) -> None:
    now = [0.0]

    async def go() -> None:
        reader = cache(tmp_path, listing_ttl_s=30.0, clock=lambda: now[0])
        assert await reader.get_many([key(1)]) == {}
        await put_flush(cache(tmp_path), range(3))  # another worker writes
        assert await reader.get_many([key(1)]) == {}  # listing still fresh: a miss
        now[0] = 31.0
        assert await reader.get_many([key(1)]) == {key(1): answer(1)}
        assert reader.stats.listings == 2

    asyncio.run(go())


def test_memory_is_bounded_and_evicted_shards_are_read_again(tmp_path: Path) -> None:
    async def go() -> None:
        await put_flush(cache(tmp_path), range(2_000))
        c = cache(tmp_path, max_entries=100)
        for i in range(0, 2_000, 50):
            assert await c.get_many([key(i)]) == {key(i): answer(i)}
            shards = c._shards.values()
            assert sum(len(s.entries) for s in shards) <= 100 + max(len(s.entries) for s in shards)
        reads = c.stats.segments_read
        assert await c.get_many([key(0)]) == {key(0): answer(0)}
        assert c.stats.segments_read == reads + 1  # evicted long ago: read again

    asyncio.run(go())


def test_a_segment_compacted_away_under_a_reader_is_a_miss_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def go() -> None:
        await put_flush(cache(tmp_path), range(1))
        stale = cache(tmp_path)
        await stale._refresh_listing()
        for p in segments(tmp_path):
            p.unlink()
        reads: list[str] = []
        read = stale.store.read_bytes

        def counting(rel: str) -> bytes:
            reads.append(rel)
            return read(rel)

        monkeypatch.setattr(stale.store, "read_bytes", counting)
        assert await stale.get_many([key(0)]) == {}
        assert await stale.get_many([key(0)]) == {}
        assert len(reads) == 1  # known gone: not asked for again until the next listing

    asyncio.run(go())


def test_a_failed_flush_keeps_its_answers_for_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def go() -> None:
        c = cache(tmp_path)
        write = c.store.write_bytes
        failures = [OSError("disk full")]

        def flaky(rel: str, data: bytes) -> None:
            if failures:
                raise failures.pop()
            write(rel, data)

        monkeypatch.setattr(c.store, "write_bytes", flaky)
        c.put_many({key(i): answer(i) for i in range(3)})
        with pytest.raises(OSError, match="disk full"):
            await c.flush()
        assert 0 < c.pending <= 3
        await c.flush()
        assert c.pending == 0
        assert len(await cache(tmp_path).get_many([key(i) for i in range(3)])) == 3

    asyncio.run(go())


def test_one_cache_works_across_event_loops(tmp_path: Path) -> None:
    c = cache(tmp_path)
    asyncio.run(put_flush(c, range(5)))
    assert len(asyncio.run(c.get_many([key(i) for i in range(5)]))) == 5
