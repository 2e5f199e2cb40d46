"""Which units a rerun counts as done: `JobFolder.committed_units`, read from listings.

A user's rerun must skip exactly the units whose files are all there as their markers
record them, and redo the rest; an older marker (written before markers recorded file
sizes) is still trusted by reading its files' footers.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa

from pipeline.jobfolder import FigureSum, JobFolder, unit_files
from pipeline.store import Store, table_to_parquet_bytes
from schemas.figures import UnitFigures
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


def test_markers_read_for_a_sum_are_not_kept_with_their_figures(tmp_path: Path) -> None:
    """The summary and verify sum the units' figures as markers are read and keep each
    marker without them (36 KB a marker with, 4 KB without); a resume keeps none."""
    folder = JobFolder(Store.open(str(tmp_path / "job")))
    for unit in range(5):
        c = commit_unit(folder, unit, rows=3)
        figures = UnitFigures(rows_ok=3, calls=3, cost_usd=0.5 * unit)
        folder.write_commit(c.model_copy(update={"figures": figures}))
    commit_unit(folder, 5, rows=3)  # an older writer's marker: no figures
    summed = FigureSum()
    commits = folder.committed_units(sum_into=summed)
    assert sorted(commits) == list(range(6))
    assert all(c.figures is None for c in commits.values())
    assert summed.units == {0, 1, 2, 3, 4}
    assert (summed.total.rows_ok, summed.total.calls) == (15, 15)
    assert summed.total.cost_usd == 0.5 * (0 + 1 + 2 + 3 + 4)
    assert all(c.figures is None for c in folder.committed_units(figures=False).values())
    assert folder.committed_units()[4].figures is not None
