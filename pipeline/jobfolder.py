"""The one owner of a job folder's layout: every file name, and how each file is read.

    folder = JobFolder.open(output_uri, job_id)          # <output>/<job_id>/
    names = folder.unit_files(7, generation=1)          # results/unit-00007.g1.parquet ...
    folder.committed_units()                            # markers that agree with their files
    folder.write_summary(summary_dict); folder.read_forecast()

Layout (every name deterministic, so a rerun overwrites and never doubles):

    _job.json                    the manifest: job id, identity, input (written first)
    results/unit-<n>[.g<k>].parquet
    costs/unit-<n>[.g<k>].parquet
    errors/unit-<n>[.g<k>].parquet
    _commits/unit-<n>.json       written last: row counts, checksums, the unit's figures
    _batches/<provider>/<id>.json  a provider batch in flight: its id and custom_ids
    _canary/answers.parquet      the canary: each golden row's answer per deployment
    _canary/costs.parquet        the canary's billed calls (not part of the job's costs)
    _canary/result.json          the canary's verdict: accuracy and cost per deployment
    _journal/unit-<n>/part-*.jsonl answers of a unit not yet committed (removed after)
    forecast.json                the dry run (`tierline forecast`)
    forecast/unit-<n>.parquet    the dry run per id
    summary.json                 written when the job ends

Nothing else in the code base spells these names; it asks this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import ValidationError

from pipeline.store import FileInfo, Store, concurrently, table_to_parquet_bytes, with_retries
from schemas.figures import UnitFigures
from schemas.records import UnitCommit

MANIFEST = "_job.json"
RESULTS_DIR = "results"
COSTS_DIR = "costs"
ERRORS_DIR = "errors"
COMMITS_DIR = "_commits"
FORECAST_JSON = "forecast.json"
FORECAST_DIR = "forecast"
SUMMARY_JSON = "summary.json"
CACHE_DIR = "_cache"
BATCHES_DIR = "_batches"
CANARY_DIR = "_canary"
CANARY_ANSWERS = f"{CANARY_DIR}/answers.parquet"
CANARY_COSTS = f"{CANARY_DIR}/costs.parquet"
CANARY_RESULT = f"{CANARY_DIR}/result.json"

JOURNAL_DIR = "_journal"


@dataclass
class FigureSum:
    """Units' figures summed as their markers are read, so that the markers need not be
    held with them: a parsed marker is about 36 KB with its figures and 4 KB without, so
    a job of 100,000 units would hold 3.6 GB in the driver, the report or verify.

        s = FigureSum()
        commits = folder.committed_units(sum_into=s)   # figures in s.total, not in commits
        s.units                                         # the units whose figures s holds
    """

    total: UnitFigures = field(default_factory=UnitFigures)
    units: set[int] = field(default_factory=set)

    def take(self, commit: UnitCommit) -> UnitCommit:
        """Add `commit`'s figures (if it has any) and return it without them."""
        if commit.figures is None:
            return commit
        self.total = self.total.plus(commit.figures)
        self.units.add(commit.unit)
        return commit.model_copy(update={"figures": None})


@dataclass(frozen=True, slots=True)
class UnitFiles:
    """Where one unit's outputs go (paths relative to the job folder)."""

    results: str
    costs: str
    errors: str
    commit: str


def unit_files(unit: int, generation: int = 0) -> UnitFiles:
    """A rerun that finishes a unit's retryable rows writes generation k+1 beside k, then
    its marker; the old files are removed only after the new marker is down."""
    suffix = "" if generation == 0 else f".g{generation}"
    name = f"unit-{unit:05d}{suffix}"
    return UnitFiles(
        results=f"{RESULTS_DIR}/{name}.parquet",
        costs=f"{COSTS_DIR}/{name}.parquet",
        errors=f"{ERRORS_DIR}/{name}.parquet",
        commit=f"{COMMITS_DIR}/unit-{unit:05d}.json",
    )


def forecast_unit_file(unit: int) -> str:
    return f"{FORECAST_DIR}/unit-{unit:05d}.parquet"


