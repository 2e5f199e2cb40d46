"""The report as one self-contained HTML page: inline CSS, inline SVG (pipeline.report.svg),
no scripts, no fonts or files fetched, so it opens offline and can be mailed as one file.

    Path("report.html").write_text(render_html(build_report(prefix)))

Every string from the data is escaped: ids, messages and model names are user data.
"""

from __future__ import annotations

from pipeline.report.data import ReportData, fmt_usd
from pipeline.report.drift import drift_body
from pipeline.report.svg import (
    BASELINE,
    LIMITED,
    RETRIED,
    ROWS,
    TIER_COLOURS,
    WIDE,
    W,
    donut,
    empty,
    esc,
    fmt_ms,
    fmt_step,
    forecast_chart,
    hbars,
    latency_chart,
    short,
    tier_colour,
    timeline_chart,
    vbars,
)


def render_html(data: ReportData) -> str:
    """One self-contained HTML page for `data`."""
    d = data
    drift, drift_caption = drift_body(d)
    cards = [
        _card("Spend by tier", "each bar stacked by model", _spend_by_tier(d), _legend(d)),
        _card("Spend by model", "coloured by the tier each model served", _spend_by_model(d)),
        _card("Tier mix", _mix_caption(d), _tier_mix(d)),
        _card("Savings against all-flagship", _savings_caption(d), _savings(d)),
        _latency_card(d),
        *([_pools_card(d)] if d.pools else []),
        _timeline_card(d),
        _card(
            "Forecast against actual",
            "the dry run's p50, with its p10 to p90 interval, against what the run did",
            forecast_chart(d.forecast),
            wide=True,
        ),
        _errors_card(d),
        _card("Drift", drift_caption, drift, wide=True),
    ]
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(d.job_id)} · tierline report</title><style>{CSS}</style></head>"
        f'<body><main class="page">{_header(d)}{_problems(d)}'
        f'<div class="grid">{"".join(cards)}</div>{_footer(d)}</main></body></html>\n'
    )


def _card(title: str, caption: str, body: str, legend: str = "", wide: bool = False) -> str:
    cap = f'<p class="caption">{esc(caption)}</p>' if caption else ""
    return (
        f'<section class="card{" wide" if wide else ""}"><h2>{esc(title)}</h2>{cap}'
        f'<div class="chart">{body}</div>{legend}</section>'
    )


def _header(d: ReportData) -> str:
    budget = (
        f" · {d.cost_usd / d.budget_usd:.0%} of {fmt_usd(d.budget_usd)} budget"
        if d.budget_usd
        else ""
    )
    rate = f" · {d.rows_ok / d.wall_s:,.0f} rows/s" if d.wall_s else ""
    units = f"{d.units_committed}/{d.units_total}" if d.units_total else str(d.units_committed)
    base = (
        f"{fmt_usd(d.flagship_baseline_usd)} if all on {d.flagship_model}"
        if d.flagship_baseline_usd is not None
        else "no flagship baseline"
    )
    kpis = [
        (
            "Rows",
            f"{d.rows_total:,}",
            f"{d.rows_ok:,} ok · {d.rows_error:,} errors · {d.rows_pending:,} pending",
            "",
        ),
        ("Spend", fmt_usd(d.cost_usd), f"{d.calls:,} calls{budget}", ""),
        (
            "Saved vs all-flagship",
            "n/a" if d.savings_pct is None else f"{d.savings_pct:.1f}%",
            base,
            " accent",
        ),
        (
            "Wall time",
            "n/a" if d.wall_s is None else f"{d.wall_s:,.1f} s",
            f"{units} units{rate}",
            "",
        ),
        (
            "Sync / batch spend",
            " / ".join(fmt_usd(m.cost_usd) for m in d.by_mode) or "n/a",
            " · ".join(f"{m.key or 'sync'}: {m.calls:,} calls" for m in d.by_mode),
            "",
        ),
        (
            "Answers reused",
            f"{d.cache_hits + d.duplicates:,}",
            f"{d.cache_hits:,} from the cache · {d.duplicates:,} identical rows · "
            + (
                "savings unknown"
                if d.reuse_saved_usd is None
                else f"{fmt_usd(d.reuse_saved_usd)} not paid again"
            ),
            "",
        ),
        (
            "Rows retried",
            f"{sum(d.timeline.retried):,}",
            f"{sum(d.timeline.rate_limited):,} answers were 429 (rate limited)",
            "",
        ),
    ]
    cells = "".join(
        f'<div class="kpi{c}"><div class="k-label">{esc(k)}</div>'
        f'<div class="k-value">{esc(v)}</div>'
        f'<div class="k-sub">{esc(sub)}</div></div>'
        for k, v, sub, c in kpis
    )
    meta = [m for m in (d.name, d.prefix) if m]
    if d.price_version:
        meta.append(f"prices {d.price_version}")
    if d.last_commit_at:
        meta.append(f"last unit committed {d.last_commit_at[:19].replace('T', ' ')} UTC")
    status = "ok" if d.status == "complete" else "warn"
    return (
        '<header class="hero"><div class="eyebrow">tierline · job report</div>'
        f'<h1><span>{esc(d.job_id)}</span><span class="pill {status}">{esc(d.status)}</span></h1>'
        f'<p class="meta">{" · ".join(esc(m) for m in meta)}</p>'
        f'<div class="kpis">{cells}</div></header>'
    )


