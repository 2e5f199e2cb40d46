"""Input listing -> work units; units already committed under the output are skipped.

    plan = make_plan(spec)            # lists, checks schemas, derives the job id
    plan.todo                         # units still to do
    plan.bad_files                    # shards that cannot be used, each with its reason

A unit is a row range of one file, aligned to row groups where they are small enough:
(file, row groups, offset, count), at most `input.rows_per_unit` rows. Everything is
derived from sorted listings, so the same input always gives the same units and ids.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.errors import ConfigError
from pipeline.jobfolder import MANIFEST, JobFolder, read_parquet_footer
from pipeline.routing.policy import routing_columns
from pipeline.store import FileInfo, Store, concurrently
from schemas.job import JobSpec
from schemas.records import UnitCommit

# Routing fields that do not change what is done to a row (and ids made before they existed
# stay the same).
DRIFT_FIELDS = {"canary", "shift_threshold"}


@dataclass(frozen=True)
class Unit:
    index: int
    source: str  # path relative to the input root
    row_groups: tuple[int, ...]
    row_offset: int  # offset into the concatenation of `row_groups`
    row_count: int

    @property
    def name(self) -> str:
        return f"unit-{self.index:05d}"


@dataclass(frozen=True)
class BadFile:
    source: str
    reason: str


@dataclass
class Plan:
    job_id: str
    identity: str
    units: list[Unit]
    committed: dict[int, UnitCommit]
    bad_files: list[BadFile]
    files: list[FileInfo] = field(default_factory=list)

    @property
    def todo(self) -> list[Unit]:
        """Units not committed, and committed units holding rows a rerun should retry
        (deferred, budget exhausted)."""
        return [
            u
            for u in self.units
            if u.index not in self.committed or self.committed[u.index].rows_retryable > 0
        ]

    @property
    def rows_total(self) -> int:
        return sum(u.row_count for u in self.units)


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def _is_id(t: pa.DataType) -> bool:
    return _is_text(t) or pa.types.is_integer(t)


def check_schema(schema: pa.Schema, spec: JobSpec) -> str | None:
    """None when the shard has every column the job reads, with a usable type."""
    names = set(schema.names)
    id_col = spec.input.id_column
    if id_col not in names:
        return f"id column {id_col!r} is missing (columns: {', '.join(schema.names)})"
    if not _is_id(schema.field(id_col).type):
        return f"id column {id_col!r} has type {schema.field(id_col).type}; use a string or integer"
    for col in spec.input.text_columns:
        if col not in names:
            return f"text column {col!r} is missing (columns: {', '.join(schema.names)})"
        if not _is_text(schema.field(col).type):
            kind = schema.field(col).type
            return f"text column {col!r} has type {kind}; text columns must be strings"
    for col in routing_columns(spec.routing):
        if col not in names:
            have = ", ".join(schema.names)
            return f"routing reads column {col!r}, which is missing (columns: {have})"
    return None


def split_units(
    row_group_rows: list[int], rows_per_unit: int
) -> list[tuple[tuple[int, ...], int, int]]:
    """(row groups, offset, count) ranges of at most `rows_per_unit` rows."""
    out: list[tuple[tuple[int, ...], int, int]] = []
    acc: list[int] = []
    acc_rows = 0
    for rg, n in enumerate(row_group_rows):
        if n == 0:
            continue
        if n > rows_per_unit:
            if acc:
                out.append((tuple(acc), 0, acc_rows))
                acc, acc_rows = [], 0
            for off in range(0, n, rows_per_unit):
                out.append(((rg,), off, min(rows_per_unit, n - off)))
            continue
        if acc_rows + n > rows_per_unit and acc:
            out.append((tuple(acc), 0, acc_rows))
            acc, acc_rows = [], 0
        acc.append(rg)
        acc_rows += n
    if acc:
        out.append((tuple(acc), 0, acc_rows))
    return out


def job_identity(spec: JobSpec, files: list[FileInfo]) -> str:
    """What makes two runs the same job: task, input, tiers, routing and the listing.
    Budget, limits and parallelism are left out, so a rerun with a bigger budget resumes;
    so are the drift checks (canary, shift threshold): they judge a job, not change its rows."""
    task = spec.task.model_dump(mode="json")
    if not task.get("prompts"):
        # A spec without prompt variants keeps the job id it had before they existed.
        task.pop("prompts", None)
    doc = {
        "name": spec.name,
        "task": task,
        # Whether skipped files are accepted judges the job; it does not change its rows.
        "input": spec.input.model_dump(mode="json", exclude={"accept_skipped_files"}),
        "input_resolved": _resolved(spec.input.uri),
        "tiers": {t: [d.name for d in deps] for t, deps in spec.tiers.items()},
        "routing": spec.routing.model_dump(mode="json", exclude=DRIFT_FIELDS),
        "files": [(f.path, f.size) for f in files],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def input_files(store: Store) -> list[FileInfo]:
    files = store.list_files(suffix=".parquet")
    # Skip hidden and marker files the way Spark and Hive writers lay them out.
    return [f for f in files if not any(part.startswith(("_", ".")) for part in f.path.split("/"))]


def make_plan(spec: JobSpec, *, output_uri: str | None = None, job_id: str | None = None) -> Plan:
    inp = Store.open(spec.input.uri)
    if inp.is_local and inp.fs.get_file_info(inp.root).type != pafs.FileType.Directory:
        # An empty folder (or S3 prefix) is a job with nothing to do; a local folder that
        # is not there is a mistake in the spec or the directory it is run from.
        raise ConfigError(
            f"input.uri: folder {spec.input.uri!r} does not exist (resolved to {inp.root}); "
            "relative paths are taken from the current directory: run from there, or give "
            "an absolute path"
        )
    files = input_files(inp)
    identity = job_identity(spec, files)
    jid = job_id or f"{spec.name}-{identity[:10]}"
    out = Store.open(output_uri or spec.output.uri).child(jid)
    _claim_prefix(out, jid, identity, spec)

    units: list[Unit] = []
    bad: list[BadFile] = []

    def footer(f: FileInfo) -> pq.FileMetaData | str:
        try:
            return read_parquet_footer(inp, f.path)
        except (OSError, pa.ArrowException) as exc:
            return f"cannot read Parquet footer: {str(exc).splitlines()[0]}"

    # One listing, then every footer read concurrently (thousands of shards on S3).
    footers = concurrently(footer, files, workers=inp.parallel_reads)
    for f, meta in zip(files, footers, strict=True):
        if isinstance(meta, str):
            bad.append(BadFile(f.path, meta))
            continue
        problem = check_schema(meta.schema.to_arrow_schema(), spec)
        if problem:
            bad.append(BadFile(f.path, problem))
            continue
        rg_rows = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        for rgs, off, count in split_units(rg_rows, spec.input.rows_per_unit):
            units.append(Unit(len(units), f.path, rgs, off, count))
    if files and len(bad) == len(files):
        first = bad[0]
        raise ConfigError(
            f"no input file is usable; {inp.display(first.source)}: {first.reason}"
            + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
        )
    committed = JobFolder(out).committed_units(figures=False)  # a resume needs counts only
    return Plan(jid, identity, units, committed, bad, files)


def _resolved(uri: str) -> str:
    store = Store.open(uri)
    return store.uri if not store.is_local else "file://" + store.root


def _claim_prefix(out: Store, job_id: str, identity: str, spec: JobSpec) -> None:
    """Refuse an output prefix that holds a different job under the same id."""
    folder = JobFolder(out)
    if out.exists(MANIFEST):
        try:
            doc = folder.read_manifest()
            have = None if doc is None else doc.get("identity")
        except ValueError:
            have = None
        if have != identity:
            raise ConfigError(
                f"{out.display()} already holds a different job under id {job_id!r} "
                "(other spec or input); choose another --job-id or output"
            )
        return
    if folder.commit_markers():
        raise ConfigError(
            f"{out.display()} holds job output without a manifest; refusing to mix jobs"
        )
    manifest = {
        "job_id": job_id,
        "identity": identity,
        "name": spec.name,
        # What `tierline verify` needs to check the outputs against the input.
        # Whether skipped files are accepted judges the job; it does not change its rows.
        "input": spec.input.model_dump(mode="json", exclude={"accept_skipped_files"}),
        "input_resolved": _resolved(spec.input.uri),
        "flagship": spec.flagship().name,
    }
    folder.write_manifest(manifest)