def read_parquet_footer(store: Store, rel: str) -> pq.FileMetaData:
    def _read() -> pq.FileMetaData:
        with store.fs.open_input_file(store.full(rel)) as f:
            return pq.ParquetFile(f).metadata

    return with_retries(_read, what=f"read footer of {store.display(rel)}")


class JobFolder:
    """`<output>/<job_id>/` on any store (local folder or S3)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @classmethod
    def open(cls, output_uri: str, job_id: str) -> JobFolder:
        return cls(Store.open(output_uri).child(job_id))

    @classmethod
    def at(cls, prefix: str) -> JobFolder:
        """The job folder at `prefix` itself (what `verify` and `report` are given)."""
        return cls(Store.open(prefix))

    def display(self, rel: str = "") -> str:
        return self.store.display(rel)

    unit_files = staticmethod(unit_files)
    forecast_unit_file = staticmethod(forecast_unit_file)

    # --- what is there -------------------------------------------------------------------

    def holds_job(self) -> bool:
        """A manifest, a summary or commit markers: something tierline wrote."""
        return (
            self.store.exists(MANIFEST)
            or self.store.exists(SUMMARY_JSON)
            or bool(self.commit_markers())
        )

    def has_run(self) -> bool:
        """A summary or commit markers: more than a forecast (which writes the manifest)."""
        return self.store.exists(SUMMARY_JSON) or bool(self.commit_markers())

    def last_touched(self) -> float:
        """When the job last started or ended, seconds since the epoch (0 when unknown):
        the newer of its manifest and its summary, so `--latest` finds the job run last."""
        paths = [self.store.full(rel) for rel in (MANIFEST, SUMMARY_JSON)]
        infos = with_retries(
            lambda: self.store.fs.get_file_info(paths), what=f"look at {self.display()}"
        )
        return max((i.mtime.timestamp() for i in infos if i.mtime is not None), default=0.0)

    def commit_markers(self) -> list[FileInfo]:
        return self.store.list_files(COMMITS_DIR, suffix=".json")

    def read_commit(self, rel: str, *, figures: bool = True) -> UnitCommit:
        """A marker; with `figures=False`, without its figures, which are then not even
        validated (they are most of a marker: a resume of 20,000 units parses half as much)."""
        data = self.store.read_bytes(rel)
        if figures:
            return UnitCommit.model_validate_json(data)
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise ValueError(f"{rel} is not a JSON object")
        doc.pop("figures", None)
        return UnitCommit.model_validate(doc)

    def committed_units(
        self, *, sum_into: FigureSum | None = None, figures: bool = True
    ) -> dict[int, UnitCommit]:
        """Markers whose data files exist with the row counts they record. A marker whose
        files disagree (a crash between a file and its marker) counts as not committed.
        With `sum_into`, their figures are summed there as they are read and left out of
        the markers returned; with `figures=False`, just left out (what a resume needs).

        Built for jobs of tens of thousands of units on S3: four listings (the markers and
        the three data folders), the markers read concurrently, and each file checked by
        the size its marker records against the listing; only markers written before
        sizes were recorded have their files' footers read."""
        store = self.store
        markers = self.commit_markers()
        sizes = {
            f.path: f.size
            for d in (RESULTS_DIR, COSTS_DIR, ERRORS_DIR)
            for f in store.list_files(d, suffix=".parquet")
        }

        def read(info: FileInfo) -> UnitCommit | None:
            try:
                commit = self.read_commit(info.path, figures=figures or sum_into is not None)
            except (ValidationError, ValueError):
                return None
            return commit if self._files_agree(commit, sizes) else None

        found: dict[int, UnitCommit] = {}
        # A chunk at a time: the parsed markers (36 KB each with figures) of one chunk, not
        # of the job, are in memory at once; 1,024 at a time was 36 MB of a driver's peak.
        step = 4 * store.parallel_reads
        chunks = (markers[i : i + step] for i in range(0, len(markers), step))
        for commit in (
            c for ch in chunks for c in concurrently(read, ch, workers=store.parallel_reads)
        ):
            if commit is None:
                continue
            if sum_into is not None:
                commit = sum_into.take(commit)
            elif not figures and commit.figures is not None:
                commit = commit.model_copy(update={"figures": None})
            found[commit.unit] = commit
        return found

    def _files_agree(self, commit: UnitCommit, sizes: dict[str, int]) -> bool:
        return all(
            entry.path in sizes
            and (
                sizes[entry.path] == entry.bytes
                if entry.bytes is not None
                else self._file_agrees(entry.path, entry.rows)
            )
            for entry in (commit.results, commit.costs, commit.errors)
        )

    def _file_agrees(self, rel: str, rows: int) -> bool:
        try:
            return bool(read_parquet_footer(self.store, rel).num_rows == rows)
        except (OSError, pa.ArrowException):
            return False

    # --- unit outputs ---------------------------------------------------------------------

    def write_commit(self, commit: UnitCommit) -> None:
        """The last write of a unit: after it, the unit counts as done."""
        self.store.write_bytes(
            unit_files(commit.unit).commit, commit.model_dump_json(indent=1).encode()
        )

    def journal_parts(self, unit: int) -> list[str]:
        """The unit's answer journal, in the order it was written (see
        `pipeline.engine.journal` for what a part holds)."""
        infos = self.store.list_files(f"{JOURNAL_DIR}/unit-{unit:05d}", suffix=".jsonl")
        return sorted(i.path for i in infos)

    def journal_part(self, unit: int, writer: str, seq: int) -> str:
        """Each writer numbers its parts; parts are never rewritten (an object store has
        no append), so two writers of one unit (a unit handed out again) never collide."""
        return f"{JOURNAL_DIR}/unit-{unit:05d}/part-{writer}-{seq:06d}.jsonl"

    def journals(self) -> dict[int, list[str]]:
        """unit -> its journal's parts, for every unit that has one (one listing)."""
        found: dict[int, list[str]] = {}
        for info in self.store.list_files(JOURNAL_DIR, suffix=".jsonl"):
            folder = info.path.split("/")[-2]  # _journal/unit-<n>/part-*.jsonl
            if folder.startswith("unit-") and folder[5:].isdigit():
                found.setdefault(int(folder[5:]), []).append(info.path)
        return found

    def clear_journal(self, unit: int) -> None:
        """After the unit's marker: its answers are in its committed files now."""
        for path in self.journal_parts(unit):
            self.store.delete(path)

    def output_files(self, kind: str) -> list[FileInfo]:
        """Data files of one kind (`results`, `costs`, `errors`), committed or not."""
        return self.store.list_files(kind, suffix=".parquet")

    # --- JSON documents ---------------------------------------------------------------------

    def _read_json(self, rel: str) -> dict[str, Any] | None:
        if not self.store.exists(rel):
            return None
        data: dict[str, Any] = json.loads(self.store.read_bytes(rel))
        return data

    def _write_json(self, rel: str, doc: dict[str, Any]) -> None:
        self.store.write_bytes(rel, json.dumps(doc, indent=2).encode())

    def read_manifest(self) -> dict[str, Any] | None:
        return self._read_json(MANIFEST)

    def write_manifest(self, doc: dict[str, Any]) -> None:
        self.store.write_bytes(MANIFEST, json.dumps(doc, indent=1).encode())

    def read_summary(self) -> dict[str, Any] | None:
        """summary.json as a dict; None while the job has not ended. Raises ValueError
        when the file is not JSON."""
        return self._read_json(SUMMARY_JSON)

    def write_summary(self, doc: dict[str, Any]) -> None:
        self._write_json(SUMMARY_JSON, doc)

    def read_forecast(self) -> dict[str, Any] | None:
        """forecast.json as a dict; None when the job was never forecast. Raises
        ValueError when the file is not JSON."""
        return self._read_json(FORECAST_JSON)

    def write_forecast(self, doc: dict[str, Any]) -> None:
        self._write_json(FORECAST_JSON, doc)

    def forecast_p50_usd(self) -> float | None:
        """The dry run's median cost of the job's rows (its canary left out, as the
        run's spend on rows is what it is set against), when one was made and is readable."""
        try:
            doc = self.read_forecast()
            return None if doc is None else forecast_rows_usd(doc, "p50")
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # --- the canary ---------------------------------------------------------------------

    def write_canary(self, answers: pa.Table, costs: pa.Table, result: dict[str, Any]) -> None:
        """Answers and costs first, the verdict last (a verdict names files that exist)."""
        for rel, table in ((CANARY_ANSWERS, answers), (CANARY_COSTS, costs)):
            self.store.write_bytes(rel, table_to_parquet_bytes(table))
        self._write_json(CANARY_RESULT, result)

    def read_canary_result(self) -> dict[str, Any] | None:
        """_canary/result.json; None when no canary ran or it cannot be read."""
        try:
            return self._read_json(CANARY_RESULT)
        except ValueError:
            return None

    def canary_spent_usd(self) -> float:
        """What an earlier canary of this job cost (spent: it counts against the budget)."""
        doc = self.read_canary_result()
        try:
            return float(doc["cost_usd"]) if doc else 0.0
        except (KeyError, TypeError, ValueError):
            return 0.0


