"""The report's drift card: the canary's scores and the shift since the previous run.

    body, caption = drift_body(data)       # HTML tables; wrapped in a card by the page

Flagged shifts and failed deployments are marked in words ("flagged", "below"), not only
in colour, so the page reads the same printed in black and white.
"""

from __future__ import annotations

from pipeline.report.data import ReportData, fmt_usd
from pipeline.report.svg import esc


def _canary_table(d: ReportData) -> str:
    c = d.canary
    if c is None:
        return '<p class="muted">No canary: the spec sets no routing.canary.</p>'
    rows = "".join(
        f"<tr><td><code>{esc(s.deployment)}</code></td><td>{esc(s.tier)}</td>"
        f'<td class="num">{s.correct:,}/{s.rows:,}</td><td class="num">{s.accuracy:.3f}</td>'
        f'<td class="num">{esc(fmt_usd(s.cost_usd))}</td>'
        f'<td class="{"ok" if s.passed else "bad"}">{"passed" if s.passed else "below"}</td></tr>'
        for s in c.deployments
    )
    again = " (passed in an earlier run of this job; not asked again)" if c.reused else ""
    head = (
        f"<p>Canary <code>{esc(c.data)}</code>: {c.rows:,} golden rows, min_accuracy "
        f"{c.min_accuracy:g}, {esc(fmt_usd(c.cost_usd))}{esc(again)}.</p>"
    )
    return (
        f'{head}<table class="drift"><thead><tr><th>deployment</th><th>tier</th>'
        "<th>right</th><th>accuracy</th><th>cost</th><th>verdict</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _shift_table(d: ReportData) -> str:
    s = d.shift
    if s is None:
        return '<p class="muted">No comparison with an earlier run was made.</p>'
    if not s.metrics:
        return f'<p class="muted">{esc(s.note or "nothing to compare")}</p>'
    rows = "".join(
        f"<tr><td><code>{esc(m.metric)}</code></td><td class='num'>{m.previous:.3f}</td>"
        f"<td class='num'>{m.now:.3f}</td><td class='num'>{m.delta:+.3f}</td>"
        f'<td class="{"bad" if m.flagged else "ok"}">{"flagged" if m.flagged else "within"}</td>'
        "</tr>"
        for m in s.metrics
    )
    head = (
        f"<p>Against <code>{esc(s.previous_job or '')}</code>"
        f"{' (ended ' + esc(s.previous_finished_at) + ')' if s.previous_finished_at else ''}; "
        f"threshold {s.threshold:g}: {esc(s.measured)}.</p>"
    )
    return (
        f'{head}<table class="drift"><thead><tr><th>metric</th><th>previous</th><th>now</th>'
        f"<th>change</th><th>flag</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def drift_body(d: ReportData) -> tuple[str, str]:
    """The card's body and caption."""
    flagged = len(d.shift.flagged) if d.shift else 0
    failed = d.canary is not None and not d.canary.passed
    caption = (
        "the canary failed"
        if failed
        else f"{flagged} shift{'s' if flagged != 1 else ''} past the threshold"
        if flagged
        else "nothing flagged"
    )
    return _canary_table(d) + _shift_table(d), caption
