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

from schemas.figures import UnitFigures

_TS = pa.timestamp("us", tz="UTC")


def _col(name: str, kind: pa.DataType, doc: str, *, nullable: bool = True) -> pa.Field:
    """A column with its meaning in the field's metadata: written into every Parquet
    file, and the source of the README's column lists (`schemas.export`)."""
    return pa.field(name, kind, nullable=nullable, metadata={"description": doc})


RESULTS = pa.schema(
    [
        _col("id", pa.string(), "The input row's id, as a string.", nullable=False),
        _col("output", pa.string(), "The answer: a label, a summary, an extraction."),
        _col(
            "answered_tier",
            pa.string(),
            "The tier whose answer was kept. It differs from routed_tier when the row was "
            "escalated (a cascade, or its tier was down).",
        ),
        _col("routed_tier", pa.string(), "The tier routing sent the row to first."),
        _col("tier", pa.string(), "The same as answered_tier (the name older versions use)."),
        _col("provider", pa.string(), "The provider that gave the kept answer."),
        _col("model", pa.string(), "The model that gave the kept answer."),
        _col("prompt_version", pa.string(), "The prompt variant the answer was asked with."),
        _col("status", pa.string(), "Always ok (failed rows are in errors/)."),
        _col(
            "attempts",
            pa.int32(),
            "Calls this row made, retries included; 0 for an answer reused from the cache "
            "or an identical row.",
        ),
        _col("retries", pa.int32(), "Of those, retries after a transient failure."),
        _col("rate_limited", pa.int32(), "Of those, answers that were 429 (rate limited)."),
        _col(
            "rate_limited_by",
            pa.string(),
            'The 429s by deployment that met them, as JSON ({"a/gpt-4o": 2}); null when none. '
            "A row of a pool may meet them on one deployment and be answered by another.",
        ),
        _col(
            "accepted_attempt",
            pa.int32(),
            "Which call's answer was kept (1 = the first); 0 for a reused answer.",
        ),
        _col(
            "accepted_reason",
            pa.string(),
            "Why it was kept: valid, agree, vote, final_tier, cached, ...",
        ),
        _col("latency_ms", pa.float64(), "How long the row waited for its answer, milliseconds."),
        _col(
            "cost_usd",
            pa.float64(),
            "What the row's calls cost in all (escalated answers included; 0 when reused).",
        ),
        _col("unit", pa.int32(), "The work unit the row belongs to."),
        _col("completed_at", _TS, "When the row's answer arrived (not when its unit committed)."),
    ]
)

COSTS = pa.schema(
    [
        _col("id", pa.string(), "The row the call was for.", nullable=False),
        _col("provider", pa.string(), "The provider called."),
        _col("model", pa.string(), "The model called."),
        _col("tier", pa.string(), "The tier the call was made in."),
        _col("input_tokens", pa.int64(), "Input tokens billed (cached and written included)."),
        _col("output_tokens", pa.int64(), "Output tokens billed."),
        _col(
            "cached_input_tokens",
            pa.int64(),
            "Of the input tokens, read from the provider's prompt cache (cached-input price).",
        ),
        _col(
            "cache_write_tokens",
            pa.int64(),
            "Of the input tokens, written to the provider's prompt cache (cache-write price).",
        ),
        _col("mode", pa.string(), "sync (one request) or batch (the batch API's price)."),
        _col("cost_usd", pa.float64(), "What the call cost; 0 for a reused answer."),
        _col("price_version", pa.string(), "The price table the cost was computed with."),
        _col("prompt_version", pa.string(), "The prompt variant this call sent."),
        _col(
            "call_status",
            pa.string(),
            "ok or invalid_output; escalated / disagreed for answers a cascade did not keep; "
            "cached / duplicate for answers reused from the cache or an identical row (not "
            "calls: $0, tokens kept to price what they saved).",
        ),
        _col("attempt", pa.int32(), "Which call of the row this was (0: a reused answer)."),
        _col(
            "step",
            pa.string(),
            "Long documents: direct, map or reduce; hedge: a hedged request (run.hedge).",
        ),
        _col("chunk", pa.int32(), "Long documents: the chunk a map call read."),
        _col("token_method", pa.string(), "Where the token counts come from."),
        _col("unit", pa.int32(), "The work unit the row belongs to."),
    ]
)

ERRORS = pa.schema(
    [
        _col("id", pa.string(), "The input row's id, as a string.", nullable=False),
        _col("error_type", pa.string(), "empty_text, too_long, invalid_output, timeout, ..."),
        _col("message", pa.string(), "What went wrong, with the field or the fix."),
        _col("attempts", pa.int32(), "Calls the row made (0: it failed before any call)."),
        _col(
            "tier",
            pa.string(),
            "The tier of the row's last call; null when it never reached one (empty text, "
            "too long for every tier, ...).",
        ),
        _col("routed_tier", pa.string(), "The tier routing sent the row to first."),
        _col("provider", pa.string(), "The provider of the last call, if any."),
        _col("model", pa.string(), "The model of the last call, if any."),
        _col(
            "retryable",
            pa.bool_(),
            "True for errors a rerun tries again (deferred, budget_exhausted).",
        ),
        _col("unit", pa.int32(), "The work unit the row belongs to."),
        _col("completed_at", _TS, "When the row finally failed."),
    ]
)

# Error types a rerun picks up again instead of keeping.
RETRYABLE_ERRORS = frozenset({"deferred", "budget_exhausted"})


class FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(description="Path relative to the job prefix.")
    rows: int = Field(ge=0, description="Rows in the file.")
    sha256: str = Field(description="SHA-256 of the file's bytes.")
    bytes: int | None = Field(
        default=None,
        ge=0,
        description="Size of the file: a resume checks it against one listing instead of "
        "reading every file's footer (absent in markers written before it existed).",
    )


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
    calls: int = Field(description="Paid calls (reused answers are not calls).")
    results: FileEntry
    costs: FileEntry
    errors: FileEntry
    written_at: str
    figures: UnitFigures | None = Field(
        default=None,
        description="The unit's figures (schemas.figures), so a job's are summed from its "
        "markers; markers of older versions lack them and their unit's files are read.",
    )
