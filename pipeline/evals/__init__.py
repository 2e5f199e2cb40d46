"""Scoring prompts and deployments on a labelled golden set (`tierline eval`).

    golden = read_golden("golden.csv", spec, label="label")   # checked before any call
    report = await evaluate(spec, golden, other=load_prompts("v2.yaml", spec))
    report.rows[0].accuracy, report.rows[0].cost_usd

Lives here: `golden` (reading and checking the labelled rows), `prompts` (a second set of
prompt variants to compare), `run` (every deployment x prompt version, through the same
unit runner, executor, limiter and prices as a job; no Ray).
May import: engine (the unit runner), calls, limits, sim, the shared ground, jobs, schemas.
"""
