"""tierline: batch LLM jobs that send each row to the cheapest model that does it well.

    import pipeline
    summary = pipeline.run("jobs/examples/classify.yaml")    # validate, plan, call, write
    summary.raise_for_status()                               # JobIncomplete if units failed
    fc = pipeline.forecast("jobs/examples/classify.yaml")    # cost and duration, no calls
    assert pipeline.verify(summary.output).ok                # every id exactly once

The names below are the public API; everything else (`pipeline.engine`, `pipeline.calls`,
...) is internal and may change. Importing this package has no side effects: the engine,
Ray and aiohttp are imported when a function is first called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "JobIncomplete",
    "JobSpec",
    "JobSummary",
    "SpecError",
    "StorageUnusable",
    "VerifyReport",
    "check",
    "forecast",
    "load_spec",
    "run",
    "verify",
]

if TYPE_CHECKING:
    from pipeline.api import check, forecast, load_spec, run, verify
    from pipeline.engine.summary import JobSummary
    from pipeline.engine.verify import VerifyReport
    from pipeline.errors import JobIncomplete, StorageUnusable
    from schemas.job import JobSpec, SpecError

# name -> module that defines it; resolved on first use (PEP 562).
_EXPORTS = {
    "run": "pipeline.api",
    "forecast": "pipeline.api",
    "verify": "pipeline.api",
    "load_spec": "pipeline.api",
    "check": "pipeline.api",
    "JobSummary": "pipeline.engine.summary",
    "VerifyReport": "pipeline.engine.verify",
    "JobIncomplete": "pipeline.errors",
    "StorageUnusable": "pipeline.errors",
    "JobSpec": "schemas.job",
    "SpecError": "schemas.job",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