def job_folders_below(root: Store) -> list[JobFolder]:
    """The job folders directly under `root` (an output root), by name; [] when there
    are none or `root` does not exist."""
    selector = pafs.FileSelector(root.root, recursive=False, allow_not_found=True)
    infos = with_retries(lambda: root.fs.get_file_info(selector), what=f"list {root.display()}")
    names = sorted(
        i.base_name
        for i in infos
        if i.type == pafs.FileType.Directory and not i.base_name.startswith(("_", "."))
    )
    folders = [JobFolder(root.child(n)) for n in names]
    return [f for f in folders if f.holds_job()]


def forecast_rows_usd(doc: dict[str, Any], quantile: str) -> float:
    """A forecast's cost of the job's rows: its total less the canary's calls."""
    total = float(doc["cost_usd"][quantile])
    canary = doc.get("canary") or {}
    return total - float((canary.get("cost_usd") or {}).get(quantile, 0.0))


def history_dirs(out: Store, name: str, job_id: str) -> list[str]:
    """Job folders directly under the output root that hold runs of job `name`."""
    selector = pafs.FileSelector(out.root, recursive=False, allow_not_found=True)
    infos = with_retries(lambda: out.fs.get_file_info(selector), what=f"list {out.display()}")
    names = [i.base_name for i in infos if i.type == pafs.FileType.Directory]
    return sorted(n for n in names if n == job_id or n.startswith(f"{name}-"))


