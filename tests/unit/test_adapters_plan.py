"""The capacity plan charges the LoRA slots vLLM preallocates (planning/lora.py) on every GPU."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.api.model_deployment import ModelDeploymentSpec
from modelyard.errors import Infeasible, UserError
from modelyard.planning.capacity import GIB, format_plan_table
from modelyard.planning.catalog import MODELS
from modelyard.planning.lora import LoraLimits, lora_bytes_per_gpu
from modelyard.planning.spec import plan_deployment

L8B = MODELS["meta-llama/Llama-3.1-8B-Instruct"]


def spec(adapters: int, **extra: Any) -> ModelDeploymentSpec:
    body = {
        "model": {"name": "llama", "source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
        "gpu": {"type": "nvidia-l4"},
        "adapters": [{"name": f"a{i}", "source": f"pvc://adapters/a{i}"} for i in range(adapters)],
        **extra,
    }
    return ModelDeploymentSpec.model_validate(body)


def test_adapter_slots_come_out_of_the_kv_cache() -> None:
    without, with_two = plan_deployment(spec(0)), plan_deployment(spec(2, lora={"maxRank": 64}))
    charged = lora_bytes_per_gpu(L8B, 1, LoraLimits(slots=2, max_rank=64), "bfloat16") / GIB
    assert with_two.lora_gib_per_gpu == pytest.approx(charged) and without.lora_gib_per_gpu == 0
    assert with_two.needed_gib_per_gpu == pytest.approx(without.needed_gib_per_gpu + charged)
    assert with_two.kv_cache_free_gib_per_gpu == pytest.approx(without.kv_cache_free_gib_per_gpu - charged)
    assert with_two.max_concurrent_sequences < without.max_concurrent_sequences
    assert "LoRA adapter slots" in format_plan_table(with_two)
    assert "LoRA" not in format_plan_table(without)


def test_slots_default_to_one_per_adapter_and_max_loras_caps_them() -> None:
    three = plan_deployment(spec(3)).lora_gib_per_gpu
    one_slot = plan_deployment(spec(3, lora={"maxLoras": 1})).lora_gib_per_gpu
    assert three == pytest.approx(3 * one_slot)


def test_adapters_that_do_not_fit_are_refused_naming_their_share() -> None:
    tight = {"maxModelLen": 65536}  # 8 GiB of KV for one sequence: fits one L4 without adapters
    plan_deployment(spec(0, serving=tight, gpu={"type": "nvidia-l4", "count": 1}))
    with pytest.raises(Infeasible, match=r"\+ LoRA adapter slots \d+\.\d GiB"):
        plan_deployment(spec(8, serving=tight, gpu={"type": "nvidia-l4", "count": 1}, lora={"maxRank": 512}))


def test_adapters_on_any_mixture_of_experts_model_are_refused() -> None:
    moe = [name for name, arch in MODELS.items() if arch.experts]
    assert moe
    for name in moe:
        with pytest.raises(UserError, match="mixture-of-experts"):
            lora_bytes_per_gpu(MODELS[name], 8, LoraLimits(1, 16), "bfloat16")
