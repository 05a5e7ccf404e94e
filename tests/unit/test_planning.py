"""The capacity planner and its catalogs: golden table, published figures, edge cases."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import pytest

from modelyard.cli.main import main
from modelyard.errors import Infeasible, UserError
from modelyard.planning.capacity import (
    GIB,
    OVERHEAD_GIB_PER_GPU,
    InvalidPlanRequest,
    Plan,
    format_plan_table,
    kv_bytes_per_sequence_per_gpu,
    max_num_batched_tokens,
    plan,
    resolve_quantization,
    tensor_parallel_problem,
    weight_bytes,
)
from modelyard.planning.catalog import GPU_TYPES, MODELS, ModelArch, lookup_gpu, lookup_model

GOLDEN_DIR = Path(__file__).with_name("golden")

L8B = MODELS["meta-llama/Llama-3.1-8B-Instruct"]
L70B = MODELS["meta-llama/Llama-3.1-70B-Instruct"]
L405B = MODELS["meta-llama/Llama-3.1-405B-Instruct"]
QWEN7B = MODELS["Qwen/Qwen2.5-7B-Instruct"]
OSS20B = MODELS["openai/gpt-oss-20b"]
OSS120B = MODELS["openai/gpt-oss-120b"]
H100 = GPU_TYPES["nvidia-h100-80gb"]
L4 = GPU_TYPES["nvidia-l4"]
A100_80 = GPU_TYPES["nvidia-a100-80gb"]


def _regen_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("regen_capacity", GOLDEN_DIR / "regen_capacity.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- golden table ---------------------------------------------------------------------------------


def test_golden_capacity_table_matches() -> None:
    expected = (GOLDEN_DIR / "capacity.tsv").read_text(encoding="utf-8")
    actual = _regen_module().render()
    assert actual == expected, "capacity changed: run tests/unit/golden/regen_capacity.py and review the diff"


def test_golden_quantization_table_matches() -> None:
    expected = (GOLDEN_DIR / "capacity-quantization.tsv").read_text(encoding="utf-8")
    actual = _regen_module().render_quantization()
    assert actual == expected, "capacity changed: run tests/unit/golden/regen_capacity.py and review the diff"


def test_golden_quantization_rows_follow_from_config_arithmetic() -> None:
    """Rows of the quantization table recomputed from the models' public config.json numbers, not from the
    planner: FP8 linear layers at 1 byte, embeddings, lm_head and norms at 2, one layer in 16 bits on top
    while loading, and an FP8 KV cache at 1 byte per element."""
    rows = {
        (r[0], r[1], r[2], r[3]): r
        for r in (
            line.split("\t")
            for line in (GOLDEN_DIR / "capacity-quantization.tsv").read_text().splitlines()[1:]
        )
    }
    for hf_id, config in _LLAMA_CONFIGS.items():
        linear, norms, embeddings = _llama_parts(config)
        layers, hidden, kv_heads, head_dim = config[2], config[0], config[5], config[6]
        weights = layers * linear + (layers * norms + hidden + embeddings) * 2
        row = rows[(hf_id, "nvidia-h100-80gb", "fp8", "fp8")]
        assert float(row[5]) == pytest.approx(weights / GIB, abs=0.01), hf_id
        tp = int(row[4].removeprefix("tp"))
        assert float(row[6]) == pytest.approx((weights + linear * 2) / tp / GIB, abs=0.01), hf_id
        kv = 2 * layers * kv_heads * head_dim * 1 * 32768
        assert float(row[7]) == pytest.approx(kv / GIB, abs=0.01), hf_id


def test_golden_table_covers_every_model_gpu_and_length() -> None:
    rows = [line.split("\t") for line in (GOLDEN_DIR / "capacity.tsv").read_text().splitlines()[1:]]
    assert {r[0] for r in rows} == set(MODELS)
    assert {r[1] for r in rows} == set(GPU_TYPES)
    for arch in MODELS.values():
        for gpu in GPU_TYPES:
            lengths = [int(r[2]) for r in rows if (r[0], r[1]) == (arch.hf_id, gpu)]
            expected = [n for n in (4096, 32768, 131072) if n <= arch.max_position_embeddings]
            assert lengths == expected, (arch.hf_id, gpu)
    for r in rows:
        assert len(r) == 7
        assert r[3] == "infeasible" or r[3] in {"tp1", "tp2", "tp4", "tp8"}
        assert (r[3] == "infeasible") == (r[6] == "0")


# --- published figures ----------------------------------------------------------------------------


def test_llama_8b_bf16_weights_match_vllm_log() -> None:
    """vLLM logs "Loading model weights took 14.99 GiB" for Llama-3.1-8B-Instruct in bf16."""
    p = plan(L8B, H100, max_model_len=8192)
    assert 14.5 <= p.weights_gib <= 15.5
    assert p.weights_gib == pytest.approx(8_030_261_248 * 2 / GIB)


def test_llama_70b_bf16_weights() -> None:
    assert weight_bytes(L70B, "bfloat16", None) / GIB == pytest.approx(131.4, abs=0.05)


def test_llama_8b_kv_cache_is_128_kib_per_token() -> None:
    p = plan(L8B, H100, max_model_len=8192)
    assert p.kv_cache_bytes_per_token == 2 * 32 * 8 * 128 * 2 == 128 * 1024
    assert p.kv_cache_gib_per_sequence == pytest.approx(1.0)  # 8192 tokens x 128 KiB


def test_llama_70b_kv_cache_is_320_kib_per_token_split_over_tp() -> None:
    p = plan(L70B, H100, max_model_len=8192)
    assert p.kv_cache_bytes_per_token == 2 * 80 * 8 * 128 * 2 == 320 * 1024
    assert p.kv_cache_gib_per_sequence == pytest.approx(2.5)
    assert p.kv_cache_gib_per_sequence_per_gpu == pytest.approx(2.5 / p.tensor_parallel_size)


def test_gpt_oss_weights_are_the_mxfp4_checkpoint_not_bf16() -> None:
    """The model card lists checkpoint sizes of 12.8 GiB (20b) and 60.8 GiB (120b)."""
    assert plan(OSS20B, H100, max_model_len=8192).weights_gib == pytest.approx(12.8, abs=0.05)
    p = plan(OSS120B, H100, max_model_len=8192)
    assert p.weights_gib == pytest.approx(60.8, abs=0.05)
    assert p.quantization == "mxfp4"
    assert p.weights_gib < OSS120B.parameters * 2 / GIB / 3


def test_gpt_oss_120b_fits_one_80gb_gpu_at_full_context() -> None:
    """OpenAI and vLLM's recipe: gpt-oss-120b runs on a single 80 GB GPU."""
    p = plan(OSS120B, H100, max_model_len=131072)
    assert p.tensor_parallel_size == 1
    assert p.max_concurrent_sequences >= 1


