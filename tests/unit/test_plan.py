from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from pipeline.engine.plan import make_plan, split_units
from pipeline.errors import ConfigError
from schemas.job import parse_spec


def test_split_units_respects_bound_and_covers_every_row() -> None:
    rg = [40, 40, 40, 250, 0, 10]
    units = split_units(rg, 100)
    assert all(count <= 100 for _, _, count in units)
    assert sum(count for _, _, count in units) == sum(rg)
    # Small row groups are packed together; a big one is sliced.
    assert units[0] == ((0, 1), 0, 80)
    assert [u for u in units if u[0] == (3,)] == [((3,), 0, 100), ((3,), 100, 100), ((3,), 200, 50)]


def _spec(inp: Path, out: Path) -> object:
    return parse_spec(
        {
            "name": "plan-test",
            "task": {"kind": "summarise", "max_words": 20},
            "input": {
                "uri": str(inp),
                "id_column": "id",
                "text_columns": ["text"],
                "rows_per_unit": 30,
            },
            "output": {"uri": str(out)},
            "providers": {"sim": {"kind": "sim"}},
            "tiers": {"cheap": ["sim/gpt-4o-mini"]},
            "routing": {"rules": [{"when": "priority = 'high'", "tier": "cheap"}]},
        }
    )


def test_plan_is_deterministic_and_names_bad_files(tmp_path: Path) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    good = pl.DataFrame({"id": list(range(70)), "text": ["t"] * 70, "priority": ["low"] * 70})
    pq.write_table(good.to_arrow(), inp / "a.parquet", row_group_size=25)
    pl.DataFrame({"id": [1], "body": ["x"], "priority": ["low"]}).write_parquet(inp / "b.parquet")
    (inp / "c.parquet").write_bytes(b"PAR1 this is not parquet")
    (inp / "_SUCCESS").write_bytes(b"")

    spec = _spec(inp, tmp_path / "out")
    plan = make_plan(spec)  # type: ignore[arg-type]
    again = make_plan(spec)  # type: ignore[arg-type]
    assert plan.job_id == again.job_id and plan.job_id.startswith("plan-test-")
    assert [u.row_count for u in plan.units] == [25, 25, 20]
    bad = {b.source: b.reason for b in plan.bad_files}
    assert "text column 'text' is missing" in bad["b.parquet"]
    assert "Parquet" in bad["c.parquet"]


def test_plan_refuses_when_no_file_is_usable(tmp_path: Path) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    pl.DataFrame({"id": [1], "text": [3], "priority": ["x"]}).write_parquet(inp / "a.parquet")
    with pytest.raises(ConfigError, match=r"a\.parquet.*text column 'text' has type int64"):
        make_plan(_spec(inp, tmp_path / "out"))  # type: ignore[arg-type]


def test_a_missing_input_folder_is_refused_but_an_empty_one_is_a_job_with_nothing_to_do(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"input\.uri: folder .* does not exist"):
        make_plan(_spec(tmp_path / "nowhere", tmp_path / "out"))  # type: ignore[arg-type]
    (tmp_path / "empty").mkdir()
    plan = make_plan(_spec(tmp_path / "empty", tmp_path / "out"))  # type: ignore[arg-type]
    assert plan.rows_total == 0 and plan.units == []


def test_other_job_under_same_id_is_refused(tmp_path: Path) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    pl.DataFrame({"id": [1], "text": ["x"], "priority": ["x"]}).write_parquet(inp / "a.parquet")
    make_plan(_spec(inp, tmp_path / "out"), job_id="fixed")  # type: ignore[arg-type]
    pl.DataFrame({"id": [2], "text": ["y"], "priority": ["x"]}).write_parquet(inp / "b.parquet")
    with pytest.raises(ConfigError, match="different job"):
        make_plan(_spec(inp, tmp_path / "out"), job_id="fixed")  # type: ignore[arg-type]
