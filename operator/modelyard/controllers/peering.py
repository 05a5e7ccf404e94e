"""Whether this operator process is the active one among its kopf peers.

kopf pauses a replica's handlers when a live peer has a higher (or the same) priority, but work that is not a
kopf handler (the ProviderBinding re-verification loop: kopf timers would put a finalizer on every binding)
must ask for itself. It reads the same peering object kopf keeps, and applies kopf's rule.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import kopf

PEERING_API = "kopf.dev/v1"


def active(peers: dict[str, dict[str, Any]], me: str, now: datetime) -> bool:
    """kopf's rule: active when this process is a live peer and no other live peer has a priority as high or
    higher. ``peers`` is the peering object's status: ``{identity: {priority, lifetime, lastseen}}``."""

    def alive(info: dict[str, Any]) -> bool:
        seen = datetime.fromisoformat(str(info.get("lastseen")))
        return seen + timedelta(seconds=int(info.get("lifetime", 60))) > now

    mine = peers.get(me)
    if mine is None or not alive(mine):
        return False
    priority = int(mine.get("priority", 0))
    return not any(
        int(info.get("priority", 0)) >= priority for peer, info in peers.items() if peer != me and alive(info)
    )


async def is_active(memo: kopf.Memo, namespace: str) -> bool:
    """True when running standalone, or when this process is the active peer for ``namespace``."""
    name = memo.get("peering")
    if not name:
        return True
    if memo.get("namespaces"):
        body = await memo.kube.get(PEERING_API, "KopfPeering", namespace, name)
    else:
        body = await memo.kube.get(PEERING_API, "ClusterKopfPeering", None, name)
    return active((body or {}).get("status") or {}, str(memo.get("identity")), datetime.now(UTC))