def test_gpt_oss_sliding_layers_hold_a_window_not_the_context() -> None:
    per_layer_token = 2 * 8 * 64 * 2
    full = 18 * 131072
    window = 18 * (math.ceil((128 - 1 + 8192) / 16) + 1) * 16  # 8192 batched tokens on H100
    assert kv_bytes_per_sequence_per_gpu(OSS120B, 1, 2, 131072, max_num_batched_tokens(H100)) == (
        per_layer_token * (full + window)
    )
    p = plan(OSS120B, H100, max_model_len=131072)
    assert p.sliding_window_layers == 18
    assert p.sliding_window_tokens == 8336
    assert p.kv_cache_gib_per_sequence < p.kv_cache_bytes_per_token * 131072 / GIB * 0.6


def test_max_num_batched_tokens_default_follows_vllm() -> None:
    assert max_num_batched_tokens(H100) == 8192
    assert max_num_batched_tokens(GPU_TYPES["nvidia-h200"]) == 8192
    assert max_num_batched_tokens(A100_80) == 2048  # vLLM excludes A100 by name
    assert max_num_batched_tokens(L4) == 2048


# --- tensor-parallel choice ----------------------------------------------------------------------


def test_8b_on_h100_is_tensor_parallel_1() -> None:
    p = plan(L8B, H100, max_model_len=8192)
    assert (p.tensor_parallel_size, p.gpus_per_replica) == (1, 1)
    free = 0.9 * H100.memory_gib - p.weights_gib - OVERHEAD_GIB_PER_GPU
    assert p.max_concurrent_sequences == math.floor(free / 1.0) == 54


def test_70b_bf16_on_h100_needs_two_gpus_at_8k_and_four_at_128k() -> None:
    assert plan(L70B, H100, max_model_len=8192).tensor_parallel_size == 2
    assert plan(L70B, H100, max_model_len=131072).tensor_parallel_size == 4


