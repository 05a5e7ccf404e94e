"""Simulated nodes: GPU nodes labelled as the NVIDIA GPU operator labels them, and plain CPU nodes.

kwok manages exactly the nodes carrying :data:`KWOK_ANNOTATION`, so it never touches a real node.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from modelyard.errors import UserError
from modelyard.planning.catalog import GPU_TYPES, GpuType

KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
PARALLELISM = 8


@dataclass(frozen=True, slots=True)
class NodeShape:
    """What one simulated node offers."""

    cpu: str = "32"
    memory: str = "256Gi"
    pods: str = "110"
    gpu: GpuType | None = None
    gpus: int = 0


def gpu_type(name: str) -> GpuType:
    """The catalog entry for ``name`` or a UserError listing the known types."""
    try:
        return GPU_TYPES[name]
    except KeyError:
        raise UserError(f"unknown GPU type {name!r}; known: {', '.join(sorted(GPU_TYPES))}") from None


def node_manifest(name: str, shape: NodeShape) -> dict[str, Any]:
    """The Node object for ``name``: labels, taints, capacity and allocatable."""
    labels = {
        "type": "kwok",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "kwok-cpu-32",
    }
    resources = {"cpu": shape.cpu, "memory": shape.memory, "pods": shape.pods}
    taints: list[dict[str, str]] = []
    if shape.gpu is not None:
        labels |= {
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": shape.gpu.product,
            "nvidia.com/gpu.memory": str(shape.gpu.memory_mib),
            "nvidia.com/gpu.count": str(shape.gpus),
            "node.kubernetes.io/instance-type": f"kwok-{shape.gpu.name}-x{shape.gpus}",
        }
        resources[GPU_RESOURCE] = str(shape.gpus)
        taints.append(GPU_TAINT)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": dict([KWOK_ANNOTATION])},
        "spec": {"taints": taints},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "fake"},
        },
    }


def sandbox_nodes(
    gpu_nodes: int, gpu: GpuType, gpus_per_node: int, cpu_nodes: int
) -> Iterator[dict[str, Any]]:
    """Manifests for ``gpu-node-<i>`` and ``cpu-node-<i>``."""
    gpu_shape = NodeShape(cpu="192", memory="2048Gi", gpu=gpu, gpus=gpus_per_node)
    for i in range(gpu_nodes):
        yield node_manifest(f"gpu-node-{i}", gpu_shape)
    for i in range(cpu_nodes):
        yield node_manifest(f"cpu-node-{i}", NodeShape())


def create_nodes(client: httpx.Client, manifests: list[dict[str, Any]]) -> None:
    """Create ``manifests`` in parallel; a node that already exists is left as it is."""

    def create(manifest: dict[str, Any]) -> None:
        response = client.post("/api/v1/nodes", json=manifest)
        if response.status_code not in (201, 409):
            response.raise_for_status()

    with ThreadPoolExecutor(PARALLELISM) as pool:
        list(pool.map(create, manifests))


def count_ready(client: httpx.Client) -> tuple[int, int]:
    """(total, ready) among the sandbox's nodes (kwok's and the real node)."""
    items = client.get("/api/v1/nodes").raise_for_status().json()["items"]
    ready = sum(
        any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
        for n in items
    )
    return len(items), ready
