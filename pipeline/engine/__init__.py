"""Running a job: the driver hands out units, workers do them (the engine).

    plan = make_plan(spec)                       # listing -> units, committed ones skipped
    summary = run_job(spec)                      # driver: actors, workers, summary.json

Lives here: `plan` (listing -> work units), `driver` (Ray actors, hand-out, the job's
end), `worker` (one unit: read, route, call, account, write), `rows` (reading and
preparing a unit's rows), `summary` (the job's figures), `verify` (every id exactly once),
`checks` (what must hold before any money is spent), `journal` (answers kept as they
arrive, taken back by the next run of an interrupted unit), `stopping` (signals, lost
actors, and a graceful end).
May import: calls, limits, routing, longdoc, providers, sim, the shared ground
(store, tokens, costs, errors, metrics, jobfolder), jobs and schemas. Never the CLI.
"""
