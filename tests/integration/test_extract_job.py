"""An extract job end to end on one local Ray against the simulator: typed columns in
the results files, re-asks and escalations in the ledger, error rows naming the fields,
and the same in batch mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.engine.driver import run_job
from pipeline.engine.verify import verify_job
from pipeline.store import Store
from tests.integration.helpers import read_all, spec_for, write_shards

pytestmark = pytest.mark.integration

TASK = {
    "kind": "extract",
    "instructions": "Read the support ticket.",
    "fields": {
        "queue": {
            "type": "enum",
            "values": ["billing", "technical", "account", "other"],
            "description": "The team for the ticket.",
        },
        "case": {"type": "integer", "required": False, "description": "The case number."},
        "summary": {"type": "string", "max_length": 120, "description": "The gist."},
    },
}
FAST_BATCHES = {"time_scale": 1000.0, "validate_s": 1.0, "turnaround_s": 60.0, "finalize_s": 1.0}


def _spec(tmp_path: Path, out: str, models: dict[str, Any], **extra: Any) -> Any:
    sim = {"latency_ms": 2, "jitter_ms": 1, "models": models, "batches": FAST_BATCHES}
    return spec_for(
        str(tmp_path / "in"),
        str(tmp_path / out),
        task=TASK,
        providers={"sim": {"kind": "sim", "sim": sim}},
        routing={"policy": "cascade", "default": "cheap"},
        cache="off",
        **extra,
    )


def test_extract_job_writes_typed_columns_and_names_failing_fields(
    tmp_path: Path, ray_local: None
) -> None:
    data = write_shards(tmp_path / "in", shards=2, rows=60)
    models = {
        "gpt-4o-mini": {"extract": {"invalid_json_rate": 0.3}},
        # Everything above cheap leaves out a required field: rows that fail twice on
        # cheap end as error rows, whatever tier they reach.
        "claude-3-5-haiku": {"extract": {"missing_required_rate": 1.0}},
        "gpt-4o": {"extract": {"missing_required_rate": 1.0}},
    }
    summary = run_job(_spec(tmp_path, "out", models))
    job_dir = tmp_path / "out" / summary.job_id
    report = verify_job(str(job_dir))  # every input id exactly once, nothing doubled
    assert report.ok and summary.rows_ok + summary.rows_error == data.height
    out = Store.open(str(job_dir))
    results, errors = read_all(out, "results"), read_all(out, "errors")
    costs = read_all(out, "costs")

    # One typed column per field, straight from the files.
    schema = pq.read_schema(next((job_dir / "results").glob("*.parquet")))
    assert schema.field("out_queue").type == pa.dictionary(pa.int32(), pa.string())
    assert schema.field("out_case").type == pa.int64()
    joined = results.join(data.rename({"ticket_id": "id"}), on="id")
    assert (joined["out_queue"].cast(pl.String) == joined["expected"]).mean() > 0.9  # type: ignore[operator]
    by_queue = results.group_by("out_queue").len()
    assert by_queue["len"].sum() == results.height and by_queue.height == 4

    # Re-asks and their failures are cost rows; the rows that never validated name the field.
    statuses = set(costs["call_status"].to_list())
    assert {"reasked", "ok"} <= statuses
    invalid = errors.filter(pl.col("error_type") == "invalid_output")
    assert invalid.height > 0
    assert all(m.startswith("fields failed: queue") for m in invalid["message"].to_list())
    assert set(invalid["tier"].to_list()) == {"flagship"}
    assert costs["cost_usd"].sum() == pytest.approx(summary.cost_usd)


def test_extract_in_batch_mode_validates_the_same_answers(tmp_path: Path, ray_local: None) -> None:
    write_shards(tmp_path / "in", shards=1, rows=40)
    models = {"gpt-4o-mini": {"extract": {"wrong_enum_rate": 0.2}}}
    batch = _spec(
        tmp_path,
        "batch",
        models,
        run={"workers": 1, "max_in_flight": 16, "mode": "batch", "batch_poll_s": 0.05},
    )
    summary = run_job(batch)
    assert summary.status == "complete"
    out = Store.open(str(tmp_path / "batch" / summary.job_id))
    results, costs = read_all(out, "results"), read_all(out, "costs")
    assert results.height + read_all(out, "errors").height == 40
    assert results["out_queue"].null_count() == 0 and results.height > 30
    asked = costs.filter(pl.col("call_status").is_in(["ok", "reasked"]))
    assert set(asked["mode"].to_list()) == {"batch"}
    assert "reasked" in set(costs["call_status"].to_list())
