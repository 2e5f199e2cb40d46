"""SVG charts for the HTML report, drawn as strings: no libraries, no scripts.

    hbars("spend-by-model", [("sim/gpt-4o", [(0.19, "#7c4ddb", "hover text")], "$0.19")], "spend")

Every chart is `<svg data-chart="NAME" data-points="N">` holding exactly N drawn marks
(`rect`, `path`, `circle`), one per data point, each with a `<title>` shown on hover; axes,
grid and labels are `line` and `text` only, so a test can count what was drawn. Every
string from the data goes through `esc`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import timedelta
from html import escape

from pipeline.report.data import ForecastFigures, LatencyHistogram, Timeline, fmt_delta, fmt_usd

TIER_COLOURS = {"cheap": "#0f9d76", "mid": "#2f6fdb", "flagship": "#7c4ddb"}
OTHER, ROWS, RETRIED, LIMITED, BASELINE = "#8896ab", "#b8c4d6", "#e8890c", "#d93f3f", "#aab4c3"
W, WIDE = 560, 1120  # viewBox widths: a half-width card's chart, a full-width chart
Segment = tuple[float, str, str]  # value, colour, hover title


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def _n(v: float) -> str:
    return f"{v:.1f}".removesuffix(".0")


def tier_colour(tier: str) -> str:
    return TIER_COLOURS.get(tier, OTHER)


# --- primitives -----------------------------------------------------------------------


def _svg(name: str, w: int, h: float, body: Sequence[str], points: int, label: str) -> str:
    return (
        f'<svg data-chart="{esc(name)}" data-points="{points}" viewBox="0 0 {w} {_n(h)}" '
        f'role="img" aria-label="{esc(label)}">' + "".join(body) + "</svg>"
    )


def _mark(tag: str, title: str, **attrs: float | str) -> str:
    a = " ".join(f'{k}="{_n(v) if isinstance(v, float) else esc(v)}"' for k, v in attrs.items())
    return f"<{tag} {a}><title>{esc(title)}</title></{tag}>"


def _rect(title: str, x: float, y: float, w: float, h: float, fill: str) -> str:
    w, h = max(w, 1.0), max(h, 1.0)
    return _mark("rect", title, x=x, y=y, width=w, height=h, rx=2.0, fill=fill, stroke="#fff")


def _text(x: float, y: float, s: str, anchor: str = "start", cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}"{c}>{esc(s)}</text>'


def _line(x1: float, y1: float, x2: float, y2: float, cls: str = "grid") -> str:
    return f'<line x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}" class="{cls}"/>'


def empty(name: str, message: str, w: int = W) -> str:
    return _svg(name, w, 90, [_text(w / 2, 50, message, "middle", "muted")], 0, message)


def nice_ticks(vmax: float, count: int = 4) -> list[float]:
    """0 and round steps (1, 2, 2.5, 5 x 10^k) up to at least `vmax`."""
    if vmax <= 0:
        return [0.0, 1.0]
    raw = vmax / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    return [i * step for i in range(math.ceil(vmax / step - 1e-9) + 1)]


def usd_tick(v: float) -> str:
    if v == 0:
        return "$0"
    digits = len(f"{v:.6f}".rstrip("0").split(".")[1])
    return f"${v:,.{max(digits, 2) if v < 100 else 0}f}"


def short(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def fmt_ms(v: float) -> str:
    return f"{v / 1000:.3g} s" if v >= 1000 else f"{v:.3g} ms"


def fmt_step(s: float) -> str:
    return f"{s:g} s" if s < 60 else f"{s / 60:g} min" if s < 3600 else f"{s / 3600:g} h"


# --- charts ---------------------------------------------------------------------------


def hbars(
    name: str, rows: Sequence[tuple[str, Sequence[Segment], str]], label: str, w: int = W
) -> str:
    """Horizontal bars, one per row, each stacked from its segments: a rect per segment."""
    drawn = sum(1 for _, segs, _ in rows for v, _, _ in segs if v > 0)
    if not drawn:
        return empty(name, "nothing spent yet", w)
    left, right, band = 184, 100, 34
    ticks = nice_ticks(max(sum(v for v, _, _ in segs) for _, segs, _ in rows))
    scale = (w - left - right) / ticks[-1]
    h = 8 + band * len(rows) + 24
    body = []
    for t in ticks:
        x = left + t * scale
        body += [_line(x, 8, x, h - 20), _text(x, h - 6, usd_tick(t), "middle", "tick")]
    for i, (row_label, segs, value) in enumerate(rows):
        y, x = 14 + i * band, float(left)
        body.append(_text(left - 10, y + 15, short(row_label, 25), "end", "label"))
        for v, colour, title in segs:
            if v > 0:
                body.append(_rect(title, x, y, v * scale, 22, colour))
                x += max(v * scale, 1.0)
        body.append(_text(x + 6, y + 15, value, "start", "value"))
    return _svg(name, w, h, body, drawn, label)


def vbars(name: str, bars: Sequence[tuple[str, Segment]], note: str, label: str) -> str:
    """Vertical bars side by side, one rect each; `note` is written above the first bar."""
    h, top, bottom, bw = 250, 34, 30, 120
    ticks = nice_ticks(max((v for _, (v, _, _) in bars), default=0.0), 4)
    ph = h - top - bottom
    body = []
    for t in ticks:
        y = top + ph - ph * t / ticks[-1]
        body += [_line(70, y, W - 20, y), _text(62, y + 4, usd_tick(t), "end", "tick")]
    drawn = 0
    for i, (bar_label, (v, colour, title)) in enumerate(bars):
        x = 130 + i * (bw + 90)
        bh = ph * v / ticks[-1]
        body.append(_text(x + bw / 2, h - 10, short(bar_label, 26), "middle", "label"))
        body.append(_text(x + bw / 2, top + ph - bh - 8, fmt_usd(v), "middle", "value"))
        if v > 0:
            body.append(_rect(title, x, top + ph - bh, bw, bh, colour))
            drawn += 1
    if note and bars:
        y = top + ph - ph * bars[0][1][0] / ticks[-1] - 34  # above the first bar's value
        body.append(_text(130 + bw / 2, max(y, 22.0), note, "middle", "big-note"))
    return _svg(name, W, h, body, drawn, label)


def donut(name: str, slices: Sequence[Segment], centre: tuple[str, str], label: str) -> str:
    total = sum(v for v, _, _ in slices)
    if total <= 0:
        return empty(name, "no rows yet", 240)
    body, angle, drawn = [], -math.pi / 2, 0
    for v, colour, title in slices:
        if v > 0:
            sweep = 2 * math.pi * v / total
            body.append(_mark("path", title, d=_arc(120, 120, 64, 104, angle, sweep), fill=colour))
            angle += sweep
            drawn += 1
    body += [
        _text(120, 124, centre[0], "middle", "donut-big"),
        _text(120, 144, centre[1], "middle", "muted"),
    ]
    return _svg(name, 240, 240, body, drawn, label)


def _arc(cx: float, cy: float, r0: float, r1: float, a: float, sweep: float) -> str:
    sweep = min(sweep, 2 * math.pi - 1e-4)  # a full ring still needs two distinct ends
    b, large = a + sweep, int(sweep > math.pi)

    def pt(r: float, t: float) -> str:
        return f"{_n(cx + r * math.cos(t))} {_n(cy + r * math.sin(t))}"

    return (
        f"M{pt(r1, a)} A{r1} {r1} 0 {large} 1 {pt(r1, b)} "
        f"L{pt(r0, b)} A{r0} {r0} 0 {large} 0 {pt(r0, a)} Z"
    )


def latency_chart(h: LatencyHistogram, w: int = W) -> str:
    """Rows per log-spaced latency bin: a rect per non-empty bin; p50 and p95 marked."""
    left, right, top, ht = 48, 14, 24, 176
    lo, hi = h.edges_ms[0], h.edges_ms[-1]
    pw, ph = w - left - right, ht - top - 28

    def x(ms: float) -> float:
        return left + pw * math.log(ms / lo) / math.log(hi / lo)

    yt = nice_ticks(max(h.counts), 3)
    body = []
    for t in yt:
        y = top + ph - ph * t / yt[-1]
        body += [_line(left, y, w - right, y), _text(left - 6, y + 4, f"{t:,.0f}", "end", "tick")]
    m = 10 ** math.floor(math.log10(lo))
    while m <= hi * 1.0001:
        for v in (m, 2 * m, 5 * m):
            if lo <= v <= hi * 1.0001:
                body.append(_text(x(v), ht - 8, fmt_ms(v), "middle", "tick"))
        m *= 10
    drawn = 0
    for i, n in enumerate(h.counts):
        if n:
            a, b = h.edges_ms[i], h.edges_ms[i + 1]
            title = f"{h.provider}: {fmt_ms(a)} to {fmt_ms(b)}: {n:,} rows"
            bh = ph * n / yt[-1]
            body.append(_rect(title, x(a) + 0.5, top + ph - bh, x(b) - x(a) - 1, bh, "#4a7fd4"))
            drawn += 1
    for q, v, anchor, dx in (("p50", h.p50, "end", -4), ("p95", h.p95, "start", 4)):
        body += [
            _line(x(v), top - 6, x(v), top + ph, "pline"),
            _text(x(v) + dx, top - 8, f"{q} {fmt_ms(v)}", anchor, "plabel"),
        ]
    svg = _svg("latency", w, ht, body, drawn, f"latency of {h.provider}, {h.n} rows")
    return svg.replace("<svg ", f'<svg data-provider="{esc(h.provider)}" ', 1)


def timeline_chart(tl: Timeline) -> str:
    """Rows done and rows retried per bucket (rects), 429s per bucket (circles) below."""
    if tl.start is None or not tl.rows:
        return empty("retries", "no completed rows yet", WIDE)
    left, right, top, ph, lh, ht = 56, 16, 14, 150, 46, 272
    n, pw = len(tl.rows), WIDE - left - right
    bw, y429 = pw / n, top + ph + 28
    yt = nice_ticks(max(tl.rows), 3)
    body = [
        _line(left, y429 + lh, WIDE - right, y429 + lh),
        _text(left - 8, y429 + lh / 2 + 10, "429s", "end", "tick"),
    ]
    if not any(tl.rate_limited):
        body.append(_text(left + 8, y429 + lh / 2 + 4, "none", "start", "muted"))
    else:
        body.append(_text(left - 8, y429 + 10, f"max {max(tl.rate_limited):,}", "end", "tick"))
    for t in yt:
        y = top + ph - ph * t / yt[-1]
        body += [
            _line(left, y, WIDE - right, y),
            _text(left - 8, y + 4, f"{t:,.0f}", "end", "tick"),
        ]
    drawn, top_429 = 0, max(max(tl.rate_limited), 1)
    for i in range(n):
        x0, when = left + i * bw, _when(tl, i)
        for v, colour, what in (
            (tl.rows[i], ROWS, "rows done"),
            (tl.retried[i], RETRIED, "retried"),
        ):
            if v:
                bh = ph * v / yt[-1]
                body.append(
                    _rect(
                        f"{when}: {v:,} {what}", x0 + bw * 0.1, top + ph - bh, bw * 0.8, bh, colour
                    )
                )
                drawn += 1
        if tl.rate_limited[i]:
            cx, cy = x0 + bw / 2, y429 + lh - 6 - (lh - 12) * tl.rate_limited[i] / top_429
            title = f"{when}: {tl.rate_limited[i]:,} rate-limited"
            body += [
                _line(cx, y429 + lh, cx, cy, "stem"),
                _mark("circle", title, cx=cx, cy=cy, r=4.5, fill=LIMITED),
            ]
            drawn += 1
    for i in sorted({round(k * (n - 1) / 5) for k in range(6)}):
        body += [
            _line(left + i * bw, y429 + lh, left + i * bw, y429 + lh + 4, "axis"),
            _text(left + i * bw, ht - 6, _tick_time(tl, i), "middle", "tick"),
        ]
    return _svg("retries", WIDE, ht, body, drawn, "rows, retries and 429s over time")


def _when(tl: Timeline, i: int) -> str:
    assert tl.start is not None
    at = tl.start + timedelta(seconds=i * tl.step_s)
    clock = at.strftime("%H:%M:%S.%f")[:-3] if tl.step_s < 1 else at.strftime("%Y-%m-%d %H:%M:%S")
    return f"{clock} UTC (+{fmt_step(tl.step_s)})"


def _tick_time(tl: Timeline, i: int) -> str:
    assert tl.start is not None
    if tl.step_s < 1:
        return f"+{i * tl.step_s:.1f} s"
    at = tl.start + timedelta(seconds=i * tl.step_s)
    return at.strftime("%m-%d %H:%M" if tl.step_s >= 3600 else "%H:%M:%S")


def forecast_chart(f: ForecastFigures | None) -> str:
    """Forecast p50 (with its p10-p90 interval) beside actual: cost left, duration right."""
    if f is None:
        return empty("forecast", "no forecast: this job folder has no forecast.json", WIDE)

    def secs(v: float) -> str:
        return f"{v:,.1f} s"

    panels: list[tuple[str, tuple[float | None, ...], Callable[[float], str]]] = [
        ("Cost", (f.cost_p50, f.cost_low, f.cost_high, f.actual_cost), fmt_usd),
        ("Duration", (f.duration_p50, f.duration_low, f.duration_high, f.actual_duration), secs),
    ]
    body, drawn, half = [], 0, WIDE / 2
    for k, (title, (p50, low, high, actual), fmt) in enumerate(panels):
        x0 = k * half
        body.append(_text(x0 + 8, 20, title, "start", "panel"))
        if p50 is None:
            body.append(_text(x0 + 8, 52, "not in the forecast", "start", "muted"))
            continue
        left, width = x0 + 110, half - 110 - 170
        scale = width / max(v or 0.0 for v in (p50, high, actual, 1e-12))
        for i, (what, v, colour) in enumerate(
            (("forecast p50", p50, BASELINE), ("actual", actual, TIER_COLOURS["cheap"]))
        ):
            y = 34 + i * 34
            body.append(_text(left - 10, y + 15, what, "end", "label"))
            if v is None:
                body.append(_text(left, y + 15, "unknown", "start", "muted"))
                continue
            body.append(_rect(f"{title} {what}: {fmt(v)}", left, y, v * scale, 22, colour))
            drawn += 1
            end = v * scale
            if i == 0 and low is not None and high is not None:
                a, b = left + low * scale, left + high * scale
                body += [_line(a, y + 11, b, y + 11, "whisker")]
                body += [_line(x, y + 5, x, y + 17, "whisker") for x in (a, b)]
                interval = f"{fmt(low)} to {fmt(high)}"
                body.append(_text(a, y - 4, f"p10-p90 {interval}", "start", "tick"))
                end = max(end, high * scale)
            delta = f"  ({fmt_delta(v, p50)} vs p50)" if i == 1 and p50 else ""
            body.append(_text(left + end + 8, y + 15, fmt(v) + delta, "start", "value"))
    return _svg("forecast", WIDE, 110, body, drawn, "forecast against actual")
