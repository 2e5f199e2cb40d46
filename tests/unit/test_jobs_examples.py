from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from jobs.base import get_job_kind, text_expr
from jobs.examples import make_data
from schemas.job import load_spec

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "jobs" / "examples"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.parquet"))}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    make_data.generate(out, rows=40, docs=6, seed=3)
    return out


def test_same_seed_same_bytes(small: Path, tmp_path: Path) -> None:
    make_data.generate(tmp_path, rows=40, docs=6, seed=3)
    assert _files(tmp_path) == _files(small)


def test_other_seed_other_data(small: Path, tmp_path: Path) -> None:
    make_data.generate(tmp_path, rows=40, docs=6, seed=4)
    a = pl.read_parquet(small / "tickets")
    b = pl.read_parquet(tmp_path / "tickets")
    assert a["body"].to_list() != b["body"].to_list()


def test_ticket_shards_columns_and_values(small: Path) -> None:
    shards = sorted((small / "tickets").glob("*.parquet"))
    assert [p.name for p in shards] == [f"part-{i:05d}.parquet" for i in range(4)]
    for path in shards:
        meta = pq.read_metadata(path)
        assert meta.num_rows == 10
        assert meta.num_row_groups == 3
        assert meta.row_group(0).column(0).compression == "ZSTD"
    df = pl.read_parquet(small / "tickets")
    assert dict(df.schema) == (
        {
            "ticket_id": pl.String,
            "subject": pl.String,
            "body": pl.String,
            "priority": pl.String,
            "created_at": pl.Datetime("us", "UTC"),
            "customer_tier": pl.String,
        }
    )
    assert df["ticket_id"].is_unique().all()
    assert all(re.fullmatch(r"T-\d{6}", t) for t in df["ticket_id"])
    assert set(df["priority"]) <= {"low", "normal", "high"}
    assert df["created_at"].is_sorted()
    # The null-text path is always demonstrated, even in a small sample.
    assert df.select(text_expr(["subject", "body"])).to_series().null_count() >= 1


def test_document_shards_columns_and_lengths(small: Path) -> None:
    shards = sorted((small / "documents").glob("*.parquet"))
    assert [pq.read_metadata(p).num_row_groups for p in shards] == [2, 2]
    df = pl.read_parquet(small / "documents")
    assert df.columns == ["doc_id", "title", "text", "priority"]
    assert df.height == 6
    lengths = df["text"].str.len_chars()
    assert lengths.min() >= 500  # type: ignore[operator]
    assert lengths.max() <= 6000  # type: ignore[operator]
    assert (df["text"].str.count_matches("\n\n") >= 2).all()


def test_rerun_with_fewer_rows_leaves_no_stale_shards(tmp_path: Path) -> None:
    make_data.generate(tmp_path, rows=40, docs=6)
    make_data.generate(tmp_path, rows=2, docs=1)
    assert pl.read_parquet(tmp_path / "tickets").height == 2
    assert len(list((tmp_path / "documents").glob("*.parquet"))) == 1


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--out", str(tmp_path), "--rows", "8", "--docs", "2", "--seed", "1"]
    assert make_data.main(argv) == 0
    assert "part-00003.parquet  2 rows" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        make_data.main(["--out", str(tmp_path), "--rows", "0"])


def test_committed_data_is_what_the_script_makes(tmp_path: Path) -> None:
    make_data.generate(tmp_path)
    for name in ("tickets", "documents"):
        committed = pl.read_parquet(EXAMPLES / "data" / name)
        fresh = pl.read_parquet(tmp_path / name)
        assert committed.equals(fresh), f"{name}: regenerate with python -m jobs.examples.make_data"


def test_committed_tickets_look_like_the_brief() -> None:
    df = pl.read_parquet(EXAMPLES / "data" / "tickets")
    assert df.height == 3000
    lengths = df["body"].str.len_chars().fill_null(0)
    assert 0.07 < (lengths > 1500).mean() < 0.16  # type: ignore[operator]
    assert ((lengths >= 100) & (lengths <= 600)).mean() > 0.6  # type: ignore[operator]
    assert 0.05 < (df["priority"] == "high").mean() < 0.15  # type: ignore[operator]
    no_text = df.select(text_expr(["subject", "body"])).to_series().null_count()
    assert 5 <= no_text <= 30


@pytest.mark.parametrize(
    ("spec", "name", "kind"),
    [
        ("classify.yaml", "demo-tickets", "classify"),
        ("summarise.yaml", "demo-docs", "summarise"),
        ("nightly-tickets.yaml", "nightly-tickets", "classify"),
    ],
)
def test_example_specs_validate(spec: str, name: str, kind: str) -> None:
    job = load_spec(EXAMPLES / spec)
    assert job.name == name
    assert get_job_kind(job.task).kind == kind


@pytest.mark.parametrize("spec", ["classify.yaml", "summarise.yaml"])
def test_demo_specs_point_at_the_demo_data(spec: str) -> None:
    job = load_spec(EXAMPLES / spec)
    folder = REPO / job.input.uri
    assert list(folder.glob("*.parquet"))
    df = pl.read_parquet(folder, n_rows=5)
    assert {job.input.id_column, *job.input.text_columns} <= set(df.columns)
    assert not Path(job.output.uri).is_absolute()
