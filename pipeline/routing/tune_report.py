"""What the tuner hands back to people: the spec fragment, the Pareto table, the curve.

    text = render_fragment(result, provider="openai", model_path="router.npz")  # YAML
    rows = render_table_rows(result)      # [(policy, accuracy, cost share, flagship share,
                                          #   lower bound, certified), ...], dearest first
    svg = render_svg(result)              # cost-quality curve, hand-written SVG

The fragment is the `tiers:` and `routing:` of a job spec: paste it into a spec whose
`providers:` has `provider` and whose price table (or `prices:`) knows the models.
"""

from __future__ import annotations

from html import escape

import yaml

from pipeline.routing.policies import spec_fragment
from pipeline.routing.tune import TuneResult

TABLE_COLUMNS = ("policy", "accuracy", "cost_share", "flagship_share", "lower_bound", "certified")
TableRow = tuple[str, float, float, float, float, bool]


def render_fragment(
    result: TuneResult, *, provider: str = "sim", model_path: str = "router.npz"
) -> str:
    """YAML for the pick; a learned pick names its router file `model_path` (the caller
    writes `result.router` there)."""
    pick = result.pick
    if pick is None:
        raise ValueError(f"{result.source}: nothing to render, no policy was certified")
    doc = spec_fragment(pick.policy, provider=provider, model_path=model_path)
    if result.features and pick.policy.kind.startswith("learned"):
        doc["routing"]["features"] = list(result.features)
    head = [
        f"# tierline router tune on {result.source}: {result.rows} training rows",
        f"# promise: {result.target_text()} with confidence {result.confidence:g}",
        f"# pick: {pick.policy.name}",
        f"#   accuracy {pick.accuracy:.3f}, {pick.cost_share:.1%} of flagship cost, "
        f"lower bound {pick.lower_bound:.3f}",
        f"# deployments are '{provider}/<recorded model>': rename to your provider's models",
    ]
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=100)
    return "\n".join(head) + "\n" + body


def render_table_rows(result: TuneResult) -> list[TableRow]:
    """The tested sequence (dearest first): what each policy did on the training rows and
    the lower bound the certify rows gave it (columns: TABLE_COLUMNS)."""
    return [
        (
            r.policy.name,
            round(r.accuracy, 4),
            round(r.cost_share, 4),
            round(r.flagship_share, 4),
            round(r.lower_bound, 4),
            r.certified,
        )
        for r in result.table
    ]


_COLOURS = {
    "single": "#7f7f7f",
    "agree": "#1f77b4",
    "vote": "#9467bd",
    "learned": "#2ca02c",
    "learned+agree": "#ff7f0e",
}


def render_svg(result: TuneResult, width: int = 760, height: int = 480) -> str:
    """Accuracy against cost (share of flagship's) on the training rows: each family's
    Pareto front, the tested sequence (filled: certified), the target and the pick."""
    left, right, top, bottom = 64, 190, 40, 48
    pts = [p for front in result.frontier.values() for p in front]
    pts += [(r.cost_share, r.accuracy) for r in result.table]
    target_acc = result.target if result.absolute else result.target * result.flagship_accuracy
    x_max = max(1.0, max((x for x, _ in pts), default=1.0)) * 1.02
    ys = [y for _, y in pts] + [target_acc]
    y_lo, y_hi = max(0.0, min(ys) - 0.02), min(1.0, max(ys) + 0.02)
    if y_hi - y_lo < 0.05:
        y_lo, y_hi = y_lo - 0.025, y_hi + 0.025

    def px(x: float, y: float) -> tuple[float, float]:
        w, h = width - left - right, height - top - bottom
        return left + x / x_max * w, top + (1.0 - (y - y_lo) / (y_hi - y_lo)) * h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="20" font-size="13">{escape(_title(result))}</text>',
    ]
    for i in range(11):  # grid and tick labels
        gx = x_max * i / 10
        (x0, y0), (_, y1) = px(gx, y_lo), px(gx, y_hi)
        out.append(f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x0:.1f}" y2="{y1:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{x0:.1f}" y="{y0 + 14:.1f}" text-anchor="middle">{gx:.0%}</text>')
        gy = y_lo + (y_hi - y_lo) * i / 10
        (x0, yy), (x1, _) = px(0.0, gy), px(x_max, gy)
        out.append(f'<line x1="{x0:.1f}" y1="{yy:.1f}" x2="{x1:.1f}" y2="{yy:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{x0 - 6:.1f}" y="{yy + 4:.1f}" text-anchor="end">{gy:.3f}</text>')
    bx, by = px(x_max / 2, y_lo)
    out.append(
        f'<text x="{bx:.1f}" y="{by + 34:.1f}" text-anchor="middle">cost / flagship cost</text>'
    )
    out.append(
        f'<text transform="translate(16 {top + (height - top - bottom) / 2:.1f}) rotate(-90)" '
        'text-anchor="middle">accuracy (training rows)</text>'
    )
    (x0, ty), (x1, _) = px(0.0, target_acc), px(x_max, target_acc)
    out.append(
        f'<line x1="{x0:.1f}" y1="{ty:.1f}" x2="{x1:.1f}" y2="{ty:.1f}" stroke="#d62728" '
        'stroke-dasharray="6 4"/>'
    )
    legend = [("target", "#d62728")]
    for kind, front in result.frontier.items():
        colour = _COLOURS.get(kind, "#333")
        line = " ".join(f"{a:.1f},{b:.1f}" for a, b in (px(x, y) for x, y in front))
        out.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>')
        legend.append((f"{kind} front", colour))
    for r in result.table:
        cx, cy = px(r.cost_share, r.accuracy)
        fill = "#222" if r.certified else "white"
        out.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{fill}" stroke="#222">'
            f"<title>{escape(r.policy.name)}: bound {r.lower_bound:.3f}</title></circle>"
        )
    legend += [("tested, certified", "#222"), ("tested, not certified", "#bbb")]
    if result.pick is not None:
        cx, cy = px(result.pick.cost_share, result.pick.accuracy)
        out.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="8" fill="none" stroke="#d62728" '
            f'stroke-width="2.5"><title>pick: {escape(result.pick.policy.name)}</title></circle>'
        )
        legend.append(("pick", "#d62728"))
    for i, (label, colour) in enumerate(legend):
        lx, ly = width - right + 14, top + 16 * i + 10
        out.append(f'<rect x="{lx}" y="{ly - 8}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{lx + 16}" y="{ly + 1}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _title(result: TuneResult) -> str:
    if result.pick is None:
        return f"no policy certified for {result.target_text()} ({result.rows} rows)"
    return (
        f"pick: {result.pick.policy.name[:60]} - {result.pick.cost_share:.0%} of flagship "
        f"cost, {result.target_text()} at confidence {result.confidence:g}"
    )
