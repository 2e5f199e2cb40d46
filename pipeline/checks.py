"""Checks that need more than the spec's own fields: prices, secrets in the environment.

    problems = check_spec(spec)        # [] when the job can start

Run by `tierline validate` and before every run, so a job fails before Ray starts or a
single call is made.
"""

from __future__ import annotations

import os

from schemas.job import TIER_ORDER, JobSpec
from schemas.prices import PriceTable, UnknownPrice, load_prices


def check_spec(spec: JobSpec, prices: PriceTable | None = None) -> list[str]:
    prices = prices or load_prices()
    problems: list[str] = []
    for tier in TIER_ORDER:
        for i, dep in enumerate(spec.tiers.get(tier) or []):  # type: ignore[call-overload]
            try:
                prices.lookup(dep.model)
            except UnknownPrice as exc:
                problems.append(f"tiers.{tier}.{i}: {exc.args[0] if exc.args else exc}")
    used = {d.provider for d in spec.deployments()}
    for name, p in spec.providers.items():
        if name in used and p.api_key_env and not os.environ.get(p.api_key_env):
            problems.append(
                f"providers.{name}.api_key_env: environment variable {p.api_key_env} is not set "
                f"(export it before running; the key is read at call time and never stored)"
            )
    return problems
