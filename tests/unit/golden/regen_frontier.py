"""Regenerate ``capacity-frontier.tsv``: the frontier models of the catalog (mixture of experts, latent and
chunked attention, block-FP8 checkpoints, and the dense models too large for one node) on the data-centre
GPUs, planned as a ModelDeployment plans them (across up to ``MAX_NODES_PER_REPLICA`` nodes).

    .venv/bin/python tests/unit/golden/regen_frontier.py

tests/unit/test_planning_frontier.py checks every row against arithmetic written from the models' published
config.json numbers, not against the planner. Review the diff before committing it.
"""

from __future__ import annotations

from pathlib import Path

from modelyard.api.model_deployment import MAX_NODES_PER_REPLICA
from modelyard.errors import Infeasible
from modelyard.planning.capacity import plan
from modelyard.planning.catalog import GPU_TYPES, MODELS

GOLDEN = Path(__file__).with_name("capacity-frontier.tsv")
FRONTIER_MODELS = (
    "deepseek-ai/DeepSeek-V3",
    "deepseek-ai/DeepSeek-R1",
    "moonshotai/Kimi-K2-Instruct",
    "Qwen/Qwen3-32B",
    "Qwen/Qwen3-30B-A3B",
    "Qwen/Qwen3-235B-A22B",
    "Qwen/Qwen3-235B-A22B-FP8",
    "zai-org/GLM-4.5",
    "meta-llama/Llama-4-Scout-17B-16E-Instruct",
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct",
    "mistralai/Mistral-Large-Instruct-2411",
    "meta-llama/Llama-3.1-405B-Instruct",
)
GPUS = ("nvidia-a100-80gb", "nvidia-h100-80gb", "nvidia-h200", "nvidia-b200")
CONTEXT_LENGTHS = (8192, 32768, 131072)
COLUMNS = (
    "model",
    "gpu",
    "max_model_len",
    "result",
    "weights_gib",
    "weights_gib_per_gpu",
    "kv_gib_per_seq_per_gpu",
    "max_concurrent_sequences",
)


def row(hf_id: str, gpu: str, max_model_len: int) -> tuple[str, ...]:
    head = (hf_id, gpu, str(max_model_len))
    try:
        p = plan(MODELS[hf_id], GPU_TYPES[gpu], max_model_len=max_model_len, max_nodes=MAX_NODES_PER_REPLICA)
    except Infeasible:
        return (*head, "infeasible", "", "", "", "0")
    return (
        *head,
        f"tp{p.tensor_parallel_size}xpp{p.pipeline_parallel_size}",
        f"{p.weights_gib:.2f}",
        f"{p.weights_gib_per_gpu:.2f}",
        f"{p.kv_cache_gib_per_sequence_per_gpu:.3f}",
        str(p.max_concurrent_sequences),
    )


def render() -> str:
    lines = ["\t".join(COLUMNS)]
    for hf_id in FRONTIER_MODELS:
        for gpu in GPUS:
            for length in CONTEXT_LENGTHS:
                if length <= MODELS[hf_id].max_position_embeddings:
                    lines.append("\t".join(row(hf_id, gpu, length)))
    return "\n".join(lines) + "\n"


def main() -> None:
    GOLDEN.write_text(render(), encoding="utf-8")
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
