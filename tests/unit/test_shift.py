"""The shift check's arithmetic and how it finds the previous run, without Ray."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline.drift.shift import compare, previous_summary, run_metrics, shift_report
from pipeline.store import Store


def doc(
    cheap: int, mid: int, flagship: int, esc: float = 0.0, dis: float = 0.0, **kw: Any
) -> dict[str, Any]:
    tiers = {"cheap": cheap, "mid": mid, "flagship": flagship}
    return {
        "name": "nightly",
        "rows_ok": cheap + mid + flagship,
        "rows_error": 0,
        "by_tier": {t: {"rows": n} for t, n in tiers.items() if n},
        "escalation_rate": esc,
        "disagreement_rate": dis,
        **kw,
    }


def test_shares_are_rows_per_tier_over_all_rows() -> None:
    assert run_metrics(doc(60, 30, 10, esc=0.05)) == {
        "tier_share.cheap": 0.6, "tier_share.mid": 0.3, "tier_share.flagship": 0.1,
        "escalation_rate": 0.05, "disagreement_rate": 0.0,
    }  # fmt: skip


def test_a_change_past_the_threshold_is_flagged_and_exactly_at_it_is_not() -> None:
    items = {i.metric: i for i in compare(run_metrics(doc(70, 20, 10)),
                                           run_metrics(doc(50, 30, 20, esc=0.1)), 0.1)}  # fmt: skip
    cheap, mid, flagship = (
        items["tier_share.cheap"],
        items["tier_share.mid"],
        items["tier_share.flagship"],
    )
    assert (cheap.previous, cheap.now, cheap.delta, cheap.flagged) == (0.7, 0.5, -0.2, True)
    assert (mid.delta, mid.flagged) == (0.1, False)  # 0.3 - 0.2 is the threshold itself
    assert (flagship.delta, flagship.flagged) == (0.1, False)
    assert items["escalation_rate"].delta == 0.1 and not items["escalation_rate"].flagged


def test_a_tier_one_run_did_not_use_counts_as_share_zero() -> None:
    items = {
        i.metric: i for i in compare(run_metrics(doc(100, 0, 0)), run_metrics(doc(50, 0, 50)), 0.1)
    }
    assert items["tier_share.flagship"].previous == 0.0 and items["tier_share.flagship"].flagged


def test_a_rate_an_older_summary_lacks_is_not_compared() -> None:
    old = doc(10, 0, 0)
    del old["escalation_rate"], old["disagreement_rate"]
    report = shift_report(("nightly-old", old), doc(10, 0, 0, esc=0.9), 0.1)
    assert [m.metric for m in report.metrics] == ["tier_share.cheap"]
    assert report.flagged == [] and report.previous_job == "nightly-old"


def test_the_first_run_says_there_is_nothing_to_compare() -> None:
    report = shift_report(None, doc(10, 0, 0), 0.1)
    assert report.metrics == [] and report.flagged == []
    assert "no previous run" in report.note and "absolute change" in report.measured


def test_escalation_and_disagreement_are_counted_per_row() -> None:
    from pipeline.engine.figures import conform, unit_figures
    from schemas.records import COSTS, ERRORS, RESULTS

    results = pl.DataFrame({"id": ["a", "b", "c"], "tier": ["cheap", "flagship", "mid"],
                            "routed_tier": ["cheap", "cheap", "cheap"]})  # fmt: skip
    errors = pl.DataFrame({"id": ["d"], "tier": ["cheap"]})
    costs = pl.DataFrame(
        {"id": ["b", "b", "c", "d"], "call_status": ["disagreed", "ok", "ok", "escalated"]}
    )
    # b (disagreed, answered up), c (answered by mid: a tier down), d (escalated, then failed).
    f = unit_figures(conform(results, RESULTS), conform(costs, COSTS), conform(errors, ERRORS))
    assert (f.rows_escalated, f.rows_disagreed, f.rows) == (3, 1, 4)
    empty = unit_figures(*(conform(pl.DataFrame(), s) for s in (RESULTS, COSTS, ERRORS)))
    assert (empty.rows_escalated, empty.rows_disagreed, empty.rows) == (0, 0, 0)


def write(root: Path, job: str, body: dict[str, Any]) -> None:
    (root / job).mkdir(parents=True)
    (root / job / "summary.json").write_text(json.dumps(body))


def test_the_previous_run_is_the_latest_other_run_of_the_name_before_this_one(
    tmp_path: Path,
) -> None:
    write(tmp_path, "nightly-aaa", doc(1, 0, 0, finished_at="2026-12-01T02:30:00+00:00"))
    write(tmp_path, "nightly-bbb", doc(2, 0, 0, finished_at="2026-12-02T02:30:00+00:00"))
    write(tmp_path, "nightly-ccc", doc(0, 0, 0, finished_at="2026-12-03T02:30:00+00:00"))  # no rows
    write(tmp_path, "nightly-ddd", doc(3, 0, 0, finished_at="2026-12-05T02:30:00+00:00"))  # later
    write(
        tmp_path, "other-eee", doc(4, 0, 0, name="other", finished_at="2026-12-03T09:00:00+00:00")
    )
    found = previous_summary(Store.open(str(tmp_path)), "nightly", "nightly-zzz",
                             "2026-12-04T02:30:00+00:00")  # fmt: skip
    assert found is not None and found[0] == "nightly-bbb"
    # The run's own folder (a resumed job) is never its own previous run.
    own = previous_summary(
        Store.open(str(tmp_path)), "nightly", "nightly-bbb", "2026-12-02T03:00:00+00:00"
    )
    assert own is not None and own[0] == "nightly-aaa"


def test_no_earlier_run_gives_none(tmp_path: Path) -> None:
    assert (
        previous_summary(Store.open(str(tmp_path / "empty")), "nightly", "x", "2026-01-01") is None
    )


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_the_threshold_ends_are_allowed(threshold: float) -> None:
    report = shift_report(("p", doc(10, 0, 0)), doc(0, 0, 10), threshold)
    assert bool(report.flagged) == (threshold < 1.0)
