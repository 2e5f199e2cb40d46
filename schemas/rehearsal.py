"""A rehearsal of a job: the same spec with every provider played by the simulator.

    real = load_spec("jobs/examples/nightly-tickets.yaml")
    rehearsal(real).providers["openai"].kind          # 'sim'
    rehearsal(real).name                              # 'nightly-tickets-rehearsal'

Same models, prices, tiers, routing, limits and budget, so the rehearsal plans, routes,
paces and accounts as the real job will; no key is needed and no provider is paid. Its
name (and so its job folder) is its own, and the response cache keys answers by provider
kind, so a rehearsal's answers never count as the real job's and `--latest` of the real
spec never picks a rehearsal. Daily budgets are left out: they are shared, cluster-wide,
with the real provider's jobs.
"""

from __future__ import annotations

from typing import Any

from schemas.job import JobSpec, parse_spec

SUFFIX = "-rehearsal"
MAX_NAME = 63  # JobSpec.name's limit


def rehearsal_name(name: str) -> str:
    """The name a rehearsal of job `name` runs under."""
    return name[: MAX_NAME - len(SUFFIX)] + SUFFIX


def rehearsal(spec: JobSpec) -> JobSpec:
    """The spec, every non-sim provider replaced by the simulator with its account's limits."""
    doc: dict[str, Any] = spec.model_dump(mode="json")
    doc["name"] = rehearsal_name(spec.name)
    for name, provider in spec.providers.items():
        if provider.kind == "sim":
            continue
        limits = provider.limits
        doc["providers"][name] = {
            "kind": "sim",
            "limits": limits.model_dump(mode="json"),
            "timeouts": provider.timeouts.model_dump(mode="json"),
            # The simulator answers 429 past the account's limits, as the provider would.
            "sim": {
                "limits": {
                    "rpm": limits.rpm,
                    "tpm": limits.tpm,
                    "max_concurrency": limits.max_concurrency,
                    "per_model": limits.per_model,
                }
            },
        }
    return parse_spec(doc, f"rehearsal of {spec.name}")
