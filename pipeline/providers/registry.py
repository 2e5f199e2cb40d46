"""Provider kinds -> adapter factories. Add a wire format by registering it here;
nothing else in the engine dispatches on a provider's kind.

    adapter = create("openai", name="openai", base_url="https://api.openai.com/v1",
                     api_key_env="OPENAI_API_KEY", timeouts=Timeouts())
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.providers.base import Provider
    from schemas.job import Timeouts

Factory = Callable[..., "Provider"]

# kind -> (dotted path of the adapter class, wire format it speaks)
_KINDS: dict[str, str] = {
    "sim": "pipeline.providers.openai:OpenAIChat",  # the simulator speaks the OpenAI format
    "openai": "pipeline.providers.openai:OpenAIChat",
    "anthropic": "pipeline.providers.anthropic:AnthropicMessages",
}


def known_kinds() -> list[str]:
    return sorted(_KINDS)


def register(kind: str, target: str) -> None:
    """Register an adapter class given as 'module:Class'."""
    _KINDS[kind] = target


def create(
    kind: str, *, name: str, base_url: str, api_key_env: str | None, timeouts: Timeouts
) -> Provider:
    import importlib

    try:
        target = _KINDS[kind]
    except KeyError:
        raise ValueError(
            f"unknown provider kind {kind!r}; known kinds: {', '.join(known_kinds())}"
        ) from None
    module_name, cls_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    provider: Provider = cls(
        name=name, base_url=base_url, api_key_env=api_key_env, timeouts=timeouts
    )
    return provider