def test_plan_fits_within_usable_memory() -> None:
    for arch in MODELS.values():
        p = plan(arch, GPU_TYPES["nvidia-b200"], max_model_len=4096)
        assert p.needed_gib_per_gpu <= p.usable_gib_per_gpu
        per_seq = p.kv_cache_gib_per_sequence_per_gpu
        assert p.max_concurrent_sequences * per_seq <= p.kv_cache_free_gib_per_gpu
        assert (p.max_concurrent_sequences + 1) * per_seq > p.kv_cache_free_gib_per_gpu


def test_qwen_7b_never_uses_tp8_because_28_heads_do_not_split() -> None:
    assert tensor_parallel_problem(QWEN7B, 4) is None
    problem = tensor_parallel_problem(QWEN7B, 8)
    assert problem is not None and "28 attention heads" in problem
    with pytest.raises(ValueError, match="28 attention heads"):
        plan(QWEN7B, L4, max_model_len=4096, gpu_count=8)


def test_kv_heads_are_replicated_when_tp_exceeds_them() -> None:
    arch = ModelArch(
        hf_id="x/gqa2",
        parameters=10**9,
        layers=10,
        attention_heads=16,
        kv_heads=2,
        head_dim=64,
        max_position_embeddings=8192,
    )
    p = plan(arch, L4, max_model_len=1024, gpu_count=8)
    per_gpu_bytes = 2 * 10 * 1 * 64 * 2 * 1024  # one (replicated) KV head per GPU
    assert p.kv_cache_gib_per_sequence_per_gpu == pytest.approx(per_gpu_bytes / GIB)
    assert p.kv_cache_gib_per_sequence == pytest.approx(8 * per_gpu_bytes / GIB)


def test_kv_heads_that_neither_split_nor_replicate_are_refused() -> None:
    arch = ModelArch(
        hf_id="x/gqa3",
        parameters=10**9,
        layers=10,
        attention_heads=12,
        kv_heads=3,
        head_dim=64,
        max_position_embeddings=8192,
    )
    problem = tensor_parallel_problem(arch, 2)
    assert problem is not None and "3 KV heads" in problem
    assert plan(arch, L4, max_model_len=1024).tensor_parallel_size == 1


@pytest.mark.parametrize("count", [0, 3, 16])
def test_gpu_count_outside_supported_sizes_is_a_value_error(count: int) -> None:
    with pytest.raises(ValueError, match=f"tensor-parallel size {count} is not one of 1, 2, 4, 8"):
        plan(L8B, H100, max_model_len=4096, gpu_count=count)


def test_explicit_gpu_count_is_used_even_when_fewer_would_fit() -> None:
    assert plan(L8B, H100, max_model_len=4096, gpu_count=4).tensor_parallel_size == 4


def test_explicit_gpu_count_that_does_not_fit_is_infeasible_at_that_size() -> None:
    expected = r"needs 135\.9 GiB per GPU at tensor-parallel size 1 .*nvidia-h100-80gb has 71\.7 GiB usable"
    with pytest.raises(Infeasible, match=expected):
        plan(L70B, H100, max_model_len=8192, gpu_count=1)


# --- infeasible and invalid requests --------------------------------------------------------------


def test_405b_on_l4_is_infeasible_and_names_the_numbers() -> None:
    with pytest.raises(Infeasible) as caught:
        plan(L405B, L4, max_model_len=8192)
    message = str(caught.value)
    assert message == (
        "meta-llama/Llama-3.1-405B-Instruct needs 97.0 GiB per GPU at tensor-parallel size 8 "
        "(weights 756.0 GiB / 8 + overhead 2.0 GiB + KV for one 8192-token sequence 0.5 GiB); "
        "nvidia-l4 has 20.2 GiB usable per GPU (0.90 x 22.5 GiB)"
    )
    assert "\n" not in message


def test_infeasible_uses_the_largest_tp_the_model_accepts() -> None:
    arch = ModelArch(
        hf_id="x/huge",
        parameters=200 * 10**9,
        layers=40,
        attention_heads=28,
        kv_heads=4,
        head_dim=128,
        max_position_embeddings=8192,
    )
    with pytest.raises(Infeasible, match="at tensor-parallel size 4 "):
        plan(arch, L4, max_model_len=4096)


