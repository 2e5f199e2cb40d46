"""What every part of the job spec shares: the strict model base and the tier names."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

TIER_ORDER: tuple[str, ...] = ("cheap", "mid", "flagship")
TierName = Literal["cheap", "mid", "flagship"]

# The wire formats tierline speaks, by provider `kind`. The engine's adapter registry
# (pipeline.providers.registry) serves exactly these; a test keeps the two equal.
PROVIDER_KINDS: tuple[str, ...] = ("anthropic", "azure", "openai", "sim")
# The kinds whose batch API tierline speaks (the registry's batch adapters, likewise kept
# equal by a test). Azure's batches need a Global Batch deployment of their own.
BATCH_KINDS: tuple[str, ...] = ("anthropic", "openai", "sim")


class Strict(BaseModel):
    """Frozen, and unknown fields are errors: a typo fails before anything runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")
