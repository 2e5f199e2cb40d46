"""How this run's routing compares with the previous run of the same job name.

    found = previous_summary(Store.open("out/"), "nightly-tickets", job_id, finished_at)
    report = shift_report(found, summary_doc, threshold=0.1)
    report.flagged                                         # ['tier_share.flagship']

Measured as the absolute change of a share between the two runs (0.1 = ten points):
each tier's share of the run's rows (result and error rows, by the tier that answered or
failed them; rows that reached no tier left out), the escalation rate (rows sent above
the tier routing chose: a call marked `escalated` or `disagreed`, or an answer from
another tier) and the disagreement rate (rows whose agreement check disagreed), each over
the same rows. A metric moving by more
than the threshold is flagged. The rates come from summary.json, which counts them per
unit (`pipeline.engine.figures`). "Previous" is the summary.json of another job folder
named `<name>-*` under the same output that finished last before this run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict, Field

from pipeline.jobfolder import SUMMARY_JSON
from pipeline.store import Store, with_retries
from schemas.figures import NO_TIER


class ShiftItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str = Field(description="tier_share.<tier>, escalation_rate or disagreement_rate")
    previous: float
    now: float
    delta: float = Field(description="now - previous (a share's absolute change)")
    flagged: bool


class ShiftReport(BaseModel):
    """summary.json's `shift` section."""

    model_config = ConfigDict(extra="forbid")

    threshold: float
    measured: str = Field(description="How the comparison is made, in words.")
    previous_job: str | None = None
    previous_finished_at: str | None = None
    note: str = ""
    metrics: list[ShiftItem] = Field(default_factory=list)
    flagged: list[str] = Field(default_factory=list)


MEASURED = (
    "absolute change of each share since the previous run: tier shares of the rows, "
    "escalation rate and disagreement rate (each over the run's result and error rows)"
)


def run_metrics(doc: Mapping[str, Any]) -> dict[str, float]:
    """The compared figures of one summary (as a dict): tier shares and the two rates
    (a rate an older summary lacks is left out)."""
    by_tier = doc.get("by_tier") or {}
    # Rows that reached no tier (empty text, say) say nothing about routing.
    rows = {t: int((b or {}).get("rows", 0)) for t, b in by_tier.items() if t != NO_TIER}
    total = sum(rows.values())
    out: dict[str, float] = {}
    if total:
        for tier, n in sorted(rows.items()):
            out[f"tier_share.{tier}"] = n / total
    for rate in ("escalation_rate", "disagreement_rate"):
        value = doc.get(rate)
        if isinstance(value, int | float):
            out[rate] = float(value)
    return out


def compare(
    previous: Mapping[str, float], now: Mapping[str, float], threshold: float
) -> list[ShiftItem]:
    """Every metric either run has (a tier one run did not use counts as share 0)."""
    items = []
    shares = sorted({k for k in (*previous, *now) if k.startswith("tier_share.")})
    rates = [k for k in ("escalation_rate", "disagreement_rate") if k in previous and k in now]
    for key in [*shares, *rates]:
        before, after = previous.get(key, 0.0), now.get(key, 0.0)
        delta = after - before
        # Rounded first, so a change of exactly the threshold is not flagged by float noise.
        items.append(
            ShiftItem(
                metric=key,
                previous=round(before, 6),
                now=round(after, 6),
                delta=round(delta, 6),
                flagged=round(abs(delta), 9) > threshold,
            )
        )
    return items


def shift_report(
    found: tuple[str, Mapping[str, Any]] | None, now_doc: Mapping[str, Any], threshold: float
) -> ShiftReport:
    """This run (`now_doc`, its summary as a dict) against the previous one, if any."""
    if found is None:
        return ShiftReport(
            threshold=threshold,
            measured=MEASURED,
            note="no previous run of this job name under this output: nothing to compare",
        )
    job, prev = found
    before, after = run_metrics(prev), run_metrics(now_doc)
    if not before or not after:
        which = "the previous run" if not before else "this run"
        return ShiftReport(
            threshold=threshold,
            measured=MEASURED,
            previous_job=job,
            previous_finished_at=prev.get("finished_at"),
            note=f"{which} has no rows to compare",
        )
    items = compare(before, after, threshold)
    return ShiftReport(
        threshold=threshold,
        measured=MEASURED,
        previous_job=job,
        previous_finished_at=prev.get("finished_at"),
        metrics=items,
        flagged=[i.metric for i in items if i.flagged],
    )


def previous_summary(
    root: Store, name: str, job_id: str, before: str
) -> tuple[str, dict[str, Any]] | None:
    """The summary of the run of job `name` under `root` that finished last before
    `before` (ISO time), other than `job_id`; runs with no rows done are passed over."""
    selector = pafs.FileSelector(root.root, recursive=False, allow_not_found=True)
    infos = with_retries(lambda: root.fs.get_file_info(selector), what=f"list {root.display()}")
    dirs = [
        i.base_name
        for i in infos
        if i.type == pafs.FileType.Directory
        and i.base_name.startswith(f"{name}-")
        and i.base_name != job_id
    ]
    cutoff = _epoch(before)
    best: tuple[float, str, dict[str, Any]] | None = None
    for d in dirs:
        rel = f"{d}/{SUMMARY_JSON}"
        info = root.fs.get_file_info(root.full(rel))
        if info.type != pafs.FileType.File:
            continue
        try:
            doc = json.loads(root.read_bytes(rel))
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict) or doc.get("name") != name:
            continue
        if int(doc.get("rows_ok", 0)) + int(doc.get("rows_error", 0)) == 0:
            continue
        # Summaries written before `finished_at` existed are ordered by their file time.
        at = _epoch(doc.get("finished_at")) or (info.mtime.timestamp() if info.mtime else 0.0)
        if cutoff and at >= cutoff:
            continue
        if best is None or at > best[0]:
            best = (at, d, doc)
    return None if best is None else (best[1], best[2])


def _epoch(iso: object) -> float:
    if not isinstance(iso, str):
        return 0.0
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return 0.0
