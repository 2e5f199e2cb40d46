"""Drift checks for jobs that run again and again: a canary before spending, shifts after.

    golden = load_golden(spec)                       # the labelled golden set, validated
    result = score_canary(spec, golden, answers, costs)   # per deployment: accuracy, passed
    report = shift_report(previous_doc, summary_doc, threshold=0.1)

Lives here: `golden` (reading and checking the golden set, no calls), `canary` (which
deployments answer it, scoring, the verdict), `shift` (tier shares, escalation and
disagreement rates against the previous run). The calls themselves go through the row
executor inside a worker (pipeline.engine), priced and budgeted like any row.
May import: routing (answer normalising), the shared ground, jobs and schemas.
"""
