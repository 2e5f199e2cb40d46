"""The dry run: what a job would cost and how long it would take, with no provider call.

    fc = forecast_job(spec)           # same plan, routing and token counts as a run
    fc.total.cost_usd, fc.duration_s

Lives here: `forecast` (the entry point: `forecast_job`), `units` (one unit: prepare, route, count),
`pool` (units spread over processes), `sums` (per tier and model, with intervals),
`estimates` (output tokens and their spread), `history` (figures from earlier runs).
May import: engine.plan and engine.rows (the same planning as a run), calls.reuse and
calls.cache (what would be free), routing, longdoc.plan, the shared ground, jobs, schemas.
"""