def _problems(d: ReportData) -> str:
    if not d.problems:
        return ""
    items = "".join(f"<li>{esc(p)}</li>" for p in d.problems)
    return f'<section class="alert"><strong>Needs attention</strong><ul>{items}</ul></section>'


def _share(v: float, total: float) -> str:
    return f"{fmt_usd(v)} · {v / total:.0%}" if total else fmt_usd(v)


def _spend_by_tier(d: ReportData) -> str:
    rows = []
    for t in d.by_tier:
        models = [s for s in d.by_tier_model if s.group == t.key]
        segs = [
            (
                s.cost_usd,
                lighten(tier_colour(t.key), 0.45 * i / max(len(models) - 1, 1)),
                f"{t.key} · {s.key}: {fmt_usd(s.cost_usd)}, {s.calls:,} calls",
            )
            for i, s in enumerate(models)
        ]
        rows.append((t.key, segs, _share(t.cost_usd, d.cost_usd)))
    return hbars("spend-by-tier", rows, "spend by tier, stacked by model (lighter: later models)")


def lighten(colour: str, t: float) -> str:
    """`colour` (#rrggbb) mixed with white: t=0 unchanged, t=1 white."""
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * t):02x}" for c in rgb)


def _spend_by_model(d: ReportData) -> str:
    tier_of: dict[str, str] = {}
    for s in sorted(d.by_tier_model, key=lambda s: s.cost_usd):  # the tier it spent most in wins
        tier_of[s.key] = s.group
    rows = [
        (
            m.key,
            [
                (
                    m.cost_usd,
                    tier_colour(tier_of.get(m.key, "")),
                    f"{m.key}: {fmt_usd(m.cost_usd)}, {m.calls:,} calls",
                )
            ],
            _share(m.cost_usd, d.cost_usd),
        )
        for m in d.by_model
    ]
    return hbars("spend-by-model", rows, "spend by model")


def _legend(d: ReportData) -> str:
    items = "".join(
        f'<span><i style="background:{tier_colour(t.key)}"></i>{esc(t.key)}</span>'
        for t in d.by_tier
    )
    return f'<div class="legend">{items}</div>'


