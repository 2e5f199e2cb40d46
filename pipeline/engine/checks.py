"""Checks that need more than the spec's own fields: prices, secrets in the environment,
the canary's golden set (read and checked, never asked).

    problems = check_spec(spec)        # [] when the job can start

Run by `tierline validate` and before every run, so a job fails before Ray starts or a
single call is made.
"""

from __future__ import annotations

import os

from pipeline.drift.golden import golden_problems
from schemas.job import TIER_ORDER, JobSpec
from schemas.prices import PriceTable, UnknownPrice
from schemas.problems import reason


def check_spec(spec: JobSpec, prices: PriceTable | None = None) -> list[str]:
    problems: list[str] = []
    if prices is None:
        try:
            prices = spec.price_table()
        except ValueError as exc:
            return [f"prices: {reason(exc)}"]
    problems += _learned_problems(spec)
    problems += golden_problems(spec)
    for tier in TIER_ORDER:
        for i, dep in enumerate(spec.tiers.get(tier) or []):  # type: ignore[call-overload]
            try:
                prices.lookup(dep.model)
            except UnknownPrice as exc:
                problems.append(f"tiers.{tier}.{i}: {exc}")
    return problems + key_problems(spec)


def key_problems(spec: JobSpec) -> list[str]:
    """Every provider the tiers use must find its key variable set (only the variable's
    name is in the spec; the key is read at call time and never stored)."""
    used = {d.provider for d in spec.deployments()}
    return [
        f"providers.{name}.api_key_env: environment variable {p.api_key_env} is not set "
        f"(export it before running; the key is read at call time and never stored)"
        for name, p in spec.providers.items()
        if name in used and p.api_key_env and not os.environ.get(p.api_key_env)
    ]


def _learned_problems(spec: JobSpec) -> list[str]:
    routing = spec.routing
    if routing.policy != "learned" or not routing.model:
        return []
    from pipeline.routing.learned import RouterFileError, load_model, tier_problems

    try:
        model = load_model(routing.model)
    except (OSError, RouterFileError) as exc:
        return [
            f"routing.model: cannot load {routing.model!r}: {reason(exc)}; give the path or "
            "s3:// URI of a file written by `tierline router train --out FILE`"
        ]
    first = {t: (deps[0].model if deps else None) for t, deps in spec.tiers.items()}
    return tier_problems(model, first)  # type: ignore[arg-type]
