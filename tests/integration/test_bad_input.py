"""Bad input gets a clear error and loses nothing: each case with what the user sees."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.engine.driver import run_job
from pipeline.engine.verify import verify_job
from pipeline.store import Store
from tests.integration.helpers import read_all, spec_for, ticket_frame, write_shards

pytestmark = pytest.mark.integration
runner = CliRunner()


def outputs(summary_output: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    out = Store.open(summary_output)
    return read_all(out, "results"), read_all(out, "errors")


def test_corrupt_and_truncated_files_fail_alone_and_are_named(
    tmp_path: Path, ray_local: None
) -> None:
    data = write_shards(tmp_path / "in", shards=3, rows=60)
    good = (tmp_path / "in" / "part-000.parquet").read_bytes()
    # Truncated: the footer is gone. Corrupt: footer intact, a data page overwritten.
    (tmp_path / "in" / "part-001.parquet").write_bytes(good[: len(good) // 2])
    raw = bytearray((tmp_path / "in" / "part-002.parquet").read_bytes())
    raw[200:1200] = b"\x00" * 1000
    (tmp_path / "in" / "part-002.parquet").write_bytes(bytes(raw))

    summary = run_job(spec_for(str(tmp_path / "in"), str(tmp_path / "out")))

    assert "part-001.parquet" in summary.bad_files
    assert "footer" in summary.bad_files["part-001.parquet"].lower()
    failed = " ".join(summary.units_failed.values())
    assert "part-002.parquet" in failed
    results, errors = outputs(summary.output)
    done = set(results["id"].to_list()) | set(errors["id"].to_list())
    ids = data["ticket_id"].to_list()
    assert set(ids[:60]) <= done  # the intact shard, whole
    assert not done & set(ids[60:120])  # the truncated one, not at all
    assert len(done & set(ids[120:])) < 60  # the corrupt one: only its intact units
    assert summary.status == "incomplete"
    assert verify_job(summary.output).ok


def test_schema_drift_and_wrong_types_fail_that_shard_only(tmp_path: Path, ray_local: None) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    ticket_frame(0, 40).write_parquet(inp / "a.parquet")
    # Drift: the body column was renamed in one shard; another has integer ids (fine).
    ticket_frame(40, 40).rename({"body": "text"}).write_parquet(inp / "b.parquet")
    ticket_frame(80, 40).with_columns(pl.col("subject").str.len_chars()).write_parquet(
        inp / "c.parquet"
    )
    spec = spec_for(str(inp), str(tmp_path / "out"))
    summary = run_job(spec)
    assert "text column 'body' is missing" in summary.bad_files["b.parquet"]
    assert "text column 'subject' has type" in summary.bad_files["c.parquet"]
    assert summary.rows_total == 40 and summary.rows_ok + summary.rows_error == 40
    # Their 80 rows are in neither results nor errors: the job is not complete.
    assert summary.status == "incomplete"
    assert any("b.parquet skipped" in r for r in summary.reasons)

    # Accepting the skipped files resumes the same job (nothing paid again) and ends it.
    accepted = spec.model_copy(
        update={"input": spec.input.model_copy(update={"accept_skipped_files": True})}
    )
    again = run_job(accepted)
    assert again.job_id == summary.job_id and again.status == "complete"
    assert again.cost_usd == summary.cost_usd and again.bad_files == summary.bad_files


def test_invalid_utf8_and_oversized_rows_become_error_rows(tmp_path: Path, ray_local: None) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    df = ticket_frame(0, 30)
    bodies = df["body"].to_list()
    bodies[3] = "x" * 10
    bodies[4] = "word " * 200_000  # about a million characters: past any context window
    raw = [b.encode() if b is not None else None for b in bodies]
    raw[3] = b"caf\xe9 au lait \xff"  # Latin-1 bytes in a UTF-8 column
    binary = pa.array(raw, type=pa.binary())
    body = pa.Array.from_buffers(pa.string(), len(binary), binary.buffers(), binary.null_count)
    table = df.drop("body").to_arrow().append_column("body", body)
    pq.write_table(table, inp / "a.parquet")

    summary = run_job(spec_for(str(inp), str(tmp_path / "out")))
    results, errors = outputs(summary.output)
    by_id = {r["id"]: r for r in errors.iter_rows(named=True)}
    assert by_id["T-00003"]["error_type"] == "invalid_text"
    assert "UTF-8" in by_id["T-00003"]["message"]
    assert by_id["T-00004"]["error_type"] == "too_long"
    assert "context window" in by_id["T-00004"]["message"]
    assert results.height + errors.height == 30
    assert verify_job(summary.output).ok


def test_duplicate_ids_are_done_once_and_counted(tmp_path: Path, ray_local: None) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    df = ticket_frame(0, 20)
    pl.concat([df, df.head(5)]).write_parquet(inp / "a.parquet")
    summary = run_job(spec_for(str(inp), str(tmp_path / "out")))
    results, errors = outputs(summary.output)
    ids = pl.concat([results["id"], errors["id"]])
    assert ids.n_unique() == ids.len() == 20
    assert summary.rows_duplicate == 5


def _write_spec(tmp_path: Path, **overrides: object) -> Path:
    write_shards(tmp_path / "in", shards=1, rows=10)
    doc = spec_for(str(tmp_path / "in"), str(tmp_path / "out")).model_dump(mode="json")
    doc.update(overrides)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_cli_bad_spec_is_one_clear_line_per_problem(tmp_path: Path) -> None:
    path = _write_spec(tmp_path, providers={"sim": {"kind": "carrier-pigeon"}})
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2
    assert "providers.sim.kind: unknown provider kind 'carrier-pigeon'" in result.output
    assert "Traceback" not in result.output


def test_cli_missing_credentials_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TIERLINE_TEST_MISSING_KEY", raising=False)
    path = _write_spec(
        tmp_path,
        providers={
            "sim": {"kind": "sim"},
            "paid": {
                "kind": "openai",
                "base_url": "http://127.0.0.1:9/v1",
                "api_key_env": "TIERLINE_TEST_MISSING_KEY",
            },
        },
        tiers={"cheap": ["paid/gpt-4o-mini"], "mid": ["sim/gpt-4o"], "flagship": ["sim/gpt-4o"]},
    )
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "TIERLINE_TEST_MISSING_KEY is not set" in result.output
    assert "Traceback" not in result.output


def test_cli_refuses_an_output_holding_another_job(tmp_path: Path, ray_local: None) -> None:
    path = _write_spec(tmp_path)
    assert runner.invoke(app, ["run", str(path), "--job-id", "nightly"]).exit_code == 0
    write_shards(tmp_path / "in", shards=2, rows=10)  # the input changed: another job
    result = runner.invoke(app, ["run", str(path), "--job-id", "nightly"])
    assert result.exit_code == 2
    assert "already holds a different job" in result.output
    assert "Traceback" not in result.output