MIN_TURNAROUNDS = 3  # ended batches of earlier runs before their times replace the default


def batch_turnaround(out: Store, dirs: list[str], default_s: float) -> tuple[float, str]:
    """Seconds a batch is expected to take, and where that figure comes from: the 90th
    percentile of the batches earlier runs saw end (a plan must hold its deadline, which
    the median would miss half the time), else the spec's stated default."""
    seen: list[float] = []
    for d in dirs:
        seen.extend(BatchJournal(JobFolder(out.child(d))).turnarounds())
    if len(seen) < MIN_TURNAROUNDS:
        return default_s, f"stated default run.batch_turnaround_s ({default_s:g} s)"
    seen.sort()
    p90 = seen[min(len(seen) - 1, int(0.9 * len(seen)))]
    return p90, f"90th percentile of {len(seen)} batches of earlier runs"


@dataclass(frozen=True, slots=True)
class BatchIntent:
    """A batch about to be submitted: written before the provider is asked, removed once
    the batch's id is recorded, so a crash in between leaves a trace to look for."""

    token: str  # also sent as the batch's metadata where the provider keeps it
    custom_ids: tuple[str, ...]
    at: float  # unix seconds, just before the submit


class BatchJournal:
    """Provider batches this job submitted, by custom_id, so a rerun re-attaches to a
    batch in flight (or fetches what an ended one answered) instead of paying again.

        journal.intend("openai", BatchIntent("g-4e..", ("t-1f..", "t-9c.."), time.time()))
        journal.record("openai", "batch_abc", ["t-1f..", "t-9c.."], token="g-4e..")
        journal.find("openai", ["t-1f.."])     # {"batch_abc": ["t-1f.."]}
        journal.intents("openai")              # intents with no recorded batch (a crash)
    """

    def __init__(self, folder: JobFolder) -> None:
        self.folder = folder
        self._known: dict[str, dict[str, str]] = {}  # provider -> custom_id -> batch id
        # Documents already read or written, by path: each flush lists the folder, but
        # reads only what another process wrote since (one GET per new file on S3).
        self._seen: dict[str, dict[str, Any]] = {}

    def _docs(self, provider: str) -> list[tuple[str, dict[str, Any]]]:
        store, out = self.folder.store, []
        for info in store.list_files(f"{BATCHES_DIR}/{provider}", suffix=".json"):
            if info.path not in self._seen:
                try:
                    self._seen[info.path] = json.loads(store.read_bytes(info.path))
                except (OSError, ValueError):
                    continue
            out.append((info.path, self._seen[info.path]))
        return out

    def _write(self, rel: str, doc: dict[str, Any]) -> None:
        self.folder.store.write_bytes(rel, _dumps(doc))
        self._seen[rel] = doc

    def _load(self, provider: str) -> dict[str, str]:
        known = self._known.setdefault(provider, {})
        for _, doc in self._docs(provider):
            if "batch_id" in doc:
                for cid in doc.get("custom_ids", []):
                    known.setdefault(cid, str(doc["batch_id"]))
        return known

    def find(self, provider: str, custom_ids: list[str]) -> dict[str, list[str]]:
        known = self._load(provider)
        found: dict[str, list[str]] = {}
        for cid in custom_ids:
            if cid in known:
                found.setdefault(known[cid], []).append(cid)
        return found

    def batch_ids(self, provider: str) -> set[str]:
        return set(self._load(provider).values())

    def intend(self, provider: str, intent: BatchIntent) -> None:
        doc = {"token": intent.token, "custom_ids": list(intent.custom_ids), "at": intent.at}
        self._write(self._intent_path(provider, intent.token), doc)

    def intents(self, provider: str) -> list[BatchIntent]:
        return [
            BatchIntent(str(doc["token"]), tuple(doc["custom_ids"]), float(doc["at"]))
            for _, doc in self._docs(provider)
            if "token" in doc and "batch_id" not in doc
        ]

    def forget(self, provider: str, token: str) -> None:
        """An intent whose batch never reached the provider."""
        rel = self._intent_path(provider, token)
        self.folder.store.delete(rel)
        self._seen.pop(rel, None)

    def ended(
        self, provider: str, batch_id: str, status: str, created_at: float, ended_at: float
    ) -> None:
        """When a batch ended, for the forecast's and the planner's turnaround."""
        rel = f"{BATCHES_DIR}/{provider}/{_safe(batch_id)}.json"
        known = self._seen.get(rel)
        doc = dict(known) if known is not None else json.loads(self.folder.store.read_bytes(rel))
        doc.update(status=status, created_at=created_at, ended_at=ended_at)
        self._write(rel, doc)

    def turnarounds(self) -> list[float]:
        """Seconds from creation to end of the batches that completed (not those taken
        back or expired, whose end says nothing of a batch's pace)."""
        out = []
        for info in self.folder.store.list_files(BATCHES_DIR, suffix=".json"):
            try:
                doc = json.loads(self.folder.store.read_bytes(info.path))
                if doc.get("status") in {"completed", "ended"}:
                    out.append(float(doc["ended_at"]) - float(doc["created_at"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return out

    def record(
        self, provider: str, batch_id: str, custom_ids: list[str], token: str | None = None
    ) -> None:
        doc = {"provider": provider, "batch_id": batch_id, "custom_ids": custom_ids}
        self._write(f"{BATCHES_DIR}/{provider}/{_safe(batch_id)}.json", doc)
        if token is not None:
            self.forget(provider, token)
        known = self._known.setdefault(provider, {})
        for cid in custom_ids:
            known[cid] = batch_id

    @staticmethod
    def _intent_path(provider: str, token: str) -> str:
        return f"{BATCHES_DIR}/{provider}/intent-{_safe(token)}.json"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()
