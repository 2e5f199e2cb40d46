"""The provider simulator: an aiohttp server on loopback speaking the OpenAI and
Anthropic wire formats, with latency, rate limits, faults, and generated or replayed
answers, deterministic for a given config and seed.

    async with SimServer(SimConfig(seed=1)) as sim:
        ...  # point an OpenAI-format client at sim.base_url (root_url for Anthropic)

See `schemas/sim.py` for what can be set, `generate.py` for the prompt conventions,
`batches.py` for provider batches and `prompt_cache.py` for cached-token reporting.
"""

from typing import TYPE_CHECKING, Any

from schemas.sim import (
    BatchBehaviour,
    Faults,
    KeyLimits,
    Latency,
    ModelBehaviour,
    PromptCaching,
    SimConfig,
)

if TYPE_CHECKING:
    from pipeline.sim.server import SimServer, build_app, run_in_thread, serve

_SERVER = {"SimServer", "build_app", "run_in_thread", "serve"}


def __getattr__(name: str) -> Any:
    # The server (and aiohttp) load on first use: the job spec only needs the config
    # models, and every process that reads a spec should not pay for a web server.
    if name in _SERVER:
        from pipeline.sim import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BatchBehaviour",
    "Faults",
    "KeyLimits",
    "Latency",
    "ModelBehaviour",
    "PromptCaching",
    "SimConfig",
    "SimServer",
    "build_app",
    "run_in_thread",
    "serve",
]
