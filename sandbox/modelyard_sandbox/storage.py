"""Storage for the sandbox: a pool of PersistentVolumes that claims bind to.

There is no storage provisioner on loopback, and kwok never mounts anything, so the sandbox pre-creates
volumes with no storage class; the controller manager's PV binder binds each claim without a class (the
sandbox has no default StorageClass) to one of them, as a static provisioning cluster would.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

POOL_LABEL = "modelyard.dev/sandbox-pool"
PARALLELISM = 16


def volume_manifest(index: int, size: str = "4Ti") -> dict[str, Any]:
    name = f"sandbox-pv-{index:04d}"
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {POOL_LABEL: "true"}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": f"/var/lib/modelyard-sandbox/{name}"},
        },
    }


def create_volumes(client: httpx.Client, count: int) -> None:
    """Create ``count`` volumes in parallel; ones that exist are left as they are."""

    def create(manifest: dict[str, Any]) -> None:
        response = client.post("/api/v1/persistentvolumes", json=manifest)
        if response.status_code not in (201, 409):
            response.raise_for_status()

    with ThreadPoolExecutor(PARALLELISM) as pool:
        list(pool.map(create, (volume_manifest(i) for i in range(count))))
