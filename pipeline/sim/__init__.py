"""The provider simulator: an aiohttp server on loopback speaking the OpenAI and
Anthropic wire formats, with latency, rate limits, faults, and generated or replayed
answers, deterministic for a given config and seed.

    async with SimServer(SimConfig(seed=1)) as sim:
        ...  # point an OpenAI-format client at sim.base_url

See `config.py` for what can be set and `generate.py` for the prompt conventions.
"""

from pipeline.sim.config import Faults, KeyLimits, Latency, ModelBehaviour, SimConfig
from pipeline.sim.server import SimServer, build_app, run_in_thread, serve

__all__ = [
    "Faults",
    "KeyLimits",
    "Latency",
    "ModelBehaviour",
    "SimConfig",
    "SimServer",
    "build_app",
    "run_in_thread",
    "serve",
]
