"""Calling providers for rows: the row executor and what saves calls.

    executor = RowExecutor(deployments, limiter=..., budget=..., clock=time.monotonic)
    outcome = await executor.run_row(session, row)   # retries, fallback, escalation

Lives here: `execute` (deployments, retries, breakers, fallback, escalation), `retry`
(backoff arithmetic), `reuse` (identical rows answered once), `cache` (the response cache).
May import: limits, routing, providers, the shared ground, jobs and schemas.
"""