def test_context_longer_than_the_model_is_a_value_error_naming_maxmodellen() -> None:
    with pytest.raises(ValueError, match="maxModelLen 65536 exceeds the 32768 positions"):
        plan(QWEN7B, H100, max_model_len=65536)
    with pytest.raises(ValueError, match="maxModelLen must be positive"):
        plan(L8B, H100, max_model_len=0)


def test_invalid_requests_are_user_errors_too() -> None:
    with pytest.raises(UserError):
        plan(L8B, H100, max_model_len=4096, dtype="int3")
    assert issubclass(InvalidPlanRequest, ValueError)


@pytest.mark.parametrize("utilization", [0.0, -0.1, 1.01])
def test_gpu_memory_utilization_out_of_range(utilization: float) -> None:
    with pytest.raises(ValueError, match="gpuMemoryUtilization"):
        plan(L8B, H100, max_model_len=4096, gpu_memory_utilization=utilization)


def test_lower_memory_utilization_shrinks_concurrency() -> None:
    high = plan(L8B, H100, max_model_len=8192, gpu_memory_utilization=0.95)
    low = plan(L8B, H100, max_model_len=8192, gpu_memory_utilization=0.5)
    assert high.max_concurrent_sequences > low.max_concurrent_sequences


# --- dtypes and quantization ----------------------------------------------------------------------


def test_dtype_aliases_and_auto() -> None:
    assert plan(L8B, H100, max_model_len=4096, dtype="auto").dtype == "bfloat16"
    assert plan(L8B, H100, max_model_len=4096, dtype="half").dtype == "float16"
    p32 = plan(L8B, H100, max_model_len=4096, dtype="float32")
    assert p32.weights_gib == pytest.approx(2 * plan(L8B, H100, max_model_len=4096).weights_gib)
    assert p32.kv_cache_bytes_per_token == 256 * 1024  # KV follows the serving dtype


def test_fp8_is_a_quantization_not_a_dtype() -> None:
    with pytest.raises(ValueError, match="quantization: fp8"):
        plan(L8B, H100, max_model_len=4096, dtype="fp8")


def test_fp8_kv_cache_halves_kv() -> None:
    bf16 = plan(L8B, H100, max_model_len=8192)
    fp8 = plan(L8B, H100, max_model_len=8192, kv_cache_dtype="fp8")
    assert fp8.kv_cache_bytes_per_token * 2 == bf16.kv_cache_bytes_per_token
    assert fp8.max_concurrent_sequences == math.floor(fp8.kv_cache_free_gib_per_gpu / 0.5)
    with pytest.raises(ValueError, match="kv cache dtype"):
        plan(L8B, H100, max_model_len=8192, kv_cache_dtype="int4")


def test_fp8_weights_keep_embeddings_in_bf16() -> None:
    p = plan(L70B, H100, max_model_len=4096, quantization="fp8")
    embeddings = 2 * 128256 * 8192
    assert p.weights_gib == pytest.approx(((L70B.parameters - embeddings) + embeddings * 2) / GIB)
    assert 67.0 <= p.weights_gib <= 68.5  # vLLM loads Llama-3.1-70B FP8 in about 67.7 GiB
    assert p.tensor_parallel_size == 1


def test_awq_int4_counts_group_scales() -> None:
    p = plan(L70B, H100, max_model_len=4096, quantization="AWQ")
    assert p.quantization == "awq"
    embeddings = 2 * 128256 * 8192
    expected = (L70B.parameters - embeddings) * (0.5 + 2.5 / 128) + embeddings * 2
    assert p.weights_gib == pytest.approx(expected / GIB)
    assert 36.0 <= p.weights_gib <= 38.5
    assert plan(L70B, H100, max_model_len=4096, quantization="gptq_marlin").quantization == "gptq"


def test_natively_quantized_model_refuses_another_quantization() -> None:
    assert plan(OSS20B, L4, max_model_len=4096, quantization="mxfp4").quantization == "mxfp4"
    with pytest.raises(ValueError, match="ships mxfp4 weights"):
        plan(OSS20B, L4, max_model_len=4096, quantization="awq")
    with pytest.raises(ValueError, match="quantization 'mxfp4' is not one of"):
        plan(L8B, L4, max_model_len=4096, quantization="mxfp4")


# --- quantization as the pinned vLLM loads it -------------------------------------------------------

