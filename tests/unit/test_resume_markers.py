"""Which units a rerun counts as done: `JobFolder.committed_units`, read from listings.

A user's rerun must skip exactly the units whose files are all there as their markers
record them, and redo the rest; an older marker (written before markers recorded file
sizes) is still trusted by reading its files' footers.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa

from pipeline.jobfolder import JobFolder, unit_files
from pipeline.store import Store, table_to_parquet_bytes
from schemas.records import FileEntry, UnitCommit


def commit_unit(folder: JobFolder, unit: int, rows: int, *, sizes: bool = True) -> UnitCommit:
    names = unit_files(unit)
    entries = {}
    for key, path in (("results", names.results), ("costs", names.costs), ("errors", names.errors)):
        n = rows if key != "errors" else 0
        data = table_to_parquet_bytes(pa.table({"id": [f"{unit}-{i}" for i in range(n)]}))
        folder.store.write_bytes(path, data)
        entries[key] = FileEntry(
            path=path,
            rows=n,
            sha256=hashlib.sha256(data).hexdigest(),
            bytes=len(data) if sizes else None,
        )
    commit = UnitCommit(
        job_id="j",
        unit=unit,
        generation=0,
        rows_retryable=0,
        source="part-0.parquet",
        row_groups=[0],
        row_offset=0,
        row_count=rows,
        rows_ok=rows,
        rows_error=0,
        rows_duplicate=0,
        rows_recovered=0,
        cost_usd=0.0,
        calls=rows,
        results=entries["results"],
        costs=entries["costs"],
        errors=entries["errors"],
        written_at="2026-12-05T00:00:00+00:00",
    )
    folder.write_commit(commit)
    return commit


def test_a_rerun_trusts_only_markers_whose_files_are_there_as_recorded(tmp_path: Path) -> None:
    folder = JobFolder(Store.open(str(tmp_path / "job")))
    for unit in range(40):
        commit_unit(folder, unit, rows=5)
    job = tmp_path / "job"
    (job / unit_files(3).results).unlink()  # lost after its marker was written
    (job / unit_files(7).costs).write_bytes(b"truncated")  # another size than recorded
    (job / unit_files(9).commit).write_text("{not json")  # a marker cut short

    done = folder.committed_units()

    assert sorted(done) == [u for u in range(40) if u not in (3, 7, 9)]
    assert done[0].results.rows == 5


def test_markers_written_before_sizes_were_recorded_are_checked_by_footer(
    tmp_path: Path,
) -> None:
    folder = JobFolder(Store.open(str(tmp_path / "job")))
    commit_unit(folder, 0, rows=4, sizes=False)
    commit_unit(folder, 1, rows=4, sizes=False)
    commit_unit(folder, 2, rows=4, sizes=False)
    # Unit 1's results hold other rows than its marker says: not committed.
    other = table_to_parquet_bytes(pa.table({"id": ["x"]}))
    (tmp_path / "job" / unit_files(1).results).write_bytes(other)

    assert sorted(folder.committed_units()) == [0, 2]
