"""Arrow schemas of what a job writes, and the commit marker of a unit.

    <output>/<job_id>/results/unit-00003.parquet   RESULTS
    <output>/<job_id>/costs/unit-00003.parquet     COSTS
    <output>/<job_id>/errors/unit-00003.parquet    ERRORS
    <output>/<job_id>/_commits/unit-00003.json     UnitCommit (written last)

Ids are written as strings whatever their input type, so every file of a job shares one
schema and DuckDB/polars/Spark can read `results/*.parquet` as one table.
"""

from __future__ import annotations

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

_TS = pa.timestamp("us", tz="UTC")

RESULTS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("output", pa.string()),
        # The tier that answered; `routed_tier` is where routing sent the row first.
        pa.field("tier", pa.string()),
        pa.field("routed_tier", pa.string()),
        pa.field("provider", pa.string()),
        pa.field("model", pa.string()),
        # The version of the prompt variant the kept answer was asked with (p-<8 hex>).
        pa.field("prompt_version", pa.string()),
        pa.field("status", pa.string()),
        pa.field("attempts", pa.int32()),
        pa.field("retries", pa.int32()),
        pa.field("rate_limited", pa.int32()),
        # The 429s by deployment that met them, as JSON ({"a/gpt-4o": 2}); null when none.
        # A row of a pool may meet them on one deployment and be answered by another.
        pa.field("rate_limited_by", pa.string()),
        # Which call's answer was kept, and why (valid, agree, vote, final_tier (...)).
        pa.field("accepted_attempt", pa.int32()),
        pa.field("accepted_reason", pa.string()),
        pa.field("latency_ms", pa.float64()),
        pa.field("unit", pa.int32()),
        pa.field("completed_at", _TS),
    ]
)

COSTS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("provider", pa.string()),
        pa.field("model", pa.string()),
        pa.field("tier", pa.string()),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        # Parts of input_tokens read from / written to the provider's prompt cache, billed
        # at the cached-input and cache-write prices (pipeline.costs).
        pa.field("cached_input_tokens", pa.int64()),
        pa.field("cache_write_tokens", pa.int64()),
        # sync (one request) or batch (the provider's batch API, at the batch price).
        pa.field("mode", pa.string()),
        pa.field("cost_usd", pa.float64()),
        pa.field("price_version", pa.string()),
        # The version of the prompt variant this call sent (schemas.prompts).
        pa.field("prompt_version", pa.string()),
        # One row per billed call: ok, invalid_output, or, for answers a cascade did not
        # keep, escalated / disagreed.
        pa.field("call_status", pa.string()),
        pa.field("attempt", pa.int32()),
        # Long documents: which step the call was (direct, map, reduce) and its chunk.
        pa.field("step", pa.string()),
        pa.field("chunk", pa.int32()),
        pa.field("token_method", pa.string()),
        pa.field("unit", pa.int32()),
    ]
)

ERRORS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("error_type", pa.string()),
        pa.field("message", pa.string()),
        pa.field("attempts", pa.int32()),
        pa.field("tier", pa.string()),
        pa.field("provider", pa.string()),
        pa.field("model", pa.string()),
        # True for errors a rerun should try again (deferred, budget_exhausted).
        pa.field("retryable", pa.bool_()),
        pa.field("unit", pa.int32()),
    ]
)

# Error types a rerun picks up again instead of keeping.
RETRYABLE_ERRORS = frozenset({"deferred", "budget_exhausted"})


class FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(description="Path relative to the job prefix.")
    rows: int = Field(ge=0, description="Rows in the file.")
    sha256: str = Field(description="SHA-256 of the file's bytes.")


class UnitCommit(BaseModel):
    """Written after a unit's data files; a unit is done only when this exists and agrees
    with the files it names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    unit: int
    generation: int = Field(default=0, ge=0, description="Rewrites of this unit (reruns).")
    source: str = Field(description="Input file the unit was read from.")
    row_groups: list[int]
    row_offset: int
    row_count: int
    rows_ok: int
    rows_error: int
    rows_retryable: int = 0
    rows_duplicate: int = Field(default=0, ge=0, description="Rows dropped: their id came earlier.")
    rows_recovered: int = Field(
        default=0, ge=0, description="Rows answered by an interrupted earlier run (its journal)."
    )
    cost_usd: float
    calls: int
    results: FileEntry
    costs: FileEntry
    errors: FileEntry
    written_at: str
