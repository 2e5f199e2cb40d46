"""Where the cluster-wide actors start: on the node of the driver that starts them.

    actor = QuotaActor.options(**near_driver(), name=name, lifetime="detached").remote(...)
    configured(actor.configure.remote(...), pending)   # waited for here, or by the caller

The quota and daily budget actors are detached and shared by every job; they belong on
the driver's node (the head, as a rule: the node least likely to go away) so that losing
a worker node does not take them with it, which would reset a quota's lease book or a
provider's spend for the day. The preference is soft: an actor restarted after its node
was lost starts on another node.

Ray ignores a soft node affinity for an actor that asks for no resources at all: on a
two-node cluster (Ray 2.60) 7 of 12 such actors started on the other node. Asking for one
byte of `memory`, a logical resource nobody misses, makes Ray honour it (12 of 12); a
sliver of CPU would too, but would cost a worker slot (`run.worker_cpus` packs whole).
"""

from __future__ import annotations

from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


def near_driver() -> dict[str, Any]:
    """Actor options: prefer this process's node; elsewhere if it cannot be had."""
    here = ray.get_runtime_context().get_node_id()
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(here, soft=True), "memory": 1}


def configured(ref: Any, pending: list[Any] | None) -> None:
    """Wait for an actor's configure call here, or leave it in `pending` for a caller
    that starts several actors at once (a new one is a process of its own: ~1 s)."""
    if pending is None:
        ray.get(ref)
    else:
        pending.append(ref)
