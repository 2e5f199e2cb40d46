"""A unit's files and its commit marker: data first, the marker last.

    commit = write_unit(out, job_id, unit, (results, costs, errors), figures)
    results, costs, errors = read_commit(out, commit)      # a rerun's previous generation

After `write_unit` returns, the unit counts as done: its marker names files that exist,
with their row counts, checksums and the unit's figures (`pipeline.engine.figures`).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.engine.outputs import conform_table
from pipeline.engine.plan import Unit
from pipeline.jobfolder import JobFolder, unit_files
from pipeline.store import Store, table_to_parquet_bytes
from schemas.figures import UnitFigures
from schemas.records import COSTS, ERRORS, RESULTS, FileEntry, UnitCommit

Tables = tuple[pa.Table, pa.Table, pa.Table]  # results, costs, errors


def read_commit(out: Store, commit: UnitCommit, results: pa.Schema = RESULTS) -> Tables:
    """The committed tables of a unit, with today's columns (older files: nulls added);
    `results` is the job kind's results schema (extract adds its typed columns)."""

    def read(path: str, schema: pa.Schema) -> pa.Table:
        return conform_table(pq.read_table(pa.BufferReader(out.read_bytes(path))), schema)

    return (
        read(commit.results.path, results),
        read(commit.costs.path, COSTS),
        read(commit.errors.path, ERRORS),
    )


def write_unit(
    out: Store,
    job_id: str,
    unit: Unit,
    tables: Tables,
    figures: UnitFigures,
    previous: UnitCommit | None = None,
    rows_recovered: int = 0,
) -> UnitCommit:
    """Write the unit's three files, then its marker; with `previous` (a rerun of the
    unit), as its next generation, whose predecessor's files are removed after."""
    results, costs, errors = tables
    generation = previous.generation + 1 if previous else 0
    names = unit_files(unit.index, generation)
    entries: dict[str, FileEntry] = {}
    for key, path, table in (
        ("results", names.results, results),
        ("costs", names.costs, costs),
        ("errors", names.errors, errors),
    ):
        data = table_to_parquet_bytes(table)
        out.write_bytes(path, data)
        entries[key] = FileEntry(
            path=path,
            rows=table.num_rows,
            sha256=hashlib.sha256(data).hexdigest(),
            bytes=len(data),
        )
    retryable = int(pc.sum(errors["retryable"]).as_py() or 0) if errors.num_rows else 0
    commit = UnitCommit(
        job_id=job_id,
        unit=unit.index,
        generation=generation,
        rows_retryable=retryable,
        source=unit.source,
        row_groups=list(unit.row_groups),
        row_offset=unit.row_offset,
        row_count=unit.row_count,
        rows_ok=results.num_rows,
        rows_error=errors.num_rows,
        rows_duplicate=max(0, unit.row_count - results.num_rows - errors.num_rows),
        rows_recovered=rows_recovered + (previous.rows_recovered if previous else 0),
        cost_usd=float(pc.sum(costs["cost_usd"]).as_py() or 0.0),
        calls=figures.calls,
        results=entries["results"],
        costs=entries["costs"],
        errors=entries["errors"],
        written_at=datetime.now(UTC).isoformat(),
        figures=figures,
    )
    # Data first, marker last: a crash before this line leaves the unit to be redone.
    JobFolder(out).write_commit(commit)
    if previous is not None:
        # The new marker names the new files; the previous generation is garbage now.
        for old in (previous.results, previous.costs, previous.errors):
            if old.path not in (names.results, names.costs, names.errors):
                out.delete(old.path)
    return commit
