"""The provider simulator: an aiohttp server on loopback speaking the OpenAI and
Anthropic wire formats, with latency, rate limits, faults, and generated or replayed
answers, deterministic for a given config and seed.

    async with SimServer(SimConfig(seed=1)) as sim:
        ...  # point an OpenAI-format client at sim.base_url

See `config.py` for what can be set and `generate.py` for the prompt conventions.
"""

from typing import TYPE_CHECKING, Any

from schemas.sim import Faults, KeyLimits, Latency, ModelBehaviour, SimConfig

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
