"""Write the demo data: support tickets and documents as zstd Parquet shards.

    python -m jobs.examples.make_data                      # into jobs/examples/data/
    python -m jobs.examples.make_data --out demo-data --rows 200 --docs 20 --seed 3

Same arguments, same bytes: every value comes from a `random.Random` seeded from `--seed`,
and nothing depends on the clock. Output:

    <out>/tickets/part-0000{0..3}.parquet     ticket_id, subject, body, priority,
                                              created_at, customer_tier (3 row groups each)
    <out>/documents/part-0000{0..1}.parquet   doc_id, title, text, priority (2 row groups each)
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.examples.documents import make_documents
from jobs.examples.tickets import make_tickets

DEFAULT_OUT = Path(__file__).resolve().parent / "data"
DEFAULT_ROWS = 3000
DEFAULT_DOCS = 400
DEFAULT_SEED = 7

TICKETS_SCHEMA = pa.schema(
    [
        pa.field("ticket_id", pa.string(), nullable=False),
        pa.field("subject", pa.string()),
        pa.field("body", pa.string()),
        pa.field("priority", pa.string(), nullable=False),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("customer_tier", pa.string(), nullable=False),
    ]
)
DOCUMENTS_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("priority", pa.string(), nullable=False),
    ]
)


@dataclass(frozen=True, slots=True)
class Dataset:
    """How one demo dataset is laid out on disk."""

    name: str
    schema: pa.Schema
    shards: int
    row_groups_per_shard: int


TICKETS = Dataset("tickets", TICKETS_SCHEMA, shards=4, row_groups_per_shard=3)
DOCUMENTS = Dataset("documents", DOCUMENTS_SCHEMA, shards=2, row_groups_per_shard=2)


def write_shards(rows: Sequence[dict[str, object]], dataset: Dataset, folder: Path) -> list[Path]:
    """Split `rows` into the dataset's shards (in order) and write each; stale shards go."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("part-*.parquet"):
        old.unlink()
    shards = min(dataset.shards, max(1, len(rows)))
    bounds = [round(i * len(rows) / shards) for i in range(shards + 1)]
    paths = []
    for i in range(shards):
        chunk = rows[bounds[i] : bounds[i + 1]]
        table = pa.Table.from_pylist(list(chunk), schema=dataset.schema)
        path = folder / f"part-{i:05d}.parquet"
        pq.write_table(
            table,
            path,
            compression="zstd",
            compression_level=9,
            row_group_size=max(1, math.ceil(len(chunk) / dataset.row_groups_per_shard)),
        )
        paths.append(path)
    return paths


def generate(
    out: Path = DEFAULT_OUT,
    rows: int = DEFAULT_ROWS,
    docs: int = DEFAULT_DOCS,
    seed: int = DEFAULT_SEED,
) -> list[Path]:
    """Write both datasets under `out`; returns the files written."""
    if rows < 1 or docs < 1:
        raise ValueError("rows and docs must be at least 1")
    tickets = make_tickets(random.Random(f"{seed}-tickets"), rows)
    documents = make_documents(random.Random(f"{seed}-documents"), docs)
    return write_shards(tickets, TICKETS, out / TICKETS.name) + write_shards(
        documents, DOCUMENTS, out / DOCUMENTS.name
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.examples.make_data", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="number of tickets")
    parser.add_argument("--docs", type=int, default=DEFAULT_DOCS, help="number of documents")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    args = parser.parse_args(argv)
    try:
        paths = generate(args.out, rows=args.rows, docs=args.docs, seed=args.seed)
    except ValueError as exc:
        parser.error(str(exc))
    for path in paths:
        meta = pq.read_metadata(path)
        print(
            f"{path}  {meta.num_rows} rows  {meta.num_row_groups} row groups  "
            f"{path.stat().st_size / 1024:.0f} KiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
