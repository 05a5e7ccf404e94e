"""LoRA adapters: the API's rules, the memory vLLM preallocates for them, the planner's charge."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from modelyard.api.model_deployment import ModelDeploymentSpec
from modelyard.errors import UserError
from modelyard.planning.catalog import MODELS
from modelyard.planning.lora import LoraLimits, lora_bytes_per_gpu, lora_elements_per_slot_per_gpu

L8B = MODELS["meta-llama/Llama-3.1-8B-Instruct"]


def spec(**extra: Any) -> ModelDeploymentSpec:
    body: dict[str, Any] = {
        "model": {
            "name": "llama-8b",
            "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
            "revision": "0e9e39f",
        },
        "gpu": {"type": "nvidia-l4"},
        "dataClassification": "confidential",
        "adapters": [
            {"name": "support", "source": "hf://acme/llama-8b-support", "revision": "1a2b3c"},
            {"name": "legal", "source": "s3://acme-adapters/legal/", "dataClassification": "internal"},
        ],
        **extra,
    }
    return ModelDeploymentSpec.model_validate(body)


# --- API ------------------------------------------------------------------------------------------


def test_adapter_classification_defaults_to_the_base() -> None:
    s = spec()
    assert [a.cleared_for(s.data_classification) for a in s.adapters] == ["confidential", "internal"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"engine": "nim", "model": {"name": "m", "source": "ngc://nim/meta/llama-3.1-8b-instruct:1.8"}},
            "engine vllm only",
        ),
        (
            {"adapters": [{"name": "a", "source": "hf://x/a", "dataClassification": "restricted"}]},
            "may not exceed",
        ),
        (
            {"adapters": [{"name": "a", "source": "hf://x/a"}, {"name": "a", "source": "hf://x/b"}]},
            "duplicate name",
        ),
        ({"adapters": [{"name": "llama-8b", "source": "hf://x/a"}]}, "must differ from model.name"),
        ({"adapters": [{"name": "a=b", "source": "hf://x/a"}]}, "pattern"),
        ({"adapters": [{"name": "a", "source": "ngc://nim/x:1"}]}, "pattern"),
        ({"lora": {"maxRank": 7}}, "must be one of 1, 8, 16"),
        ({"lora": {"maxLoras": 4, "maxCpuLoras": 2}}, "maxCpuLoras must be at least maxLoras"),
        ({"inferencePool": {"enabled": True}}, "endpointPickerRef: required"),
    ],
)
def test_adapter_rules(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(**change)


# --- memory ---------------------------------------------------------------------------------------


def test_lora_memory_of_llama_8b_by_hand() -> None:
    """Llama-3.1-8B (hidden 4096, 32 query and 8 KV heads of 128, MLP 14336, vocabulary 128256, 32 layers)
    at TP 2 and rank 16, summed module by module as vLLM's create_lora_weights allocates them."""
    r, h, q, kv, mlp, vocab = 16, 4096, 4096, 1024, 14336, 128256
    qkv = 3 * r * h + r * (q // 2 + kv // 2 + kv // 2)  # column parallel: 3 A slices whole, B sharded
    o_proj = r * (q // 2) + h * r  # row parallel: A sharded, B whole
    gate_up = 2 * r * h + 2 * (mlp // 2) * r
    down = r * (mlp // 2) + h * r
    embeddings = vocab * r + h * r
    lm_head = r * h + vocab * r
    per_slot = 32 * (qkv + o_proj + gate_up + down) + embeddings + lm_head
    assert per_slot == 32_546_816
    assert lora_elements_per_slot_per_gpu(L8B, 2, 16) == per_slot
    assert lora_bytes_per_gpu(L8B, 2, LoraLimits(slots=4, max_rank=16), "bfloat16") == 4 * per_slot * 2


def test_lora_memory_grows_with_slots_and_rank_and_shrinks_with_tp() -> None:
    base = lora_bytes_per_gpu(L8B, 1, LoraLimits(1, 16), "bfloat16")
    assert lora_bytes_per_gpu(L8B, 1, LoraLimits(3, 16), "bfloat16") == 3 * base
    assert lora_bytes_per_gpu(L8B, 1, LoraLimits(1, 64), "bfloat16") == 4 * base
    assert lora_bytes_per_gpu(L8B, 4, LoraLimits(1, 16), "bfloat16") < base


def test_mixture_of_experts_adapters_are_refused() -> None:
    with pytest.raises(UserError, match="mixture-of-experts"):
        lora_bytes_per_gpu(MODELS["openai/gpt-oss-20b"], 1, LoraLimits(1, 16), "bfloat16")


def test_quantized_checkpoint_has_its_base_shape() -> None:
    awq = MODELS["hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4"]
    assert lora_elements_per_slot_per_gpu(awq, 1, 16) == lora_elements_per_slot_per_gpu(L8B, 1, 16)
