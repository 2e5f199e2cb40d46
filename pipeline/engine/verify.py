"""`tierline verify PREFIX`: prove a job's outputs keep the promise.

    report = verify_job("s3://bucket/tierline/nightly-tickets-3f2a9c1b7e")
    report.ok, report.problems

Checks, for every committed unit: its files exist with the row counts and SHA-256 its
marker records; every input id of the unit is in results or errors exactly once (ids
repeated in the input count once); cost rows belong to the unit's ids and add up to the
marker's cost; every result has a billed call of its model. Then the summary's totals
against the files, and the figures each marker carries (what the summary and the report
add up) against its unit's files. Units not yet committed are reported as pending, not as lost;
a journal left beside a committed unit is noted, not a problem (its marker counts).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

import polars as pl

from pipeline.engine.figures import conform, unit_figures
from pipeline.engine.journal import settled_parts
from pipeline.engine.plan import Unit
from pipeline.engine.rows import read_unit
from pipeline.jobfolder import MANIFEST, FigureSum, JobFolder
from pipeline.store import Store
from schemas.records import COSTS, ERRORS, RESULTS, UnitCommit

MAX_IDS_SHOWN = 20


@dataclass
class VerifyReport:
    prefix: str
    units_checked: int = 0
    rows_checked: int = 0
    problems: list[str] = field(default_factory=list)
    missing_ids: list[str] = field(default_factory=list)
    duplicate_ids: list[str] = field(default_factory=list)
    pending_units: int = 0
    # Committed units with a journal left beside their marker (a run ended between the
    # two): not a problem, the marker counts and the next run removes the journal.
    stale_journals: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: str) -> None:
        self.problems.append(problem)


def _ids(values: list[str]) -> str:
    shown = ", ".join(values[:MAX_IDS_SHOWN])
    return shown + (
        f" (+{len(values) - MAX_IDS_SHOWN} more)" if len(values) > MAX_IDS_SHOWN else ""
    )


def _frame(store: Store, path: str) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(store.read_bytes(path)))


def _check_files(out: Store, c: UnitCommit, report: VerifyReport) -> bool:
    good = True
    for entry in (c.results, c.costs, c.errors):
        try:
            data = out.read_bytes(entry.path)
        except FileNotFoundError:
            report.add(f"unit {c.unit}: {entry.path} is missing")
            good = False
            continue
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            report.add(f"unit {c.unit}: {entry.path} does not match the checksum in its marker")
            good = False
    return good


def _check_unit(out: Store, inp: Store, id_col: str, c: UnitCommit, report: VerifyReport) -> None:
    if not _check_files(out, c, report):
        return
    results, costs, errors = (_frame(out, e.path) for e in (c.results, c.costs, c.errors))
    unit = Unit(c.unit, c.source, tuple(c.row_groups), c.row_offset, c.row_count)
    table = read_unit(inp, unit, [id_col])
    expected = pl.Series(table.column(0)).cast(pl.String).drop_nulls().unique()
    done = pl.concat([results["id"], errors["id"]])
    counts = done.value_counts()
    dup = counts.filter(pl.col("count") > 1)["id"].to_list()
    got = set(done.to_list())
    missing = [i for i in expected.to_list() if i not in got]
    extra = [i for i in got - set(expected.to_list()) if not i.startswith("<null-id:")]
    report.rows_checked += len(got)
    if missing:
        report.missing_ids += missing
        report.add(
            f"unit {c.unit}: {len(missing)} input ids in neither results nor errors: "
            + _ids(missing)
        )
    if dup:
        report.duplicate_ids += dup
        report.add(f"unit {c.unit}: {len(dup)} ids written more than once: {_ids(dup)}")
    if extra:
        report.add(
            f"unit {c.unit}: {len(extra)} ids not in the unit's input: {_ids(sorted(extra))}"
        )
    if (results.height, errors.height) != (c.rows_ok, c.rows_error):
        report.add(f"unit {c.unit}: row counts differ from its marker")
    stray = set(costs["id"].to_list()) - set(expected.to_list())
    if stray:
        report.add(f"unit {c.unit}: cost rows for ids outside the unit: {_ids(sorted(stray))}")
    if costs.height and abs(float(costs["cost_usd"].sum()) - c.cost_usd) > 1e-9 + 1e-9 * c.cost_usd:
        report.add(
            f"unit {c.unit}: cost rows add up to {costs['cost_usd'].sum()}, "
            f"marker says {c.cost_usd}"
        )
    _check_figures(c, results, costs, errors, report)
    answered = pl.col("call_status").is_in(["ok", "cached", "duplicate"])
    billed = costs.filter(answered).select("id", "provider", "model").unique()
    unbilled = results.join(billed, on=["id", "provider", "model"], how="anti")
    if unbilled.height:
        ids = unbilled["id"].to_list()
        report.add(f"unit {c.unit}: {len(ids)} results without a billed call: {_ids(ids)}")


def _check_figures(
    c: UnitCommit,
    results: pl.DataFrame,
    costs: pl.DataFrame,
    errors: pl.DataFrame,
    report: VerifyReport,
) -> None:
    """The figures the marker carries (what the summary and the report add up) against
    the same figures computed from the unit's files."""
    if c.figures is None:
        return  # an older marker: its figures are computed from these files anyway
    got = unit_figures(conform(results, RESULTS), conform(costs, COSTS), conform(errors, ERRORS))
    want = c.figures
    for name in ("rows_ok", "rows_error", "calls", "cache_hits", "duplicates"):
        if getattr(got, name) != getattr(want, name):
            report.add(
                f"unit {c.unit}: its marker says {name} {getattr(want, name)}, "
                f"its files {getattr(got, name)}"
            )
    if abs(got.cost_usd - want.cost_usd) > 1e-9 + 1e-9 * want.cost_usd:
        report.add(
            f"unit {c.unit}: its marker's figures say ${want.cost_usd}, files ${got.cost_usd}"
        )
    tiers = {k: (t.rows, t.calls) for k, t in got.by_tier.items()}
    if tiers != {k: (t.rows, t.calls) for k, t in want.by_tier.items()}:
        report.add(f"unit {c.unit}: its marker's rows and calls by tier differ from its files")


