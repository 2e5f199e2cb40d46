"""Re-asks in the forecast: extract answers that fail validation are asked again on the
same deployment, with the conversation so far, before any escalation.

    rate, note = reask_rate(spec, history)      # re-asks per row, and where it comes from
    usage = with_reasks(usage, rate)            # + the re-ask calls, on each row's tier

A re-ask sends the first request again plus the failed answer and the quoted errors, so
it costs about the first call's input plus one answer's tokens, and answers as long.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from pipeline.dryrun.sums import ForecastUsage
from schemas.job import ExtractTask, JobSpec

# Without an earlier run: a stated default share of answers asked again.
DEFAULT_REASK_RATE = 0.05
# Words of the re-ask message (the errors quoted, the rule), in tokens.
REASK_MESSAGE_TOKENS = 60


def observed_reasks(calls: pl.DataFrame) -> float:
    """Re-asks per row in earlier runs' cost rows (call_status `reasked`)."""
    rows = calls["id"].n_unique()
    if not rows or "call_status" not in calls.columns:
        return 0.0
    return int((calls["call_status"] == "reasked").sum()) / rows


def reask_rate(spec: JobSpec, history: pl.DataFrame | None) -> tuple[float, str]:
    """Re-asks per row the forecast counts, and where the figure comes from."""
    task = spec.task
    if not isinstance(task, ExtractTask) or task.reasks == 0:
        return 0.0, "the task re-asks nothing"
    if history is not None and not history.is_empty():
        return observed_reasks(history), "observed in earlier runs of the spec"
    return DEFAULT_REASK_RATE, "a stated default (no earlier run of the spec)"


def default_escalation(spec: JobSpec) -> tuple[float, str] | None:
    """Without an earlier run: an extract cascade that only validates (no agreement, vote
    or log-probability floor) escalates the rows whose re-asks fail too; None otherwise."""
    task, routing = spec.task, spec.routing
    if not isinstance(task, ExtractTask) or routing.vote is not None:
        return None
    cascade = routing.cascade
    if cascade is not None and (cascade.agree or cascade.min_logprob is not None):
        return None
    rate = DEFAULT_REASK_RATE ** (task.reasks + 1)
    return rate, f"a stated default: {DEFAULT_REASK_RATE:.0%} of answers fail, and so do re-asks"


def with_reasks(usage: Iterable[ForecastUsage], rate: float) -> list[ForecastUsage]:
    """The usage plus re-ask calls: a share `rate` of each bucket's calls asked again on
    the same model, with its input, one answer and the re-ask message as input."""
    out: list[ForecastUsage] = []
    for u in usage:
        out.append(u)
        if rate <= 0 or u.calls <= 0:
            continue
        calls = u.calls * rate
        extra_in = u.out[1] + REASK_MESSAGE_TOKENS * u.calls
        out.append(
            ForecastUsage(
                u.tier,
                u.provider,
                u.model,
                rows=0.0,
                calls=calls,
                input_tokens=(u.input_tokens + extra_in) * rate,
                out=[v * rate for v in u.out],
                reserve_tokens=(u.reserve_tokens + extra_in) * rate,
            )
        )
    return out