#: (hidden_size, intermediate_size, num_hidden_layers, vocab_size, num_attention_heads, num_key_value_heads,
#: head_dim) from each model's public config.json
_LLAMA_CONFIGS = {
    "meta-llama/Llama-3.1-8B-Instruct": (4096, 14336, 32, 128256, 32, 8, 128),
    "meta-llama/Llama-3.1-70B-Instruct": (8192, 28672, 80, 128256, 64, 8, 128),
    "meta-llama/Llama-3.1-405B-Instruct": (16384, 53248, 126, 128256, 128, 8, 128),
}


def _llama_parts(config: tuple[int, ...]) -> tuple[int, int, int]:
    """Per decoder layer: linear parameters (q, k, v, o, gate, up, down) and norm parameters; embeddings
    plus untied lm_head for the whole model."""
    hidden, intermediate, _, vocab, heads, kv, head_dim = config
    linear = 2 * hidden * heads * head_dim + 2 * hidden * kv * head_dim + 3 * hidden * intermediate
    return linear, 2 * hidden, 2 * vocab * hidden


def test_405b_fp8_on_8_h100_fits_because_vllm_033_quantizes_layer_by_layer_while_loading() -> None:
    """vLLM 0.33 creates each linear weight of an online-FP8 layer on the meta device and materializes it in
    bf16 only while that layer loads, quantizing it once complete (``OnlineLinearBase.create_weights`` in
    vllm/model_executor/layers/quantization/online/fp8.py, ``initialize_online_processing`` in
    vllm/model_executor/model_loader/reload/layerwise.py). The load peak per GPU is the FP8 weights plus one
    bf16 decoder layer: 48.5 GiB on 8 x H100, where vLLM 0.11's path (every bf16 weight allocated before
    quantizing) needed 94.5 GiB and could not load at all."""
    linear, norms, embeddings = _llama_parts(_LLAMA_CONFIGS["meta-llama/Llama-3.1-405B-Instruct"])
    fp8_weights = 126 * linear * 1 + (126 * norms + 16384 + embeddings) * 2
    one_layer_bf16 = linear * 2
    p = plan(L405B, H100, max_model_len=8192, quantization="fp8")
    assert (p.tensor_parallel_size, p.quantization, p.quantize_on_load) == (8, "fp8", True)
    assert p.quantization_flag == "fp8_per_tensor"
    assert p.weights_gib_per_gpu == pytest.approx(fp8_weights / 8 / GIB, abs=0.01)  # 47.74
    assert p.load_peak_gib_per_gpu == pytest.approx((fp8_weights + one_layer_bf16) / 8 / GIB, abs=0.01)
    assert round(p.load_peak_gib_per_gpu, 1) == 48.5
    assert p.load_peak_gib_per_gpu + OVERHEAD_GIB_PER_GPU <= p.usable_gib_per_gpu
    kv_per_gpu = 2 * 126 * 1 * 128 * 2 * 8192 / GIB  # one KV head per GPU at TP 8
    free = p.usable_gib_per_gpu - p.weights_gib_per_gpu - OVERHEAD_GIB_PER_GPU
    assert p.max_concurrent_sequences == math.floor(free / kv_per_gpu) == 44
    # the old path: all bf16 weights resident before quantizing
    assert L405B.parameters * 2 / 8 / GIB == pytest.approx(94.5, abs=0.05)
    assert L405B.parameters * 2 / 8 / GIB > p.usable_gib_per_gpu
    table = format_plan_table(p)
    assert "fp8, quantized while loading (--quantization fp8_per_tensor)" in table
    assert "load peak                  48.48 GiB per GPU" in table


def test_awq_70b_checkpoint_fits_one_h100() -> None:
    """hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4: int4 linear layers in groups of 128, each group
    with an fp16 scale and a packed 4-bit zero point (qweight, scales, qzeros tensors), fp16 elsewhere."""
    awq = MODELS["hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4"]
    linear, norms, embeddings = _llama_parts(_LLAMA_CONFIGS["meta-llama/Llama-3.1-70B-Instruct"])
    stored = 80 * linear * (0.5 + 2 / 128 + 0.5 / 128) + (80 * norms + 8192 + embeddings) * 2
    p = plan(awq, H100, max_model_len=8192)
    assert (p.tensor_parallel_size, p.quantization, p.quantize_on_load) == (1, "awq", False)
    assert p.quantization_flag is None  # vLLM reads quant_method from the checkpoint's config.json
    assert p.weights_gib == pytest.approx(stored / GIB, abs=0.01)  # 37.03
    assert p.max_concurrent_sequences == math.floor((p.usable_gib_per_gpu - p.weights_gib - 2) / 2.5) == 13
    assert plan(awq, H100, max_model_len=8192, quantization="awq").quantization == "awq"
    with pytest.raises(ValueError, match="ships awq weights"):
        plan(awq, H100, max_model_len=8192, quantization="fp8")


