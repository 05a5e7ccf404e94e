"""Regenerate ``capacity.tsv``: every catalog model x GPU type x context length, default serving settings.

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
CONTEXT_LENGTHS = (4096, 32768, 131072)
COLUMNS = ("model", "gpu", "max_model_len", "result", "weights_gib", "kv_gib_per_seq",
           "max_concurrent_sequences")


def row(arch: ModelArch, gpu: GpuType, max_model_len: int) -> tuple[str, ...]:
    """One line: the plan's numbers, or for an infeasible pair the model's own weights and KV (TP 1)."""
    try:
        p = plan(arch, gpu, max_model_len=max_model_len)
    except Infeasible:
        weights = weight_bytes(arch, "bfloat16", resolve_quantization(None, arch)) / GIB
        kv = kv_bytes_per_sequence_per_gpu(
            arch, 1, DTYPE_BYTES["bfloat16"], max_model_len, max_num_batched_tokens(gpu)) / GIB
        return (arch.hf_id, gpu.name, str(max_model_len), "infeasible", f"{weights:.2f}", f"{kv:.2f}", "0")
    return (arch.hf_id, gpu.name, str(max_model_len), f"tp{p.tensor_parallel_size}", f"{p.weights_gib:.2f}",
            f"{p.kv_cache_gib_per_sequence:.2f}", str(p.max_concurrent_sequences))


def render() -> str:
    """The whole table as TSV text, header first, in catalog order."""
    lines = ["\t".join(COLUMNS)]
    for arch in MODELS.values():
        for gpu in GPU_TYPES.values():
            for length in CONTEXT_LENGTHS:
                if length <= arch.max_position_embeddings:
                    lines.append("\t".join(row(arch, gpu, length)))
    return "\n".join(lines) + "\n"


def main() -> None:
    GOLDEN.write_text(render(), encoding="utf-8")
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
