"""Provider kinds -> adapter factories. Add a wire format by registering it here;
nothing else in the engine dispatches on a provider's kind.

    adapter = create("openai", name="openai", base_url="https://api.openai.com/v1",
                     api_key_env="OPENAI_API_KEY", timeouts=Timeouts())
    adapter = create("azure", name="azure", base_url=endpoint, api_key_env="AZURE_KEY",
                     timeouts=Timeouts(), azure=AzureOptions(...))  # its own options
    if supports_batch("openai"):
        batches = create_batch("openai", name="openai", base_url=..., api_key_env=...,
                               timeouts=Timeouts(total_s=600))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.providers.base import Provider
    from pipeline.providers.batch import BatchLimits, BatchProvider
    from schemas.azure import AzureOptions
    from schemas.job import Timeouts

Factory = Callable[..., "Provider"]

# kind -> (dotted path of the adapter class, wire format it speaks)
_KINDS: dict[str, str] = {
    "sim": "pipeline.providers.openai:OpenAIChat",  # the simulator speaks the OpenAI format
    "openai": "pipeline.providers.openai:OpenAIChat",
    "anthropic": "pipeline.providers.anthropic:AnthropicMessages",
    "azure": "pipeline.providers.azure:AzureChat",  # OpenAI bodies, Azure URLs and key header
}
# kind -> batch adapter, for the kinds whose provider has a batch API
_BATCH_KINDS: dict[str, str] = {
    "sim": "pipeline.providers.openai_batch:OpenAIBatch",  # the simulator serves both APIs
    "openai": "pipeline.providers.openai_batch:OpenAIBatch",
    "anthropic": "pipeline.providers.anthropic_batch:AnthropicBatch",
}


def _load(target: str) -> type:
    import importlib

    module_name, cls_name = target.split(":")
    cls: type = getattr(importlib.import_module(module_name), cls_name)
    return cls


def known_kinds() -> list[str]:
    return sorted(_KINDS)


def batch_kinds() -> list[str]:
    return sorted(_BATCH_KINDS)


def register(kind: str, target: str) -> None:
    """Register an adapter class given as 'module:Class'."""
    _KINDS[kind] = target


def register_batch(kind: str, target: str) -> None:
    """Register a batch adapter class given as 'module:Class'."""
    _BATCH_KINDS[kind] = target


def supports_batch(kind: str) -> bool:
    """Whether provider `kind` has a batch API tierline can use."""
    return kind in _BATCH_KINDS


def create(
    kind: str,
    *,
    name: str,
    base_url: str,
    api_key_env: str | None,
    timeouts: Timeouts,
    azure: AzureOptions | None = None,
) -> Provider:
    """The adapter of provider `kind`; `azure` is the spec's options of an azure provider
    (only its adapter takes them)."""
    try:
        target = _KINDS[kind]
    except KeyError:
        raise ValueError(
            f"unknown provider kind {kind!r}; known kinds: {', '.join(known_kinds())}"
        ) from None
    extra = {} if azure is None else {"azure": azure}
    provider: Provider = _load(target)(
        name=name, base_url=base_url, api_key_env=api_key_env, timeouts=timeouts, **extra
    )
    return provider


def create_batch(
    kind: str,
    *,
    name: str,
    base_url: str,
    api_key_env: str | None,
    timeouts: Timeouts,
    limits: BatchLimits | None = None,
) -> BatchProvider:
    """The batch adapter of provider `kind`; `limits` overrides the provider's own."""
    try:
        target = _BATCH_KINDS[kind]
    except KeyError:
        batching = ", ".join(sorted(_BATCH_KINDS))
        message = f"provider kind {kind!r} has no batch API; kinds with one: {batching}"
        raise ValueError(message) from None
    extra = {} if limits is None else {"limits": limits}
    provider: BatchProvider = _load(target)(
        name=name, base_url=base_url, api_key_env=api_key_env, timeouts=timeouts, **extra
    )
    return provider