def test_fp8_checkpoint_is_loaded_as_stored() -> None:
    fp8 = MODELS["RedHatAI/Meta-Llama-3.1-405B-Instruct-FP8"]
    p = plan(fp8, H100, max_model_len=8192)
    assert (p.quantization, p.quantize_on_load, p.quantization_flag) == ("fp8", False, None)
    assert p.load_peak_gib_per_gpu == pytest.approx(p.weights_gib_per_gpu)
    on_load = plan(L405B, H100, max_model_len=8192, quantization="fp8")
    assert p.weights_gib == pytest.approx(on_load.weights_gib)


@pytest.mark.parametrize(
    ("model", "quantization", "dtype"),
    [
        ("hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4", None, "float32"),
        ("meta-llama/Llama-3.1-70B-Instruct", "gptq", "float32"),
        ("meta-llama/Llama-3.1-8B-Instruct", "fp8", "float32"),
        ("openai/gpt-oss-20b", None, "float16"),
    ],
)
def test_dtypes_the_quantization_kernels_refuse_are_refused(
    model: str, quantization: str | None, dtype: str
) -> None:
    """vLLM refuses these at start (``VllmConfig._get_quantization_config``: "... is not supported for
    quantization method"); tests/engines shows the pinned release does."""
    with pytest.raises(InvalidPlanRequest, match=f"dtype {dtype} does not run"):
        plan(MODELS[model], H100, max_model_len=4096, quantization=quantization, dtype=dtype)


def test_awq_and_gptq_on_a_16_bit_catalog_model_mean_a_checkpoint_of_that_shape() -> None:
    p = plan(L70B, H100, max_model_len=4096, quantization="gptq")
    assert (p.quantization, p.quantize_on_load, p.quantization_flag) == ("gptq", False, None)
    assert resolve_quantization("awq_marlin", L70B) == "awq"


def test_quantized_catalog_entries_share_their_base_shape() -> None:
    for hf_id, arch in MODELS.items():
        if arch.quant_method in ("awq", "gptq", "compressed-tensors"):
            base = next(
                b
                for b in MODELS.values()
                if b.native_quantization is None
                and (b.layers, b.hidden_size, b.parameters)
                == (arch.layers, arch.hidden_size, arch.parameters)
            )
            assert arch.native_quantized_parameters == base.parameters - base.embedding_parameters, hf_id
            assert arch.nim_image is None


# --- catalog --------------------------------------------------------------------------------------


def _dense_parameters(config: tuple[int, ...], *, qkv_bias: bool = False, experts: int = 1) -> int:
    """Parameter count of a Llama-style decoder from its config (untied embeddings).

    ``config`` is (hidden_size, intermediate_size, layers, vocab_size, heads, kv_heads, head_dim).
    """
    hidden, intermediate, layers, vocab, heads, kv, head_dim = config
    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv * head_dim
    attention += (heads + 2 * kv) * head_dim if qkv_bias else 0
    mlp = 3 * hidden * intermediate * experts + (hidden * experts if experts > 1 else 0)
    return layers * (attention + mlp + 2 * hidden) + 2 * vocab * hidden + hidden


@pytest.mark.parametrize(
    ("hf_id", "config"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", (4096, 14336, 32, 128256, 32, 8, 128)),
        ("meta-llama/Llama-3.1-70B-Instruct", (8192, 28672, 80, 128256, 64, 8, 128)),
        ("meta-llama/Llama-3.3-70B-Instruct", (8192, 28672, 80, 128256, 64, 8, 128)),
        ("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", (8192, 28672, 80, 128256, 64, 8, 128)),
        ("meta-llama/Llama-3.1-405B-Instruct", (16384, 53248, 126, 128256, 128, 8, 128)),
        ("mistralai/Mistral-7B-Instruct-v0.3", (4096, 14336, 32, 32768, 32, 8, 128)),
    ],
)
def test_catalog_parameters_follow_from_config(hf_id: str, config: tuple[int, ...]) -> None:
    arch = MODELS[hf_id]
    assert arch.parameters == _dense_parameters(config)
    hidden, _, layers, vocab, heads, kv, head_dim = config
    assert (arch.layers, arch.attention_heads, arch.kv_heads, arch.head_dim) == (layers, heads, kv, head_dim)
    assert (arch.hidden_size, arch.vocab_size) == (hidden, vocab)


