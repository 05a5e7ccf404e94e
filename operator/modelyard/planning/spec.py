"""The capacity plan of a ModelDeployment spec: catalog look-ups plus :func:`capacity.plan`."""

from __future__ import annotations

from collections.abc import Callable

from modelyard.api.model_deployment import (
    MAX_NODES_PER_REPLICA,
    Engine,
    ModelArchitecture,
    ModelDeploymentSpec,
    SourceScheme,
)
from modelyard.errors import UserError

from .capacity import InvalidPlanRequest, Plan, plan
from .catalog import GPU_TYPES, MODELS, GpuType, ModelArch, lookup_gpu, lookup_model
from .gguf import plan_ollama
from .lora import LoraLimits, lora_bytes_per_gpu


def gpu_for(spec: ModelDeploymentSpec) -> GpuType:
    if spec.gpu is None:
        raise UserError(f"spec.gpu: required for engine {spec.engine.value}")
    gpu = lookup_gpu(spec.gpu.type)
    if gpu is None:
        raise UserError(f"spec.gpu.type: unknown GPU type {spec.gpu.type!r} (known: {', '.join(GPU_TYPES)})")
    return gpu


def arch_for(spec: ModelDeploymentSpec) -> ModelArch:
    """The model's shape: ``spec.model.architecture`` when given, else the catalog entry of its source or
    its name."""
    model = spec.model
    if model.architecture is not None:
        return _custom_arch(model.name, model.architecture, spec.serving.max_model_len)
    arch = lookup_model(model.source) or lookup_model(model.name)
    if arch is None:
        raise UserError(
            f"spec.model.source: {model.source} is not in the model catalog; set spec.model.architecture "
            f"(catalog: {', '.join(sorted(MODELS))})"
        )
    return arch


NIM_FLOATING_TAGS = frozenset({"", "latest"})
"""NIM tags modelyard refuses: a NIM image is pinned to a release, like the vLLM image."""


def nim_tag(spec: ModelDeploymentSpec) -> str:
    """The NIM release an ``ngc://nim/ORG/NAME:TAG`` source pins; a missing or floating tag is refused,
    because the download Job and every replica must run the same release (a profile ID belongs to one)."""
    repository, _, tag = spec.model.location.partition(":")
    if tag.lower() in NIM_FLOATING_TAGS:
        raise UserError(
            f"spec.model.source: pin the NIM release, e.g. ngc://{repository}:1.8.3 (modelyard never runs "
            f"{'an untagged' if not tag else 'the latest'} NIM image: a cached profile belongs to one "
            "release)"
        )
    return tag


def plan_deployment(spec: ModelDeploymentSpec) -> Plan:
    """Plan ``spec`` or raise :class:`UserError` (bad input) / :class:`Infeasible` (does not fit)."""
    if spec.engine is Engine.OLLAMA:  # GGUF on CPU (planning/gguf.py)
        return plan_ollama(spec).to_plan()
    if spec.model.scheme is SourceScheme.NGC:
        nim_tag(spec)
    arch, gpu = arch_for(spec), gpu_for(spec)
    serving = spec.serving
    try:
        result = plan(
            arch,
            gpu,
            max_model_len=serving.max_model_len,
            dtype=serving.dtype.value,
            quantization=serving.quantization.value if serving.quantization else None,
            gpu_memory_utilization=serving.gpu_memory_utilization,
            gpu_count=spec.gpu.count if spec.gpu else None,
            kv_cache_dtype=serving.kv_cache_dtype.value,
            lora_bytes_per_gpu=_lora_bytes(spec, arch),
            max_nodes=(spec.gpu.max_nodes_per_replica if spec.gpu else None) or MAX_NODES_PER_REPLICA,
        )
    except InvalidPlanRequest as exc:
        raise UserError(f"spec: {exc}") from exc
    if result.multi_node and spec.engine is Engine.NIM:
        raise UserError(
            f"spec.engine: {arch.hf_id} needs {result.nodes_per_replica} nodes of "
            f"{result.tensor_parallel_size} x {gpu.name}; modelyard serves a model across nodes with vLLM "
            "only (NIM's multi-node mode is configured by NVIDIA's nim-deploy chart or NIM operator: MPI "
            "before NIM 2.0, Ray since): use engine vllm, a larger GPU, or quantization"
        )
    return result


def lora_limits(spec: ModelDeploymentSpec) -> LoraLimits | None:
    """The LoRA slots and rank the engine preallocates for, or None without adapters."""
    if not spec.adapters:
        return None
    return LoraLimits(slots=spec.lora.slots(spec.adapters), max_rank=spec.lora.max_rank)


def _lora_bytes(spec: ModelDeploymentSpec, arch: ModelArch) -> Callable[[int, str], float] | None:
    limits = lora_limits(spec)
    if limits is None:
        return None
    return lambda tp, dtype: lora_bytes_per_gpu(arch, tp, limits, dtype)


def _custom_arch(name: str, shape: ModelArchitecture, max_model_len: int) -> ModelArch:
    try:
        return ModelArch(
            hf_id=name,
            parameters=shape.parameters,
            layers=shape.layers,
            attention_heads=shape.attention_heads,
            kv_heads=shape.kv_heads,
            head_dim=shape.head_dim,
            max_position_embeddings=shape.max_position_embeddings or max_model_len,
            native_quantization=shape.quantization.value if shape.quantization else None,
            # without hidden and vocabulary sizes every parameter counts as quantized (slightly optimistic)
            native_quantized_parameters=shape.parameters if shape.quantization else 0,
            quant_method=shape.quantization.value if shape.quantization else None,
            experts=shape.experts or 0,
            experts_per_token=shape.experts_per_token or 0,
            active_parameters=shape.active_parameters,
            kv_lora_rank=shape.kv_lora_rank,
            qk_rope_head_dim=shape.qk_rope_head_dim,
            attention_chunk_size=shape.attention_chunk_size,
            chunked_attention_layers=shape.chunked_attention_layers or 0,
        )
    except ValueError as exc:
        raise UserError(f"spec.model.architecture: {exc}") from exc
