"""Admission and money: quotas per provider and budgets per job, cluster-wide.

    quota = QuotaClient(...)          # leases request/token permits from the quota actor
    budget = BudgetClient(...)        # reserves a call's worst case, settles the real cost

Lives here, split the same way for both: the arithmetic (`quota`, `budget`: plain
functions and classes, no Ray), the actors (`quota_actor`, `budget_actor`, started on
the driver's node: `placement`), and the local admission protocol the executor talks to
(`limiter`).
May import: providers (types), the shared ground and schemas.
"""