def test_catalog_moe_and_biased_models_follow_from_config() -> None:
    mixtral = MODELS["mistralai/Mixtral-8x7B-Instruct-v0.1"]
    assert mixtral.parameters == _dense_parameters((4096, 14336, 32, 32000, 32, 8, 128), experts=8)
    assert QWEN7B.parameters == _dense_parameters((3584, 18944, 28, 152064, 28, 4, 128), qkv_bias=True)
    qwen72 = MODELS["Qwen/Qwen2.5-72B-Instruct"]
    assert qwen72.parameters == _dense_parameters((8192, 29568, 80, 152064, 64, 8, 128), qkv_bias=True)


def test_catalog_shapes_from_configs() -> None:
    assert (QWEN7B.attention_heads, QWEN7B.kv_heads, QWEN7B.head_dim) == (28, 4, 128)
    for arch in (OSS20B, OSS120B):
        assert (arch.attention_heads, arch.kv_heads, arch.head_dim) == (64, 8, 64)
    assert (OSS20B.layers, OSS120B.layers) == (24, 36)
    assert round(OSS20B.parameters / 1e9, 1) == 20.9
    assert round(OSS120B.parameters / 1e9, 1) == 116.8
    required = {
        "meta-llama/Llama-3.1-8B-Instruct",
        "meta-llama/Llama-3.1-70B-Instruct",
        "meta-llama/Llama-3.1-405B-Instruct",
        "meta-llama/Llama-3.3-70B-Instruct",
        "mistralai/Mistral-7B-Instruct-v0.3",
        "mistralai/Mixtral-8x7B-Instruct-v0.1",
        "Qwen/Qwen2.5-7B-Instruct",
        "Qwen/Qwen2.5-72B-Instruct",
        "openai/gpt-oss-20b",
        "openai/gpt-oss-120b",
        "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
    }
    assert required <= set(MODELS)
    assert all(key == arch.hf_id for key, arch in MODELS.items())


def test_gpu_catalog_is_unchanged() -> None:
    assert {g.name: g.memory_mib for g in GPU_TYPES.values()} == {
        "nvidia-a10g": 23028,
        "nvidia-l4": 23034,
        "nvidia-l40s": 46068,
        "nvidia-a100-40gb": 40960,
        "nvidia-a100-80gb": 81920,
        "nvidia-h100-80gb": 81559,
        "nvidia-h200": 143771,
        "nvidia-b200": 183359,
    }


@pytest.mark.parametrize(
    ("ref", "hf_id"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"),
        ("META-LLAMA/llama-3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct"),
        ("hf://meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"),
        ("hf://Qwen/Qwen2.5-72B-Instruct@0e9e39f", "Qwen/Qwen2.5-72B-Instruct"),
        ("llama-3.3-70b-instruct", "meta-llama/Llama-3.3-70B-Instruct"),
        ("gpt-oss-120b", "openai/gpt-oss-120b"),
        ("ngc://nim/meta/llama-3.1-70b-instruct:1.8.3", "meta-llama/Llama-3.1-70B-Instruct"),
        ("ngc://nim/deepseek-ai/deepseek-r1-distill-llama-70b", "deepseek-ai/DeepSeek-R1-Distill-Llama-70B"),
        ("nvcr.io/nim/mistralai/mixtral-8x7b-instruct-v01:latest", "mistralai/Mixtral-8x7B-Instruct-v0.1"),
        ("ngc://nim/mistralai/mistral-7b-instruct-v0.3:1.3.0", "mistralai/Mistral-7B-Instruct-v0.3"),
        ("meta/llama-3.1-405b-instruct", "meta-llama/Llama-3.1-405B-Instruct"),
    ],
)
def test_lookup_model(ref: str, hf_id: str) -> None:
    arch = lookup_model(ref)
    assert arch is not None and arch.hf_id == hf_id


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "hf://meta-llama/Llama-3.1-8B",
        "ngc://nim/meta/llama-9-instruct:1.0",
        "s3://bucket/llama-3.1-8b-instruct",
        "openai/gpt-oss",
    ],
)
def test_lookup_model_unknown(ref: str) -> None:
    assert lookup_model(ref) is None


