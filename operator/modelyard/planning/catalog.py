"""Catalogs of GPU types and well-known open models.

GPU memory is the figure the driver reports (``nvidia-smi`` / the GPU feature discovery label
``nvidia.com/gpu.memory``, in MiB), which is what an inference engine can actually allocate from.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB_PER_GIB = 1024


@dataclass(frozen=True, slots=True)
class GpuType:
    """A GPU model as the NVIDIA GPU operator labels it."""

    name: str  #: the key users write in ``spec.gpu.type``, e.g. ``nvidia-h100-80gb``
    product: str  #: the ``nvidia.com/gpu.product`` label value
    memory_mib: int  #: the ``nvidia.com/gpu.memory`` label value (MiB, as the driver reports it)

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / MIB_PER_GIB


GPU_TYPES: dict[str, GpuType] = {
    g.name: g
    for g in (
        GpuType("nvidia-a10g", "NVIDIA-A10G", 23028),
        GpuType("nvidia-l4", "NVIDIA-L4", 23034),
        GpuType("nvidia-l40s", "NVIDIA-L40S", 46068),
        GpuType("nvidia-a100-40gb", "NVIDIA-A100-SXM4-40GB", 40960),
        GpuType("nvidia-a100-80gb", "NVIDIA-A100-SXM4-80GB", 81920),
        GpuType("nvidia-h100-80gb", "NVIDIA-H100-80GB-HBM3", 81559),
        GpuType("nvidia-h200", "NVIDIA-H200", 143771),
        GpuType("nvidia-b200", "NVIDIA-B200", 183359),
    )
}
