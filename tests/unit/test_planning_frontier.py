"""Frontier models in the planner: mixture of experts, latent and chunked attention, block-FP8 checkpoints and
replicas that span nodes (tensor parallel within a node x pipeline parallel across nodes).

The golden rows (tests/unit/golden/capacity-frontier.tsv) are checked against arithmetic written here from the
models' published config.json numbers, not against the planner's own functions.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import pytest

from modelyard.api.model_deployment import ModelDeployment, ModelDeploymentSpec
from modelyard.errors import Infeasible, UserError
from modelyard.manifests import load
from modelyard.planning.capacity import format_plan_table, plan
from modelyard.planning.catalog import GPU_TYPES, MODELS
from modelyard.planning.spec import plan_deployment

GIB = 2**30
GOLDEN_DIR = Path(__file__).with_name("golden")
EXAMPLES = Path(__file__).parents[2] / "examples"
H100 = GPU_TYPES["nvidia-h100-80gb"]

# config.json numbers of the published checkpoints (see the comments at their catalog entries for sources).
_DEEPSEEK = {
    "family": "mla",
    "hidden": 7168,
    "layers": 61,
    "heads": 128,
    "dense_layers": 3,
    "intermediate": 18432,
    "moe_intermediate": 2048,
    "experts": 256,
    "shared": 1,
    "per_token": 8,
    "q_lora_rank": 1536,
    "kv_lora_rank": 512,
    "qk_nope": 128,
    "qk_rope": 64,
    "v_head": 128,
    "vocab": 129280,
    "router_bias": True,
    "fp8_block": 128,
    "positions": 163840,
}
_QWEN3_235B = {
    "family": "gqa",
    "hidden": 4096,
    "layers": 94,
    "heads": 64,
    "kv_heads": 4,
    "head_dim": 128,
    "moe_intermediate": 1536,
    "experts": 128,
    "per_token": 8,
    "vocab": 151936,
    "qk_norm": True,
    "positions": 40960,
}
_LLAMA4 = {
    "family": "gqa",
    "hidden": 5120,
    "layers": 48,
    "heads": 40,
    "kv_heads": 8,
    "head_dim": 128,
    "moe_intermediate": 8192,
    "shared": 1,
    "per_token": 1,
    "vocab": 202048,
    "chunk": 8192,
    "chunked_layers": 36,
    "vision": 871_932_416,
}
CONFIGS: dict[str, dict[str, Any]] = {
    "deepseek-ai/DeepSeek-V3": _DEEPSEEK,
    "deepseek-ai/DeepSeek-R1": _DEEPSEEK,
    "moonshotai/Kimi-K2-Instruct": {
        **_DEEPSEEK,
        "heads": 64,
        "dense_layers": 1,
        "experts": 384,
        "vocab": 163840,
        "positions": 131072,
    },
    "Qwen/Qwen3-32B": {
        "family": "gqa",
        "hidden": 5120,
        "layers": 64,
        "heads": 64,
        "kv_heads": 8,
        "head_dim": 128,
        "intermediate": 25600,
        "dense_layers": 64,
        "vocab": 151936,
        "qk_norm": True,
        "positions": 40960,
    },
    "Qwen/Qwen3-30B-A3B": {
        "family": "gqa",
        "hidden": 2048,
        "layers": 48,
        "heads": 32,
        "kv_heads": 4,
        "head_dim": 128,
        "moe_intermediate": 768,
        "experts": 128,
        "per_token": 8,
        "vocab": 151936,
        "qk_norm": True,
        "positions": 40960,
    },
    "Qwen/Qwen3-235B-A22B": _QWEN3_235B,
    "Qwen/Qwen3-235B-A22B-FP8": {**_QWEN3_235B, "fp8_block": 128},
    "zai-org/GLM-4.5": {
        "family": "gqa",
        "hidden": 5120,
        "layers": 92,
        "heads": 96,
        "kv_heads": 8,
        "head_dim": 128,
        "dense_layers": 3,
        "intermediate": 12288,
        "moe_intermediate": 1536,
        "experts": 160,
        "shared": 1,
        "per_token": 8,
        "vocab": 151552,
        "qkv_bias": True,
        "qk_norm": True,
        "router_bias": True,
        "positions": 131072,
    },
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": {**_LLAMA4, "experts": 16, "positions": 10485760},
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct": {
        **_LLAMA4,
        "experts": 128,
        "moe_every": 2,
        "intermediate": 16384,
        "positions": 1048576,
    },
    "mistralai/Mistral-Large-Instruct-2411": {
        "family": "gqa",
        "hidden": 12288,
        "layers": 88,
        "heads": 96,
        "kv_heads": 8,
        "head_dim": 128,
        "intermediate": 28672,
        "dense_layers": 88,
        "vocab": 32768,
        "positions": 131072,
    },
    "meta-llama/Llama-3.1-405B-Instruct": {
        "family": "gqa",
        "hidden": 16384,
        "layers": 126,
        "heads": 128,
        "kv_heads": 8,
        "head_dim": 128,
        "intermediate": 53248,
        "dense_layers": 126,
        "vocab": 128256,
        "positions": 131072,
    },
}
PUBLISHED_BILLIONS = {  # total (and activated) parameters the model cards state, in billions
    "deepseek-ai/DeepSeek-V3": (671, 37),
    "moonshotai/Kimi-K2-Instruct": (1026, 33),
    "Qwen/Qwen3-32B": (32.8, None),
    "Qwen/Qwen3-30B-A3B": (30.5, 3.3),
    "Qwen/Qwen3-235B-A22B": (235, 22),
    "zai-org/GLM-4.5": (353, 34),
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": (109, 18),
    "mistralai/Mistral-Large-Instruct-2411": (123, None),
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct": (402, 18),
}


def _attention(c: dict[str, Any]) -> int:
    h, heads = c["hidden"], c["heads"]
    if c["family"] == "mla":
        q, kv, nope, rope, v = c["q_lora_rank"], c["kv_lora_rank"], c["qk_nope"], c["qk_rope"], c["v_head"]
        query = h * q + q + q * heads * (nope + rope)
        return query + h * (kv + rope) + kv + kv * heads * (nope + v) + heads * v * h
    kv_heads, d = c["kv_heads"], c["head_dim"]
    params = 2 * h * heads * d + 2 * h * kv_heads * d
    params += (heads + 2 * kv_heads) * d if c.get("qkv_bias") else 0
    return params + (2 * d if c.get("qk_norm") else 0)


def _expert(c: dict[str, Any]) -> int:
    return 3 * c["hidden"] * c["moe_intermediate"]


def _moe_layers(c: dict[str, Any]) -> int:
    if not c.get("experts"):
        return 0
    return (c["layers"] - c.get("dense_layers", 0)) // c.get("moe_every", 1)


def parameters(c: dict[str, Any]) -> int:
    """Every parameter vLLM loads, from the config (untied embeddings, RMSNorm weights)."""
    h, layers, moe = c["hidden"], c["layers"], _moe_layers(c)
    dense_mlp = 3 * h * c.get("intermediate", 0)
    moe_mlp = 0
    if moe:
        moe_mlp = (c["experts"] + c.get("shared", 0)) * _expert(c) + c["experts"] * h
        moe_mlp += c["experts"] if c.get("router_bias") else 0
    per_layer = _attention(c) + 2 * h
    return (
        layers * per_layer
        + moe * moe_mlp
        + (layers - moe) * dense_mlp
        + 2 * c["vocab"] * h
        + h
        + c.get("vision", 0)
    )


def active_parameters(c: dict[str, Any]) -> int:
    return parameters(c) - _moe_layers(c) * (c["experts"] - c["per_token"]) * _expert(c)


def weight_bytes(c: dict[str, Any]) -> float:
    total = parameters(c)
    if not c.get("fp8_block"):
        return total * 2
    unquantized = 2 * c["vocab"] * c["hidden"] + _moe_layers(c) * c["experts"] * (c["hidden"] + 1)
    return (total - unquantized) * (1 + 4 / c["fp8_block"] ** 2) + unquantized * 2


def tp_ok(c: dict[str, Any], tp: int) -> bool:
    kv = c.get("kv_heads", c["heads"])
    if c["heads"] % tp or (kv % tp and tp % kv):
        return False
    return not (c.get("fp8_block") and (c["moe_intermediate"] // tp) % c["fp8_block"])


def _blocks(tokens: int) -> int:
    return math.ceil(tokens / 16) * 16


def per_gpu(c: dict[str, Any], gpu: str, length: int, tp: int, pp: int) -> tuple[float, float]:
    """(weights, KV of one full sequence) on one GPU of the largest pipeline stage, in bytes."""
    memory = GPU_TYPES[gpu]
    batched = (8192 if memory.memory_gib >= 70 and "A100" not in memory.product else 2048) * pp
    stage = math.ceil(c["layers"] / pp) / c["layers"]
    weights = weight_bytes(c)
    if pp > 1:
        matrix = c["vocab"] * c["hidden"] * 2
        weights = (weights - 2 * matrix) * stage + matrix
    if c["family"] == "mla":
        per_token_layer = (c["kv_lora_rank"] + c["qk_rope"]) * 2  # the whole latent on every TP rank
    else:
        per_token_layer = 2 * max(1, c["kv_heads"] // tp) * c["head_dim"] * 2
    chunked = c.get("chunked_layers", 0)
    tokens = (c["layers"] - chunked) * _blocks(length)
    if chunked:
        tokens += chunked * _blocks(min(c["chunk"] + batched, length))
    return weights / tp, per_token_layer * tokens * stage


def fits(c: dict[str, Any], gpu: str, length: int, tp: int, pp: int) -> bool:
    weights, kv = per_gpu(c, gpu, length, tp, pp)
    return weights + 2 * GIB + kv <= 0.9 * GPU_TYPES[gpu].memory_mib * 2**20


def _golden_rows() -> list[list[str]]:
    lines = (GOLDEN_DIR / "capacity-frontier.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t") for line in lines[1:]]


def test_golden_frontier_table_matches() -> None:
    spec = importlib.util.spec_from_file_location("regen_frontier", GOLDEN_DIR / "regen_frontier.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = (GOLDEN_DIR / "capacity-frontier.tsv").read_text(encoding="utf-8")
    assert module.render() == expected, "run tests/unit/golden/regen_frontier.py and review the diff"
    assert {r[0] for r in _golden_rows()} == set(CONFIGS)


@pytest.mark.parametrize("hf_id", sorted(CONFIGS))
def test_catalog_follows_from_config(hf_id: str) -> None:
    c, arch = CONFIGS[hf_id], MODELS[hf_id]
    assert arch.parameters == parameters(c)
    assert (arch.layers, arch.attention_heads, arch.hidden_size, arch.vocab_size) == (
        c["layers"],
        c["heads"],
        c["hidden"],
        c["vocab"],
    )
    assert arch.max_position_embeddings == c["positions"]
    assert arch.experts == c.get("experts", 0)
    if arch.experts:
        assert arch.experts_per_token == c["per_token"]
        assert arch.active_parameters == active_parameters(c)
    if c["family"] == "mla":
        assert (arch.kv_lora_rank, arch.qk_rope_head_dim) == (c["kv_lora_rank"], c["qk_rope"])
    else:
        assert (arch.kv_heads, arch.head_dim) == (c["kv_heads"], c["head_dim"])
    assert (arch.attention_chunk_size, arch.chunked_attention_layers) == (
        c.get("chunk"),
        c.get("chunked_layers", 0),
    )
    assert arch.weight_block_size == c.get("fp8_block")
    published = PUBLISHED_BILLIONS.get(hf_id.replace("-R1", "-V3").removesuffix("-FP8"))
    if published:
        total, active = published
        assert arch.parameters / 1e9 == pytest.approx(total, rel=0.01)
        if active:
            assert arch.active_parameters is not None
            assert arch.active_parameters / 1e9 == pytest.approx(active, rel=0.05)


@pytest.mark.parametrize("row", _golden_rows(), ids=lambda r: f"{r[0].split('/')[1]}-{r[1]}-{r[2]}")
def test_golden_frontier_rows_follow_from_config_arithmetic(row: list[str]) -> None:
    hf_id, gpu, length = row[0], row[1], int(row[2])
    c = CONFIGS[hf_id]
    usable = 0.9 * GPU_TYPES[gpu].memory_mib * 2**20
    one_node = [tp for tp in (1, 2, 4, 8) if tp_ok(c, tp)]
    if row[3] == "infeasible":
        assert not any(fits(c, gpu, length, tp, 1) for tp in one_node)
        assert not any(fits(c, gpu, length, one_node[-1], pp) for pp in range(2, 5))
        return
    tp, pp = (int(part) for part in row[3].removeprefix("tp").split("xpp"))
    assert tp_ok(c, tp) and fits(c, gpu, length, tp, pp)
    # the smallest layout that fits: fewer GPUs on one node first, then fewer nodes
    if pp == 1:
        assert not any(fits(c, gpu, length, smaller, 1) for smaller in one_node if smaller < tp)
    else:
        assert tp == one_node[-1] and not any(fits(c, gpu, length, t, 1) for t in one_node)
        assert not any(fits(c, gpu, length, tp, fewer) for fewer in range(2, pp))
    weights, kv = per_gpu(c, gpu, length, tp, pp)
    assert float(row[4]) == pytest.approx(weight_bytes(c) / GIB, abs=0.01)
    assert float(row[5]) == pytest.approx(weights / GIB, abs=0.01)
    assert float(row[6]) == pytest.approx(kv / GIB, abs=0.001)
    assert int(row[7]) == math.floor((usable - weights - 2 * GIB) / kv)


# --- the issue's three examples -------------------------------------------------------------------


def _example(name: str) -> ModelDeploymentSpec:
    (manifest,) = [m for m in load(EXAMPLES / name) if isinstance(m.obj, ModelDeployment)]
    assert isinstance(manifest.obj, ModelDeployment)
    return manifest.obj.spec


@pytest.mark.parametrize(
    ("example", "nodes", "tp", "pp"),
    [
        ("deepseek-r1-multinode.yaml", 2, 8, 2),
        ("llama-405b-multinode.yaml", 2, 8, 2),
        ("qwen3-235b-fp8.yaml", 1, 4, 1),
    ],
)
def test_examples_plan_as_the_issue_states(example: str, nodes: int, tp: int, pp: int) -> None:
    spec = _example(example)
    assert spec.gpu.type == "nvidia-h100-80gb"
    p = plan_deployment(spec)
    assert (p.nodes_per_replica, p.tensor_parallel_size, p.pipeline_parallel_size) == (nodes, tp, pp)
    assert p.gpus_per_replica == tp * pp
    # and independently of the planner: no single H100 node fits the multi-node ones
    c = CONFIGS[p.model]
    one_node = [t for t in (1, 2, 4, 8) if tp_ok(c, t)]
    assert any(fits(c, "nvidia-h100-80gb", p.max_model_len, t, 1) for t in one_node) == (nodes == 1)


# --- architecture rules ---------------------------------------------------------------------------


def test_latent_attention_kv_is_the_latent_and_does_not_shrink_with_tp() -> None:
    r1 = MODELS["deepseek-ai/DeepSeek-R1"]
    on_h200 = plan(r1, GPU_TYPES["nvidia-h200"], max_model_len=32768, gpu_count=8)
    # 61 layers x (512 + 64) x 2 bytes = 70,272 bytes per token on each of the 8 GPUs
    assert on_h200.kv_cache_gib_per_sequence_per_gpu == pytest.approx(61 * 576 * 2 * 32768 / GIB)
    assert on_h200.kv_cache_bytes_per_token == 8 * 61 * 576 * 2
    # K (192) and V (128) of 128 heads split over 8 GPUs would be 8.9 times more
    assert on_h200.kv_cache_gib_per_sequence_per_gpu * 8 < 61 * 128 * (192 + 128) * 2 * 32768 / 8 / GIB


def test_chunked_attention_layers_hold_one_chunk() -> None:
    scout = MODELS["meta-llama/Llama-4-Scout-17B-16E-Instruct"]
    p = plan(scout, GPU_TYPES["nvidia-h200"], max_model_len=1048576, gpu_count=8)
    assert p.chunked_attention_tokens == 8192 + 8192  # one chunk plus the scheduled tokens
    full_only = 48 * 1048576 * 2 * 1 * 128 * 2 / GIB
    assert p.kv_cache_gib_per_sequence_per_gpu == pytest.approx(
        (12 * 1048576 + 36 * 16384) * 2 * 1 * 128 * 2 / GIB
    )
    assert p.kv_cache_gib_per_sequence_per_gpu < full_only / 3


def test_block_fp8_experts_must_split_into_whole_blocks() -> None:
    fp8 = MODELS["Qwen/Qwen3-235B-A22B-FP8"]
    with pytest.raises(ValueError, match=r"1536 wide, FP8 in 128-wide blocks\) do not split .* over 8 GPUs"):
        plan(fp8, H100, max_model_len=8192, gpu_count=8)
    assert plan(fp8, H100, max_model_len=8192).tensor_parallel_size == 4
    # the bf16 checkpoint has no blocks and splits over 8
    assert plan(MODELS["Qwen/Qwen3-235B-A22B"], H100, max_model_len=8192, gpu_count=8)


def test_block_fp8_weights_count_one_float32_scale_per_block() -> None:
    r1 = MODELS["deepseek-ai/DeepSeek-R1"]
    p = plan(r1, GPU_TYPES["nvidia-b200"], max_model_len=8192)
    assert p.quantization == "fp8"
    assert p.weights_gib == pytest.approx(weight_bytes(CONFIGS[r1.hf_id]) / GIB, abs=0.005)
    # about one byte per parameter (plus bf16 embeddings and routers), not two
    assert p.weights_gib == pytest.approx(r1.parameters / GIB, rel=0.01)


def test_multi_node_plan_is_refused_with_the_numbers_of_the_widest_span() -> None:
    kimi = MODELS["moonshotai/Kimi-K2-Instruct"]
    with pytest.raises(Infeasible) as caught:
        plan(kimi, GPU_TYPES["nvidia-l4"], max_model_len=8192, max_nodes=4)
    message = str(caught.value)
    assert "on 4 nodes (tensor-parallel size 8 x pipeline-parallel size 4" in message
    assert "and 4 nodes is the widest span allowed" in message
    assert "nvidia-l4 has 20.2 GiB usable per GPU" in message


def test_one_node_only_when_max_nodes_is_1() -> None:
    with pytest.raises(Infeasible, match="at tensor-parallel size 8 "):
        plan(MODELS["deepseek-ai/DeepSeek-R1"], H100, max_model_len=8192, max_nodes=1)


def test_gpu_count_is_the_tensor_parallel_size_on_each_node() -> None:
    p = plan(MODELS["meta-llama/Llama-3.1-405B-Instruct"], H100, max_model_len=8192, gpu_count=4, max_nodes=4)
    assert (p.tensor_parallel_size, p.pipeline_parallel_size, p.gpus_per_replica) == (4, 3, 12)
    with pytest.raises(ValueError, match="gpu count 8 exceeds the 4 GPUs of one node"):
        plan(
            MODELS["meta-llama/Llama-3.1-405B-Instruct"],
            H100,
            max_model_len=8192,
            gpu_count=8,
            gpus_per_node=4,
        )


def test_plan_table_shows_nodes_tp_pp_and_experts() -> None:
    table = format_plan_table(plan(MODELS["deepseek-ai/DeepSeek-R1"], H100, max_model_len=8192, max_nodes=4))
    assert "tensor-parallel size       8" in table
    assert "pipeline-parallel size     2" in table
    assert "nodes per replica          2 (8 GPUs on each)" in table
    assert "GPUs per replica           16" in table
    assert "256 routed, 8 per token, all loaded (671.0B parameters, 37.6B active)" in table
    assert "latent attention (MLA)" in table
    assert (
        plan(MODELS["deepseek-ai/DeepSeek-R1"], H100, max_model_len=8192, max_nodes=4).to_status()[
            "nodesPerReplica"
        ]
        == 2
    )


def test_custom_architecture_with_latent_attention_and_experts() -> None:
    base = _example("deepseek-r1-multinode.yaml").model_dump(by_alias=True, exclude_none=True)
    base["model"] = {
        "name": "my-mla",
        "source": "hf://acme/my-mla",
        "revision": "0" * 40,
        "architecture": {
            "parameters": 671_026_419_200,
            "layers": 61,
            "attentionHeads": 128,
            "kvHeads": 128,
            "headDim": 192,
            "maxPositionEmbeddings": 163840,
            "quantization": "fp8",
            "experts": 256,
            "expertsPerToken": 8,
            "kvLoraRank": 512,
            "qkRopeHeadDim": 64,
        },
    }
    p = plan_deployment(ModelDeploymentSpec.model_validate(base))
    assert p.latent_attention and p.experts == 256 and p.nodes_per_replica == 2
    assert p.kv_cache_bytes_per_token == 8 * 61 * 576 * 2
    base["model"]["architecture"].pop("qkRopeHeadDim")
    with pytest.raises(UserError, match="kv_lora_rank and qk_rope_head_dim go together"):
        plan_deployment(ModelDeploymentSpec.model_validate(base))
