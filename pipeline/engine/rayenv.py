"""Where a private local Ray listens: loopback, set before Ray is first imported.

    bind_private_ray_to_loopback()     # then import the driver, which imports ray

A Ray this process starts itself serves this machine only, so it binds to 127.0.0.1
instead of the first network interface. Ray reads the flag once, when `ray` is imported,
so the CLI and the Python API call this before importing the engine's driver; importing
`pipeline` itself changes nothing. It has no effect when joining a cluster (RAY_ADDRESS).
"""

from __future__ import annotations

import os


def bind_private_ray_to_loopback() -> None:
    if "RAY_ADDRESS" not in os.environ:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
