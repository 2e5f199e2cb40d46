"""tierline is three packages with common names (`pipeline`, `jobs`, `schemas`): make
sure the ones imported are ours, not a user's folder of the same name.

    ensure_own_packages()      # ImportError naming the folder that shadows ours

Run where a job starts (the CLI, the Python API) and in every worker process, whose
`sys.path` begins with the job's working directory. Our three packages are installed
side by side, so a `jobs` or `schemas` imported from anywhere else is somebody else's.
"""

from __future__ import annotations

import importlib
from pathlib import Path

OWN = ("jobs", "schemas")


def ensure_own_packages() -> None:
    home = Path(__file__).resolve().parent.parent  # the folder that holds `pipeline`
    for name in OWN:
        module = importlib.import_module(name)
        where = Path(getattr(module, "__file__", None) or "").resolve().parent
        if where.parent != home or not getattr(module, "TIERLINE_PACKAGE", False):
            raise ImportError(
                f"the module {name!r} was imported from {where}, which is not tierline's "
                f"(expected {home / name}): a folder or file named {name!r} on the Python "
                f"path shadows it. Rename that folder, or run from another directory."
            )
