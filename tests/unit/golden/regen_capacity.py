"""Regenerate ``capacity.tsv`` (every catalog model x GPU type x context length, default serving settings) and
``capacity-quantization.tsv`` (every 16-bit catalog model x GPU type quantized to FP8 while loading, with a
16-bit or an FP8 KV cache, at 32768 tokens: the load peak is a column of its own).

    .venv/bin/python tests/unit/golden/regen_capacity.py

Review the diff before committing it: every changed number is a changed capacity promise.
"""

from __future__ import annotations

from pathlib import Path

from modelyard.errors import Infeasible
from modelyard.planning.capacity import (
    DTYPE_BYTES,
    GIB,
    kv_bytes_per_sequence_per_gpu,
    max_num_batched_tokens,
    plan,
    resolve_quantization,
    weight_bytes,
)
from modelyard.planning.catalog import GPU_TYPES, MODELS, GpuType, ModelArch

GOLDEN = Path(__file__).with_name("capacity.tsv")
GOLDEN_QUANTIZATION = Path(__file__).with_name("capacity-quantization.tsv")
QUANTIZATION_VARIANTS = (("fp8", "auto"), ("fp8", "fp8"), (None, "fp8"))
QUANTIZATION_COLUMNS = (
    "model",
    "gpu",
    "quantization",
    "kv_cache_dtype",
    "result",
    "weights_gib",
    "load_peak_gib_per_gpu",
    "kv_gib_per_seq",
    "max_concurrent_sequences",
)
CONTEXT_LENGTHS = (4096, 32768, 131072)
COLUMNS = (
    "model",
    "gpu",
    "max_model_len",
    "result",
    "weights_gib",
    "kv_gib_per_seq",
    "max_concurrent_sequences",
)


def row(arch: ModelArch, gpu: GpuType, max_model_len: int) -> tuple[str, ...]:
    """One line: the plan's numbers, or for an infeasible pair the model's own weights and KV (TP 1)."""
    try:
        p = plan(arch, gpu, max_model_len=max_model_len)
    except Infeasible:
        weights = weight_bytes(arch, "bfloat16", resolve_quantization(None, arch)) / GIB
        kv = (
            kv_bytes_per_sequence_per_gpu(
                arch, 1, DTYPE_BYTES["bfloat16"], max_model_len, max_num_batched_tokens(gpu)
            )
            / GIB
        )
        return (arch.hf_id, gpu.name, str(max_model_len), "infeasible", f"{weights:.2f}", f"{kv:.2f}", "0")
    return (
        arch.hf_id,
        gpu.name,
        str(max_model_len),
        f"tp{p.tensor_parallel_size}",
        f"{p.weights_gib:.2f}",
        f"{p.kv_cache_gib_per_sequence:.2f}",
        str(p.max_concurrent_sequences),
    )


def render() -> str:
    """The whole table as TSV text, header first, in catalog order."""
    lines = ["\t".join(COLUMNS)]
    for arch in MODELS.values():
        for gpu in GPU_TYPES.values():
            for length in CONTEXT_LENGTHS:
                if length <= arch.max_position_embeddings:
                    lines.append("\t".join(row(arch, gpu, length)))
    return "\n".join(lines) + "\n"


def quantization_row(arch: ModelArch, gpu: GpuType, quantization: str | None, kv: str) -> tuple[str, ...]:
    """One line of the quantization table at 32768 tokens: the plan's numbers or ``infeasible``."""
    head = (arch.hf_id, gpu.name, quantization or "none", kv)
    try:
        p = plan(arch, gpu, max_model_len=32768, quantization=quantization, kv_cache_dtype=kv)
    except Infeasible:
        return (*head, "infeasible", "", "", "", "0")
    return (
        *head,
        f"tp{p.tensor_parallel_size}",
        f"{p.weights_gib:.2f}",
        f"{p.load_peak_gib_per_gpu:.2f}",
        f"{p.kv_cache_gib_per_sequence:.2f}",
        str(p.max_concurrent_sequences),
    )


def render_quantization() -> str:
    lines = ["\t".join(QUANTIZATION_COLUMNS)]
    for arch in MODELS.values():
        if arch.native_quantization is not None or arch.max_position_embeddings < 32768:
            continue
        for gpu in GPU_TYPES.values():
            for quantization, kv in QUANTIZATION_VARIANTS:
                lines.append("\t".join(quantization_row(arch, gpu, quantization, kv)))
    return "\n".join(lines) + "\n"


def main() -> None:
    GOLDEN.write_text(render(), encoding="utf-8")
    print(f"wrote {GOLDEN}")
    GOLDEN_QUANTIZATION.write_text(render_quantization(), encoding="utf-8")
    print(f"wrote {GOLDEN_QUANTIZATION}")


if __name__ == "__main__":
    main()