def test_every_alias_and_nim_image_resolves_to_its_own_model() -> None:
    for arch in MODELS.values():
        for ref in (arch.hf_id, *arch.aliases, *([arch.nim_image] if arch.nim_image else [])):
            assert lookup_model(ref) is arch, ref
        if arch.nim_image:
            assert arch.nim_image.startswith("nvcr.io/nim/")


def test_lookup_gpu() -> None:
    assert lookup_gpu("nvidia-h100-80gb") is H100
    assert lookup_gpu("NVIDIA-L4") is L4
    assert lookup_gpu(" Nvidia-A100-80GB ") is A100_80
    assert lookup_gpu("nvidia-h100") is None


def test_model_arch_validation() -> None:
    with pytest.raises(ValueError, match="multiple of kv_heads"):
        ModelArch(
            hf_id="x/y",
            parameters=1,
            layers=1,
            attention_heads=6,
            kv_heads=4,
            head_dim=8,
            max_position_embeddings=1,
        )
    with pytest.raises(ValueError, match="go together"):
        ModelArch(
            hf_id="x/y",
            parameters=1,
            layers=1,
            attention_heads=4,
            kv_heads=4,
            head_dim=8,
            max_position_embeddings=1,
            native_quantization="mxfp4",
        )
    with pytest.raises(ValueError, match="layers must be positive"):
        ModelArch(
            hf_id="x/y",
            parameters=1,
            layers=0,
            attention_heads=4,
            kv_heads=4,
            head_dim=8,
            max_position_embeddings=1,
        )


def test_unknown_embeddings_quantize_everything() -> None:
    arch = ModelArch(
        hf_id="x/custom",
        parameters=10**9,
        layers=4,
        attention_heads=8,
        kv_heads=8,
        head_dim=64,
        max_position_embeddings=4096,
    )
    assert arch.embedding_parameters == 0
    assert weight_bytes(arch, "bfloat16", "fp8") == 10**9


# --- presentation ---------------------------------------------------------------------------------


def test_format_plan_table_is_aligned_and_complete() -> None:
    p = plan(L70B, H100, max_model_len=8192)
    table = format_plan_table(p)
    lines = table.splitlines()
    value_columns = {len(line) - len(line.split("  ", 1)[1].lstrip()) for line in lines}
    assert len(value_columns) == 1
    assert "tensor-parallel size       2" in table
    assert "131.42 GiB (65.71 GiB per GPU)" in table
    assert "320 KiB" in table
    assert f"max concurrent sequences   {p.max_concurrent_sequences}" in table
    assert "sliding-window" not in table
    assert "sliding-window layers" in format_plan_table(plan(OSS20B, L4, max_model_len=4096))


def test_to_status() -> None:
    p = plan(L8B, H100, max_model_len=8192)
    assert p.to_status() == {
        "tensorParallelSize": 1,
        "pipelineParallelSize": 1,
        "nodesPerReplica": 1,
        "gpusPerReplica": 1,
        "weightsGiB": 14.96,
        "kvCacheGiBPerSequence": 1.0,
        "maxConcurrentSequences": 54,
    }


def test_plan_is_frozen() -> None:
    p: Plan = plan(L8B, H100, max_model_len=8192)
    with pytest.raises(AttributeError):
        p.tensor_parallel_size = 2  # type: ignore[misc]


def test_plan_command_shows_the_fp8_load_peak_and_kv_cache_dtype(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "plan",
            "--model",
            "meta-llama/Llama-3.1-405B-Instruct",
            "--gpu",
            "nvidia-h100-80gb",
            "--quantization",
            "fp8",
            "--kv-cache-dtype",
            "fp8",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "tensor-parallel size       8" in out
    assert "load peak                  48.48 GiB per GPU" in out
    assert "KV cache dtype             fp8" in out
    assert main(["plan", "--model", "openai/gpt-oss-20b", "--gpu", "nvidia-l4", "--dtype", "float16"]) == 2
