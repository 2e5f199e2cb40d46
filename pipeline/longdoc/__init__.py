"""Documents longer than a model's context: chunk, plan, map and reduce.

    plan = choose_plan(doc_tokens, options)     # map-reduce or a longer-context tier
    chunks = split_tokens(text, budget)         # at paragraph / sentence boundaries

Lives here: `chunking` (token-bounded splits), `plan` (the cheapest way through a long
document, used by the run and the forecast alike), `mapreduce` (the calls), `run` (a
unit's long documents inside a worker).
May import: calls (the executor), providers (types), the shared ground, jobs and schemas.
"""
