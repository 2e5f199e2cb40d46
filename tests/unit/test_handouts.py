"""How often a unit is handed out, and what ends the handing out (no Ray is started)."""

from __future__ import annotations

from collections import deque
from typing import Any

from pipeline.engine.driver import QuietProgress, _Dispatch
from pipeline.engine.plan import Unit
from tests.integration.helpers import spec_for

UNIT = Unit(index=4, source="part-000.parquet", row_groups=(0,), row_offset=0, row_count=50)


def dispatch(**run: Any) -> _Dispatch:
    spec = spec_for("in/", "out/", run={"workers": 1, **run})
    return _Dispatch(spec, None, "out/", {}, {}, QuietProgress())  # type: ignore[arg-type]


def test_a_unit_whose_workers_keep_dying_stops_the_job_naming_the_cause() -> None:
    d, queue = dispatch(max_unit_handouts=3), deque[Unit]()
    for _ in range(2):
        d._retry(UNIT, queue, "its worker died each time", systemic=True)
    assert len(queue) == 2 and not d.stop.requested  # handed out again, twice
    d._retry(UNIT, queue, "its worker died each time", systemic=True)
    assert len(queue) == 2  # not a fourth time
    assert d.stop.reason == "unit 4 was handed out 3 times and its worker died each time"
    assert d.failed == {4: "its worker died each time"}


def test_a_unit_failing_for_its_own_reason_fails_alone() -> None:
    d, queue = dispatch(max_unit_handouts=2), deque[Unit]()
    d._retry(UNIT, queue, "S3 answered 503", transient=True)
    d._retry(UNIT, queue, "S3 answered 503", transient=True)
    assert d.failed == {4: "S3 answered 503"} and not d.stop.requested
    d._retry(UNIT, queue, "corrupt data page", transient=False)  # never worth another try
    assert len(queue) == 1 and d.failed[4] == "corrupt data page"