def _tier_mix(d: ReportData) -> str:
    total = sum(t.rows for t in d.by_tier) or 1
    tiers = [t for t in d.by_tier if t.rows]
    slices = [
        (float(t.rows), tier_colour(t.key), f"{t.key}: {t.rows:,} rows ({t.rows / total:.1%})")
        for t in tiers
    ]
    rows = "".join(
        f'<tr><td><i style="background:{tier_colour(t.key)}"></i>{esc(t.key)}</td>'
        f"<td>{t.rows:,}</td><td>{t.rows / total:.1%}</td><td>{esc(fmt_usd(t.cost_usd))}</td></tr>"
        for t in tiers
    )
    chart = donut("tier-mix", slices, (f"{sum(t.rows for t in tiers):,}", "rows"), "rows per tier")
    return (
        f'<div class="donut-row">{chart}<table class="mix"><thead><tr><th>tier</th><th>rows</th>'
        f"<th>share</th><th>spend</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )


def _mix_caption(d: ReportData) -> str:
    escalated = f"; {d.rows_escalated:,} escalated to a higher tier" if d.rows_escalated else ""
    return f"rows by the tier that answered (error rows by the tier they were routed to){escalated}"


def _savings_caption(d: ReportData) -> str:
    if d.savings_pct is None or d.flagship_baseline_usd is None:
        return "no all-flagship baseline for this job"
    saved = fmt_usd(d.flagship_baseline_usd - d.cost_usd)
    return f"{saved} less than sending every row that made a call to {d.flagship_model}"


def _savings(d: ReportData) -> str:
    bars = [("this job", (d.cost_usd, TIER_COLOURS["cheap"], f"this job: {fmt_usd(d.cost_usd)}"))]
    if d.flagship_baseline_usd is not None:
        who, b = f"all on {d.flagship_model}", d.flagship_baseline_usd
        bars.append((who, (b, BASELINE, f"{who}: {fmt_usd(b)}")))
    pct = d.savings_pct
    note = "" if pct is None else f"{pct:.1f}% saved" if pct >= 0 else f"{-pct:.1f}% more"
    return vbars("savings", bars, note, "spend against all-flagship")


def _latency_card(d: ReportData) -> str:
    w = WIDE if len(d.latency) == 1 else W
    charts = "".join(
        f"<figure><figcaption><b>{esc(h.provider)}</b> · {h.n:,} rows · p50 {fmt_ms(h.p50)} · "
        f"p95 {fmt_ms(h.p95)} · p99 {fmt_ms(h.p99)}</figcaption>{latency_chart(h, w)}</figure>"
        for h in d.latency
    )
    # Several providers side by side, each at half width; a single one spans the card.
    body = f'<div class="multiples">{charts}</div>' if len(d.latency) > 1 else charts
    body = body or empty("latency", "no latencies yet", WIDE)
    return _card("Latency per provider", "rows per latency bin, log scale", body, wide=True)


def _pools_card(d: ReportData) -> str:
    rows = "".join(
        f"<tr><td>{esc(p.tier)}</td><td><code>{esc(p.deployment)}</code></td>"
        f'<td class="num">{p.rows:,}<span class="bar" style="width:{max(p.share * 100, 3):.0f}%">'
        f'</span></td><td class="num">{p.share:.0%}</td><td class="num">{p.rate_limited:,}</td>'
        f'<td class="num">{fmt_ms(p.p50_ms)}</td><td class="num">{fmt_ms(p.p95_ms)}</td></tr>'
        for p in d.pools
    )
    table = (
        '<table class="errors"><thead><tr><th>tier</th><th>deployment</th><th>rows</th>'
        "<th>share</th><th>429s</th><th>p50</th><th>p95</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
    cap = (
        "each deployment's share of its tier's answered rows, the 429s it answered (rows "
        "then moved on), and the latency of the rows it answered"
    )
    return _card("Tier pools", cap, table, wide=True)


def _timeline_card(d: ReportData) -> str:
    cap = (
        f"rows by completion time, {fmt_step(d.timeline.step_s)} buckets; 429s: answers counted "
        "on each row, plus one per row that failed as rate_limited (at its unit's commit time)"
    )
    if not d.timeline.per_call_429:
        cap += "; these files predate per-row 429 counts, so only failed rows are counted"
    legend = (
        f'<div class="legend"><span><i style="background:{ROWS}"></i>rows done</span>'
        f'<span><i style="background:{RETRIED}"></i>rows retried (attempts &gt; 1)</span>'
        f'<span><i class="dot" style="background:{LIMITED}"></i>429s</span></div>'
    )
    return _card(
        "Rows, retries and 429s over time", cap, timeline_chart(d.timeline), legend, wide=True
    )


def _errors_card(d: ReportData) -> str:
    if not d.errors:
        return _card(
            "Top error types",
            "",
            '<p class="muted">No error rows: every row has a result.</p>',
            wide=True,
        )
    top = max(e.count for e in d.errors)
    rows = "".join(
        f'<tr><td><code>{esc(e.error_type)}</code></td><td class="num">{e.count:,}'
        f'<span class="bar" style="width:{max(e.count / top * 100, 3):.0f}%"></span></td>'
        f'<td class="ids">{"".join(f"<code>{esc(i)}</code>" for i in e.example_ids)}</td>'
        f'<td class="msg" title="{esc(e.example_message)}">'
        f"{esc(short(e.example_message, 160))}</td></tr>"
        for e in d.errors
    )
    more = d.error_types_total - len(d.errors)
    tail = f'<p class="muted">and {more} more error types</p>' if more > 0 else ""
    table = (
        '<table class="errors"><thead><tr><th>type</th><th>rows</th><th>example ids</th>'
        f"<th>example message</th></tr></thead><tbody>{rows}</tbody></table>{tail}"
    )
    return _card("Top error types", f"{d.rows_error:,} error rows in all", table, wide=True)


def _footer(d: ReportData) -> str:
    notes = "".join(f"<li>{esc(n)}</li>" for n in d.notes)
    return (
        f"<footer>{f'<ul>{notes}</ul>' if notes else ''}<p>Generated by tierline from the "
        "committed units of this job. One self-contained file: no scripts, no network.</p></footer>"
    )


CSS = """
:root{--ink:#17212f;--muted:#5d6b7e;--line:#e3e8ef;--bg:#f4f6f9}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 system-ui,-apple-system,
"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;font-variant-numeric:tabular-nums}
.page{max-width:1200px;margin:0 auto;padding:28px 24px 40px}
.hero{background:linear-gradient(135deg,#17212f,#273a52);color:#fff;border-radius:14px;
padding:24px 28px 26px;margin-bottom:20px}
.eyebrow{text-transform:uppercase;letter-spacing:.12em;font-size:12px;color:#9fb0c8}
h1{margin:4px 0 2px;font-size:26px;font-weight:650;display:flex;gap:12px;align-items:center;
flex-wrap:wrap;overflow-wrap:anywhere}
.pill{font-size:12px;font-weight:650;border-radius:999px;padding:3px 10px;text-transform:uppercase;
letter-spacing:.04em}
.pill.ok{background:#d5f5e9;color:#0b6b50}.pill.warn{background:#ffe9c7;color:#8a4b00}
.meta{margin:0 0 18px;color:#b5c2d4;font-size:13px;overflow-wrap:anywhere}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(175px,1fr));gap:12px}
.kpi{background:rgba(255,255,255,.07);border:1px solid rgba(255,255,255,.12);border-radius:10px;
padding:12px 14px}
.kpi.accent{background:rgba(15,157,118,.25);border-color:rgba(52,211,153,.5)}
.k-label{font-size:11.5px;color:#b5c2d4;text-transform:uppercase;letter-spacing:.07em}
.k-value{font-size:26px;font-weight:650;line-height:1.25;margin-top:2px}
.k-sub{font-size:12.5px;color:#c9d4e3;margin-top:2px}
.alert{background:#fff6e6;border:1px solid #f3cf8e;border-radius:10px;padding:12px 16px;
margin-bottom:20px;color:#6b3d00}
.alert ul{margin:6px 0 0;padding-left:20px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,460px),1fr));gap:20px}
.card{background:#fff;border:1px solid var(--line);border-radius:12px;padding:18px 20px;
box-shadow:0 1px 2px rgba(23,33,47,.05);min-width:0}
.card.wide{grid-column:1/-1}
.card.wide svg{min-width:720px}
.card.wide .multiples svg{min-width:420px}
h2{font-size:16px;margin:0;font-weight:650}
.caption{margin:2px 0 12px;color:var(--muted);font-size:13px}
.chart{overflow-x:auto}
svg{display:block;width:100%;height:auto;min-width:420px;font-size:12px;fill:var(--ink)}
svg .grid{stroke:#edf0f5}svg .axis{stroke:#b7c1cf}svg .tick{fill:#7a8799;font-size:11px}
svg .label{font-size:12.5px}svg .value,svg .muted{fill:var(--muted)}
svg .panel{font-weight:650;font-size:13px}svg .big-note{font-size:22px;font-weight:650;fill:#0b6b50}
svg .pline{stroke:#17212f;stroke-dasharray:3 3}svg .plabel{font-size:11px}
svg .stem{stroke:#d93f3f;stroke-width:1.5}svg .whisker{stroke:#45536a;stroke-width:1.5}
svg .donut-big{font-size:26px;font-weight:650}
svg rect:hover,svg path:hover,svg circle:hover{opacity:.75}
.donut-row{display:flex;gap:20px;align-items:center;flex-wrap:wrap}
.donut-row svg{width:180px;min-width:0;flex:none}
.legend{display:flex;gap:16px;flex-wrap:wrap;font-size:13px;color:var(--muted);margin-top:8px}
.legend i,.mix i{display:inline-block;width:11px;height:11px;border-radius:3px;margin-right:6px;
vertical-align:-1px}
.legend i.dot{border-radius:50%}
table{border-collapse:collapse;font-size:13.5px}
th{text-align:left;color:var(--muted);font-weight:600;font-size:11.5px;text-transform:uppercase;
letter-spacing:.06em;border-bottom:1px solid var(--line);padding:6px 10px}
td{padding:7px 10px;border-bottom:1px solid var(--line);vertical-align:top}
.mix td,.mix th{white-space:nowrap;padding:6px 8px}
.mix{flex:1 1 220px}.mix td:nth-child(n+2),.mix th:nth-child(n+2){text-align:right}
.errors{width:100%;min-width:640px}.errors td:first-child code{white-space:nowrap}
.errors td.num{width:120px;white-space:nowrap}
.errors .bar{display:block;height:4px;background:#e0797a;border-radius:2px;margin-top:5px}
.errors .ids code{display:inline-block;margin:0 4px 4px 0}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f0f3f7;
border-radius:4px;padding:1px 6px;overflow-wrap:anywhere}
.msg{color:var(--muted);max-width:440px}
.multiples{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,460px),1fr));gap:16px}
figure{margin:0}figcaption{font-size:13px;color:var(--muted);margin-bottom:6px}
.muted{color:var(--muted)}
.drift{margin-bottom:12px}.drift td.num{text-align:right}
.drift td.ok{color:#0b6b50}.drift td.bad{color:#b42318;font-weight:650}
footer{margin-top:24px;color:var(--muted);font-size:12.5px}
footer ul{padding-left:18px;margin:0 0 8px}
@media (max-width:600px){.page{padding:14px 10px}.hero{padding:18px}.k-value{font-size:22px}}
"""
