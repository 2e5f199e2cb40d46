"""The `tierline` command: a typer app, one module per command group.

    tierline run jobs/examples/classify.yaml
    python -m pipeline.cli --help

Lives here: `app` (the app and the job commands), `forecast`, `evals`, `report`, `router`,
`cluster` (submit/status/logs/stop), `console` (tables and the live progress line).
The only layer that prints. May import everything below it.
"""
