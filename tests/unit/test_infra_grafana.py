"""The Grafana dashboard queries tierline's metrics by the names Ray exports them under, with
their labels, and covers the panels the on-call person needs. PromQL is tokenised here to
find every metric a query names; with `promtool` installed, every query is also parsed by
Prometheus itself."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "infra" / "grafana"
DASHBOARD = GRAFANA / "tierline.json"

# Engine name -> (type, labels). Ray's Prometheus endpoint adds the `ray_` prefix.
METRICS: dict[str, tuple[str, set[str]]] = {
    "tierline_rows_total": ("counter", {"job", "tier", "status"}),
    "tierline_spend_usd_total": ("counter", {"job", "provider", "model"}),
    "tierline_calls_in_flight": ("gauge", {"provider"}),
    "tierline_retries_total": ("counter", {"provider", "reason"}),
    "tierline_rate_limited_total": ("counter", {"provider"}),
    "tierline_call_latency_seconds": ("histogram", {"provider", "model"}),
    "tierline_quota_pauses_total": ("counter", {"provider"}),
    "tierline_canary_accuracy": ("gauge", {"job", "deployment", "tier"}),
    "tierline_shift_delta": ("gauge", {"job", "metric"}),
    "tierline_shift_flagged": ("gauge", {"job", "metric"}),
}


def exported() -> dict[str, tuple[str, set[str]]]:
    """Every series name Prometheus stores, with the engine metric and the labels it has."""
    out = {}
    for name, (kind, labels) in METRICS.items():
        if kind == "histogram":
            out[f"ray_{name}_bucket"] = (name, labels | {"le"})
            out[f"ray_{name}_sum"] = (name, labels)
            out[f"ray_{name}_count"] = (name, labels)
        else:
            out[f"ray_{name}"] = (name, labels)
    return out


PROMQL_WORDS = {
    "sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "inf", "nan", "rate", "irate", "increase",
    "delta", "idelta", "deriv", "histogram_quantile", "label_replace", "label_join", "abs",
    "clamp_min", "clamp_max", "round", "vector", "scalar", "time", "label_values", "sort",
    "sort_desc", "absent", "avg_over_time", "max_over_time", "min_over_time", "sum_over_time",
}  # fmt: skip


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict[str, Any]]:
    out = []
    for p in dashboard()["panels"]:
        out.append(p)
        out += p.get("panels", [])  # collapsed rows hold their panels
    return out


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    out = [
        (f"panel {p['title']!r} {t['refId']}", t["expr"]) for p in panels() for t in p["targets"]
    ]
    for var in dashboard()["templating"]["list"]:
        if var["type"] == "query":
            q = var["query"]
            out.append((f"variable {var['name']}", q["query"] if isinstance(q, dict) else q))
    return out


def metrics_in(expr: str) -> list[tuple[str, set[str]]]:
    """(metric, label names matched in its selector) for each metric an expression names."""
    found = []
    ident = r"[A-Za-z_:][A-Za-z0-9_:]*"
    for m in re.finditer(rf"label_values\(\s*({ident})\s*,\s*(\w+)\s*\)", expr):
        found.append((m[1], {m[2]}))  # Grafana's variable query: metric, label
    rest = re.sub(r"label_values\([^)]*\)", " ", expr)
    rest = re.sub(r'"(?:[^"\\]|\\.)*"', '""', rest)  # strings
    for m in re.finditer(rf"({ident})\s*\{{([^}}]*)\}}", rest):
        found.append((m[1], set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", m[2]))))
    rest = re.sub(rf"{ident}\s*\{{[^}}]*\}}|\[[^\]]*\]", " ", rest)  # selectors, ranges
    rest = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", rest)
    for m in re.finditer(rf"(?<![\w.$])({ident})(?![\w(])", rest):
        if m[1] not in PROMQL_WORDS:
            found.append((m[1], set()))  # a metric named without a selector
    return found


def test_tokeniser_finds_metrics_and_labels() -> None:
    expr = 'sum by (a) (rate(x_total{job=~"$job", b!="c"}[5m])) / on (d) y + 3 * z{e="f"}'
    assert metrics_in(expr) == [("x_total", {"job", "b"}), ("z", {"e"}), ("y", set())]
    assert metrics_in("histogram_quantile(0.95, sum by (le) (rate(h_bucket[1m])))") == [
        ("h_bucket", set())
    ]
    assert ("m", {"job"}) in metrics_in("label_values(m, job)")


def test_dashboard_names_only_exported_tierline_metrics() -> None:
    names = exported()
    used: set[str] = set()
    for where, expr in queries():
        found = metrics_in(expr)
        assert found, f"{where}: no metric in {expr!r}"
        labels_here: set[str] = set()
        for metric, labels in found:
            assert metric in names, f"{where}: {metric} is not one of tierline's exported names"
            engine, have = names[metric]
            assert labels <= have, f"{where}: {metric} has no label {labels - have}"
            used.add(engine)
            labels_here |= have
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            grouped = {g.strip() for g in group.split(",") if g.strip()}
            assert grouped <= labels_here, f"{where}: grouping by {grouped - labels_here}"
    assert used == set(METRICS), f"not shown: {set(METRICS) - used}"


def test_required_panels_exist() -> None:
    exprs = " ".join(e for _, e in queries())
    required = [
        r"sum by \(tier, status\) \(rate\(ray_tierline_rows_total",
        r"rate\(ray_tierline_spend_usd_total\{[^}]*\}\[[^\]]+\]\)\) \* 3600",
        r"sum by \(provider, model\) \(ray_tierline_spend_usd_total",
        r"sum by \(provider\) \(ray_tierline_calls_in_flight",
        r"rate\(ray_tierline_rate_limited_total",
        r"sum by \(provider, reason\) \(rate\(ray_tierline_retries_total",
        r"histogram_quantile\(0\.5, sum by \(provider, le\) \(rate\(ray_tierline_call_latency",
        r"histogram_quantile\(0\.95, sum by \(provider, le\) \(rate\(ray_tierline_call_latency",
        r"ray_tierline_quota_pauses_total",
    ]
    for pattern in required:
        assert re.search(pattern, exprs), pattern


def test_dashboard_structure() -> None:
    d = dashboard()
    assert d["uid"] == "tierline" and d["title"] and isinstance(d["schemaVersion"], int)
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"job", "provider"} <= set(variables)
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for p in panels():
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"] and t["expr"].strip()


def test_readme_names_every_metric() -> None:
    readme = (GRAFANA / "README.md").read_text()
    for name in METRICS:
        assert f"`{name}`" in readme, name
    for series in exported():
        assert f"`{series}`" in readme, series
    assert "honor" in readme.lower() and "exported_job" in readme


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (Debian: prometheus)")
    grafana_vars = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h"}
    rules = []
    for i, (_, expr) in enumerate(queries()):
        if expr.startswith("label_values("):
            continue  # Grafana's, not PromQL
        for var, value in grafana_vars.items():
            expr = expr.replace(var, value)
        expr = re.sub(r"\$\{?\w+\}?", ".*", expr)  # $job, $provider: regex matchers
        rules.append({"record": f"tierline:check:{i}", "expr": expr})
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
