"""A content-addressed cache of model answers, shared by every job and worker, laid out
for object stores: a few Parquet segments per shard, never one object per answer.

    cache = ResponseCache(Store.open("s3://bucket/tierline/_cache"), "read-write")
    key = cache_key("openai", "gpt-4o-mini", chat_body(request))
    hits = await cache.get_many(keys)     # one listing, then the segments of touched shards
    cache.put_many({key: CachedAnswer("The outage ...", 812, 74, "gpt-4o-mini")})
    await cache.flush(due_only=True)      # shards with enough answers for a segment
    await cache.flush()                   # one new segment per touched shard

Layout: `<prefix>/shard=<first 2 hex of key>/seg-<uuid4>.parquet` with columns key, text,
input_tokens, output_tokens, model, created_at, sorted by key; and `<prefix>/mixed/seg-<uuid4>
.parquet`, same columns, keys of any shard: where a flush's answers are too few for a
segment per shard (a worker's last answers, say). Every reader reads the mixed segments;
`compact_after` of them are split into their shards' segments. Segments are immutable, so
writers never coordinate: one key always means one answer, and the same answer in two
segments is harmless. A process keeps the listing (refreshed at most every
`listing_ttl_s`) and the shards it has read (LRU, about `max_entries` answers) in memory.
A flush compacts a shard that has reached `compact_after` segments, merging the small
ones; it deletes only segments it has read, so nothing written meanwhile is lost.
Modes: `off` (no I/O at all), `read` (lookups only), `read-write`.

A worker flushes after each unit with `due_only`: a shard is written once it holds
`segment_min` answers, and every shard once the oldest answer has waited `flush_every_s`;
the rest at its end. Flushing every shard after every unit wrote a segment per shard per
unit, about 4 answers each at 1,000 rows a unit: 256 PUTs a unit (at a billion rows a
night, 256 million) and 0.34 ms of a worker's CPU per row, a third of its whole budget.
Answers waiting for their segment are served from memory; a worker that dies loses them
from the cache only (its committed rows are in their unit's files, the others in the
unit's journal), so a rerun still pays nothing twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import polars as pl

from pipeline.calls.segments import CachedAnswer, read_segment, segment_bytes
from pipeline.costs import add_cost_column
from pipeline.providers.base import ChatRequest
from pipeline.store import Store
from schemas.prices import PriceTable

T = TypeVar("T")
Mode = Literal["off", "read", "read-write"]
MODES: tuple[Mode, ...] = ("off", "read", "read-write")
CACHED, DUPLICATE = "cached", "duplicate"  # call_status of the zero-cost cost rows
FREE_STATUSES = frozenset({CACHED, DUPLICATE})

# Never part of a key. Request bodies do not carry credentials (adapters send them as
# headers), but a body built elsewhere might, and a key must not depend on a secret.
SECRET_FIELDS = frozenset({"api_key", "api-key", "x-api-key", "authorization", "headers"})
_KEY = re.compile(r"^[0-9a-f]{64}$")
_SEGMENT = re.compile(r"^(?:shard=([0-9a-f]{2})|(mixed))/seg-[0-9a-f]{32}\.parquet$")
MIXED = "mixed"  # the listing's name for the mixed segments


def cache_key(provider_kind: str, model: str, request_body: Mapping[str, object]) -> str:
    """SHA-256 of the canonical JSON of (provider kind, model, body without SECRET_FIELDS)."""
    body = {k: v for k, v in request_body.items() if k.lower() not in SECRET_FIELDS}
    blob = json.dumps(
        {"v": 1, "kind": provider_kind, "model": model, "body": body},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def chat_body(request: ChatRequest) -> dict[str, object]:
    """The request as an OpenAI-format body: everything that can change the answer."""
    return {
        "model": request.model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
    }


@dataclass(frozen=True, slots=True)
class Dedupe:
    """Identical requests of one unit: `send` the first row of each key, then `fan_out`."""

    send: tuple[int, ...]
    leader: tuple[int, ...]  # leader[i]: the row whose answer row i takes (itself if sent)

    def is_duplicate(self, row: int) -> bool:
        return self.leader[row] != row

    def fan_out(self, answers: Sequence[T]) -> list[T]:
        """Answers in `send` order -> one per row."""
        by_leader = dict(zip(self.send, answers, strict=True))
        return [by_leader[lead] for lead in self.leader]


def dedupe_within(keys: Sequence[str]) -> Dedupe:
    """Group rows by request key: `dedupe_within(["a", "b", "a"]).send == (0, 1)`."""
    first: dict[str, int] = {}
    leader = tuple(first.setdefault(k, i) for i, k in enumerate(keys))
    return Dedupe(tuple(first.values()), leader)


@dataclass
class CacheStats:
    lookups: int = 0
    hits: int = 0
    puts: int = 0
    listings: int = 0
    segments_read: int = 0
    segments_written: int = 0
    segments_deleted: int = 0
    compaction_errors: int = 0


@dataclass
class _Shard:
    entries: dict[str, CachedAnswer] = field(default_factory=dict)
    segments: dict[str, list[str]] = field(default_factory=dict)  # read segment -> its keys


class ResponseCache:
    def __init__(
        self,
        store: Store,
        mode: Mode = "read-write",
        *,
        max_entries: int = 500_000,
        listing_ttl_s: float = 30.0,
        compact_after: int = 16,
        io_concurrency: int = 16,
        segment_min: int = 64,
        flush_every_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"cache mode {mode!r} is not one of {', '.join(MODES)}")
        self.store, self.mode = store, mode
        self.max_entries, self.listing_ttl_s = max_entries, listing_ttl_s
        self.compact_after, self.io_concurrency, self.clock = compact_after, io_concurrency, clock
        self.segment_min, self.flush_every_s = segment_min, flush_every_s
        self._pending_since: float | None = None  # when the oldest unwritten answer came
        self.stats = CacheStats()
        self._shards: OrderedDict[str, _Shard] = OrderedDict()
        self._pending: dict[str, dict[str, CachedAnswer]] = {}
        self._listing: dict[str, dict[str, int]] = {}  # shard -> {segment path: size}
        self._listed_at: float | None = None
        self._gone: set[str] = set()  # listed segments found deleted (compacted away)
        self._mixed_read: dict[str, list[str]] = {}  # mixed segment -> its keys, in memory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._io = asyncio.Semaphore(io_concurrency)
        self._locks: dict[str, asyncio.Lock] = {}
        self._list_lock = asyncio.Lock()
        self._client_lock = threading.Lock()
        self._client: Any = None

    @property
    def pending(self) -> int:
        return sum(len(p) for p in self._pending.values())

    def _prims(self) -> None:
        # asyncio primitives belong to one loop; a cache may outlive a loop (asyncio.run).
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._io = loop, asyncio.Semaphore(self.io_concurrency)
            self._locks, self._list_lock = {}, asyncio.Lock()

    def _lock(self, shard: str) -> asyncio.Lock:
        return self._locks.setdefault(shard, asyncio.Lock())

    # --- lookups ----------------------------------------------------------------------

    async def get_many(self, keys: Iterable[str]) -> dict[str, CachedAnswer]:
        """The cached answers among `keys` (misses are absent)."""
        if self.mode == "off":
            return {}
        self._prims()
        wanted = list(dict.fromkeys(keys))
        self.stats.lookups += len(wanted)
        hits = {k: a for k in wanted if (a := self._memory(k)) is not None}
        shards = sorted({_shard(k) for k in wanted if k not in hits})
        if shards:
            await self._refresh_listing()
            await self._load_mixed()
            # Only shards with segments not read yet: a unit's keys touch every shard,
            # and a coroutine each for nothing was 4% of a worker's loop.
            await asyncio.gather(*(self._load(s) for s in shards if self._unread(s)))
            hits.update({k: a for k in wanted if (a := self._memory(k)) is not None})
            self._evict(keep=set(shards))
        self.stats.hits += len(hits)
        return hits

    def _memory(self, key: str) -> CachedAnswer | None:
        shard = _shard(key)
        answer = self._pending.get(shard, {}).get(key)
        if answer is None and shard in self._shards:
            self._shards.move_to_end(shard)
            answer = self._shards[shard].entries.get(key)
        return answer

    async def _refresh_listing(self) -> None:
        async with self._list_lock:
            now = self.clock()
            if self._listed_at is not None and now - self._listed_at < self.listing_ttl_s:
                return
            files = await asyncio.to_thread(self.store.list_files, "", ".parquet")
            listing: dict[str, dict[str, int]] = {}
            for f in files:
                m = _SEGMENT.match(f.path)
                if m:
                    listing.setdefault(m.group(1) or MIXED, {})[f.path] = f.size
            self._listing, self._listed_at, self._gone = listing, now, set()
            self.stats.listings += 1

    def _unread(self, shard: str) -> list[str]:
        """The shard's listed segments this process has not read (nor found deleted)."""
        known = self._shards.get(shard)
        read = known.segments if known is not None else {}
        return sorted(
            p for p in self._listing.get(shard, {}) if p not in read and p not in self._gone
        )

    async def _load_mixed(self) -> None:
        """Read the mixed segments not read yet; their answers go to their shards."""
        async with self._lock(MIXED):
            listed = self._listing.get(MIXED, {})
            todo = sorted(p for p in listed if p not in self._mixed_read and p not in self._gone)
            if not todo:
                return
            for path, rows in zip(todo, await asyncio.gather(*map(self._read, todo)), strict=True):
                if rows is None:  # split into its shards meanwhile: they have its answers
                    self._gone.add(path)
                    continue
                for key, answer in rows.items():
                    self._shards.setdefault(_shard(key), _Shard()).entries[key] = answer
                self._mixed_read[path] = list(rows)

    async def _load(self, shard: str) -> None:
        async with self._lock(shard):
            todo = self._unread(shard)
            sh = self._shards.setdefault(shard, _Shard())
            for path, rows in zip(todo, await asyncio.gather(*map(self._read, todo)), strict=True):
                if rows is None:  # compacted away meanwhile: its answers are in a newer segment
                    self._gone.add(path)
                    continue
                sh.entries.update(rows)
                sh.segments[path] = list(rows)

    async def _read(self, path: str) -> dict[str, CachedAnswer] | None:
        def read() -> dict[str, CachedAnswer] | None:
            try:
                data = self.store.read_bytes(path)
            except FileNotFoundError:
                return None
            return read_segment(data)

        async with self._io:
            rows = await asyncio.to_thread(read)
        if rows is not None:
            self.stats.segments_read += 1
        return rows

    def _evict(self, keep: set[str]) -> None:
        total = sum(len(s.entries) for s in self._shards.values())
        for shard in list(self._shards):
            if total <= self.max_entries:
                return
            if shard not in keep:
                total -= len(self._shards.pop(shard).entries)
                self._mixed_read.clear()  # some of their answers went too: read them again

    # --- writes -----------------------------------------------------------------------

    def put_many(self, entries: Mapping[str, CachedAnswer]) -> None:
        """Queue answers for the next `flush` (and serve them to lookups at once)."""
        if self.mode != "read-write":
            return
        for key, answer in entries.items():
            shard = _shard(key)
            known = self._shards.get(shard)
            if known is None or key not in known.entries:
                self._pending.setdefault(shard, {})[key] = answer
                self.stats.puts += 1
                if self._pending_since is None:
                    self._pending_since = self.clock()

    def _due(self) -> list[str]:
        """Shards worth a segment now: those holding `segment_min` answers, or all of
        them once the oldest answer has waited `flush_every_s`."""
        since = self._pending_since
        if since is not None and self.clock() - since >= self.flush_every_s:
            return list(self._pending)
        return [s for s, entries in self._pending.items() if len(entries) >= self.segment_min]

    async def flush(self, *, due_only: bool = False) -> int:
        """Write the queued answers, one segment per shard (with `due_only`, only the
        shards `_due` names); returns the segments written."""
        if self.mode != "read-write" or not self._pending:
            return 0
        self._prims()
        shards = sorted(self._due() if due_only else self._pending)
        if not shards:
            return 0
        pending = {s: self._pending.pop(s) for s in shards}
        if not self._pending:
            self._pending_since = None
        for shard in shards:  # served from memory while their segment is being written
            self._shards.setdefault(shard, _Shard()).entries.update(pending[shard])
        # A shard with too few answers for a segment of its own goes to one mixed segment:
        # a worker's last flush wrote 256 small files (0.2 s locally, 256 PUTs on S3).
        own = [sh for sh in shards if len(pending[sh]) >= self.segment_min]
        few = [sh for sh in shards if len(pending[sh]) < self.segment_min]
        groups: dict[str, dict[str, CachedAnswer]] = {sh: pending[sh] for sh in own}
        if few:
            groups[MIXED] = {k: a for sh in few for k, a in pending[sh].items()}
        try:
            # Encoded in one thread, then written many at a time: encoding in each
            # writer's thread made them fight over the GIL (256 segments took 0.3-0.5 s).
            blobs = await asyncio.to_thread(
                lambda: {g: segment_bytes(e, compress=False) for g, e in groups.items()}
            )
        except BaseException:
            self._requeue(pending)
            raise
        names = list(groups)
        done = await asyncio.gather(
            *(self._put(g, blobs[g]) for g in names), return_exceptions=True
        )
        failed: BaseException | None = None
        for group, path in zip(names, done, strict=True):
            members = few if group == MIXED else [group]
            if isinstance(path, BaseException):
                failed = failed or path
                self._requeue({sh: pending[sh] for sh in members})  # try again later
                continue
            if group == MIXED:
                self._mixed_read[path] = list(groups[MIXED])
            else:
                self._shards.setdefault(group, _Shard()).segments[path] = list(groups[group])
        if failed is not None:
            raise failed
        # Compaction is upkeep: if it fails, the answers are safe and it runs again later.
        compacted = await asyncio.gather(
            *(self._compact(s) for s in own),
            *([self._split_mixed()] if few else []),
            return_exceptions=True,
        )
        self.stats.compaction_errors += sum(isinstance(c, Exception) for c in compacted)
        return len(names)

    def _requeue(self, pending: Mapping[str, Mapping[str, CachedAnswer]]) -> None:
        for shard, entries in pending.items():
            self._pending.setdefault(shard, {}).update(entries)
        self._pending_since = self._pending_since or self.clock()

    async def _write(self, shard: str, entries: Mapping[str, CachedAnswer]) -> str:
        """A compaction's segment: compressed (it stays)."""
        data = await asyncio.to_thread(segment_bytes, entries, compress=True)
        return await self._put(shard, data)

    async def _put(self, shard: str, data: bytes) -> str:
        """A new segment of the shard (or a mixed one); returns its path."""
        where = MIXED if shard == MIXED else f"shard={shard}"
        path = f"{where}/seg-{uuid.uuid4().hex}.parquet"
        async with self._io:
            await asyncio.to_thread(self.store.write_bytes, path, data)
        self._listing.setdefault(shard, {})[path] = len(data)
        self.stats.segments_written += 1
        return path

    async def _split_mixed(self) -> None:
        """Once there are `compact_after` mixed segments, all read here, their answers go
        to their shards' segments (one each, compressed) and they are deleted."""
        async with self._lock(MIXED):
            listed = self._listing.get(MIXED, {})
            if len(listed) < self.compact_after or any(p not in self._mixed_read for p in listed):
                return
            by_shard: dict[str, dict[str, CachedAnswer]] = {}
            for path in listed:
                for key in self._mixed_read[path]:
                    answer = self._memory(key)
                    if answer is None:
                        return  # evicted meanwhile: split another time
                    by_shard.setdefault(_shard(key), {})[key] = answer
            paths = list(listed)
            shards = sorted(by_shard)
            written = await asyncio.gather(*(self._write(sh, by_shard[sh]) for sh in shards))
            for shard, path in zip(shards, written, strict=True):
                self._shards.setdefault(shard, _Shard()).segments[path] = list(by_shard[shard])
            await self._retire(paths, listed, self._mixed_read)

    async def _compact(self, shard: str) -> None:
        """Merge a shard's segments once there are `compact_after` of them, all read here.
        The biggest stays as it is while it outweighs the rest (size-tiered), so an answer
        is rewritten a few times over its life, not at every compaction."""
        async with self._lock(shard):
            listed, sh = self._listing.get(shard, {}), self._shards.get(shard)
            if len(listed) < self.compact_after or sh is None:
                return
            if any(p not in sh.segments for p in listed):
                return  # not all read here: merging would drop answers we never saw
            paths = sorted(listed, key=lambda p: (-listed[p], p))
            rest = sum(listed[p] for p in paths[1:])
            merge = paths[1:] if listed[paths[0]] > rest and len(paths) > 2 else paths
            keys = {k for p in merge for k in sh.segments[p]}
            path = await self._write(shard, {k: sh.entries[k] for k in keys})
            sh.segments[path] = sorted(keys)
            await self._retire(merge, listed, sh.segments)

    async def _retire(
        self, paths: list[str], listed: dict[str, int], read: dict[str, list[str]]
    ) -> None:
        """Delete segments whose answers now live in newer ones; forget them."""
        async with self._io:
            await asyncio.to_thread(self._delete_many, paths)
        self._gone.update(paths)
        for old in paths:
            listed.pop(old, None)
            read.pop(old, None)
        self.stats.segments_deleted += len(paths)

    def _s3_client(self) -> Any:
        with self._client_lock:  # boto3 clients are thread-safe; creating one is not
            if self._client is None:
                import boto3  # only S3 caches need it

                self._client = boto3.client("s3")
            return self._client

    def _delete_many(self, paths: list[str]) -> None:
        if self.store.is_local:
            for path in paths:
                self.store.delete(path)
            return
        # One DeleteObjects request per 1,000 keys. pyarrow's delete_file costs a HEAD, a
        # DELETE and a PUT of a directory marker for each file.
        bucket, _, prefix = self.store.root.partition("/")
        client = self._s3_client()
        for i in range(0, len(paths), 1000):
            keys = [{"Key": f"{prefix}/{p}" if prefix else p} for p in paths[i : i + 1000]]
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def _shard(key: str) -> str:
    if not _KEY.match(key):
        raise ValueError(f"cache key {key[:80]!r} is not a lowercase sha256 hex digest")
    return key[:2]


def reused_answers_usd(costs: pl.DataFrame, prices: PriceTable) -> float:
    """What the answers reused (cache hits, identical rows) would have cost, priced from
    their cost rows (the tokens the original call billed). Raises `UnknownPrice`."""
    free = costs.filter(pl.col("call_status").is_in(list(FREE_STATUSES)))
    if free.is_empty():
        return 0.0
    free = free.drop("cost_usd", "price_version", strict=False)
    if "mode" in free.columns:  # cost files written before calls had a mode were all sync
        free = free.with_columns(pl.col("mode").fill_null("sync"))
    priced = add_cost_column(free, prices)
    return float(priced["cost_usd"].sum())