def verify_job(prefix: str) -> VerifyReport:
    folder = JobFolder.at(prefix)
    out = folder.store
    report = VerifyReport(prefix=out.display())
    manifest = folder.read_manifest()
    if manifest is None:
        report.add(f"{out.display()} holds no tierline job ({MANIFEST} is missing)")
        return report
    inp = Store.open(manifest["input_resolved"])
    id_col = manifest["input"]["id_column"]
    markers = folder.commit_markers()
    summed = FigureSum()
    commits = folder.committed_units(sum_into=summed)
    for info in markers:
        c = folder.read_commit(info.path)
        if c.unit not in commits:
            report.add(f"unit {c.unit}: marker {info.path} does not agree with its files")
            continue
        report.units_checked += 1
        _check_unit(out, inp, id_col, c, report)
    _check_summary(folder, commits, summed, report)
    report.stale_journals = sorted(settled_parts(folder, commits))
    return report


def _check_summary(
    folder: JobFolder, commits: dict[int, UnitCommit], summed: FigureSum, report: VerifyReport
) -> None:
    s = folder.read_summary()
    if s is None:
        report.add("summary.json is missing (the job has not ended yet?)")
        return
    report.pending_units = int(s.get("units_total", 0)) - len(commits)
    rows_ok = sum(c.rows_ok for c in commits.values())
    rows_error = sum(c.rows_error for c in commits.values())
    cost = sum(c.cost_usd for c in commits.values())
    if (s.get("rows_ok"), s.get("rows_error")) != (rows_ok, rows_error):
        report.add(
            f"summary.json says {s.get('rows_ok')} ok / {s.get('rows_error')} error rows, "
            f"the committed files hold {rows_ok} / {rows_error}"
        )
    calls = summed.total.calls
    if summed.units == set(commits) and s.get("calls") != calls:
        report.add(f"summary.json says {s.get('calls')} calls, the units' markers {calls}")
    if abs(float(s.get("cost_usd", 0.0)) - cost) > 1e-6:
        report.add(f"summary.json cost_usd {s.get('cost_usd')} differs from the cost rows' {cost}")
    tier_rows = sum(b.get("rows", 0) for b in s.get("by_tier", {}).values())
    if tier_rows != rows_ok + rows_error:
        report.add(f"summary.json by_tier rows add up to {tier_rows}, not {rows_ok + rows_error}")
    tier_cost = sum(b.get("cost_usd", 0.0) for b in s.get("by_tier", {}).values())
    if abs(tier_cost - cost) > 1e-6:
        report.add(f"summary.json by_tier cost adds up to {tier_cost}, not {cost}")
