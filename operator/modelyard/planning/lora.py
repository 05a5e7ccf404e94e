"""GPU memory vLLM preallocates for LoRA adapters. Pure functions, no I/O.

With ``--enable-lora`` the pinned vLLM (``render.model_deployment.VLLM_VERSION``) wraps every linear layer the
model supports (``get_supported_lora_modules`` in ``vllm/lora/utils.py``: all ``LinearBase`` modules plus the
model's ``embedding_modules``, which for Llama-style models are ``embed_tokens`` and ``lm_head``) and, at
start-up, allocates zeroed A and B matrices for ``--max-loras`` slots at ``--max-lora-rank``, in the LoRA
dtype (``auto``: the model's dtype), whatever adapters are listed (``create_lora_weights`` in
``vllm/lora/layers/``):

- a column-parallel layer (``qkv_proj`` with 3 slices, ``gate_up_proj`` with 2): per slice
  A = slots x rank x input (not sharded), B = slots x (output slice / TP) x rank;
- a row-parallel layer (``o_proj``, ``down_proj``): A = slots x rank x (input / TP),
  B = slots x output x rank;
- the input embedding (``VocabParallelEmbeddingWithLoRA``): A = slots x vocab x rank,
  B = slots x hidden x rank;
- ``lm_head`` (``LogitsProcessorWithLoRA``): A = slots x rank x hidden, B = slots x vocab x rank.

Each GPU holds its tensor-parallel share of that for the whole model; the planner charges it on top of the
weights, so a plan with adapters never overcommits the KV cache. Adapters kept in host memory
(``--max-cpu-loras``) cost no GPU memory.

The dense MLP width (``intermediate_size``) comes from each model's ``config.json``. Mixture-of-experts models
(Mixtral, gpt-oss, any catalog or custom architecture with experts) get per-expert LoRA weights in vLLM 0.33
(``FusedMoEWithLoRA``); modelyard does not plan those yet and refuses adapters on them. A custom
architecture's widths are estimated from its parameter count (every parameter counted as a decoder layer's,
which over-charges by the embeddings: conservative). A replica across nodes is charged the whole model's
LoRA per GPU, although a pipeline stage holds only its layers' share (conservative too).
"""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.errors import UserError

from .capacity import DTYPE_BYTES, kv_heads_per_gpu
from .catalog import MODELS, ModelArch

#: ``intermediate_size`` of the dense catalog models, from their config.json.
INTERMEDIATE_SIZE: dict[str, int] = {
    "meta-llama/Llama-3.1-8B-Instruct": 14336,
    "meta-llama/Llama-3.1-70B-Instruct": 28672,
    "meta-llama/Llama-3.1-405B-Instruct": 53248,
    "meta-llama/Llama-3.3-70B-Instruct": 28672,
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B": 28672,
    "mistralai/Mistral-7B-Instruct-v0.3": 14336,
    "Qwen/Qwen2.5-7B-Instruct": 18944,
    "Qwen/Qwen2.5-72B-Instruct": 29568,
}
#: Catalog models whose MLP is a mixture of experts: LoRA memory not planned (see the module docstring).
MIXTURE_OF_EXPERTS = frozenset(
    {"mistralai/Mixtral-8x7B-Instruct-v0.1", "openai/gpt-oss-20b", "openai/gpt-oss-120b"}
)
#: vLLM refuses LoRA on a larger vocabulary (``LogitsProcessorWithLoRA.create_lora_weights``).
MAX_LORA_VOCAB = 258048


@dataclass(frozen=True, slots=True)
class LoraLimits:
    """What the engine preallocates for: GPU slots (--max-loras) at the largest rank (--max-lora-rank)."""

    slots: int
    max_rank: int


@dataclass(frozen=True, slots=True)
class _Shape:
    layers: int
    hidden: int
    q_width: int  #: attention heads x head dim
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int


def _shape(arch: ModelArch) -> _Shape:
    if arch.experts or arch.hf_id in MIXTURE_OF_EXPERTS or arch.native_quantization == "mxfp4":
        raise UserError(
            f"spec.adapters: LoRA adapters on {arch.hf_id} (a mixture-of-experts model) are not supported "
            "by modelyard's capacity plan"
        )
    q_width = arch.attention_heads * arch.head_dim
    intermediate = INTERMEDIATE_SIZE.get(arch.hf_id) or _base_intermediate(arch)
    if intermediate is not None and arch.hidden_size is not None and arch.vocab_size is not None:
        return _Shape(
            arch.layers,
            arch.hidden_size,
            q_width,
            arch.kv_heads,
            arch.head_dim,
            intermediate,
            arch.vocab_size,
        )
    # a custom architecture: hidden from the heads, the MLP from what the parameters leave
    hidden = arch.hidden_size or q_width
    kv_width = arch.kv_heads * arch.head_dim
    attention = hidden * (q_width + 2 * kv_width) + q_width * hidden
    per_layer = arch.parameters / arch.layers
    estimated = max(0, round((per_layer - attention) / (3 * hidden)))
    return _Shape(arch.layers, hidden, q_width, arch.kv_heads, arch.head_dim, estimated, arch.vocab_size or 0)


def _base_intermediate(arch: ModelArch) -> int | None:
    """A pre-quantized checkpoint of a catalog model has its base's shape."""
    for hf_id, size in INTERMEDIATE_SIZE.items():
        base = MODELS[hf_id]
        if (base.parameters, base.layers, base.hidden_size) == (
            arch.parameters,
            arch.layers,
            arch.hidden_size,
        ):
            return size
    return None


def lora_elements_per_slot_per_gpu(arch: ModelArch, tp: int, rank: int) -> int:
    """Elements of the A and B matrices one LoRA slot takes on one GPU at tensor-parallel size ``tp``."""
    s = _shape(arch)
    q_out = s.q_width // tp
    kv_out = kv_heads_per_gpu(arch, tp) * s.head_dim
    mlp_out = s.intermediate // tp
    qkv = 3 * rank * s.hidden + rank * (q_out + 2 * kv_out)
    o_proj = rank * q_out + s.hidden * rank
    gate_up = 2 * rank * s.hidden + 2 * mlp_out * rank
    down = rank * mlp_out + s.hidden * rank
    embeddings = s.vocab * rank + s.hidden * rank
    lm_head = rank * s.hidden + s.vocab * rank
    return s.layers * (qkv + o_proj + gate_up + down) + embeddings + lm_head


def lora_bytes_per_gpu(arch: ModelArch, tp: int, limits: LoraLimits, dtype: str) -> float:
    """Bytes vLLM preallocates for LoRA on each GPU: every slot at the largest rank, in ``dtype``."""
    if arch.vocab_size is not None and arch.vocab_size > MAX_LORA_VOCAB:
        raise UserError(
            f"spec.adapters: vLLM serves LoRA adapters only for vocabularies up to {MAX_LORA_VOCAB} tokens; "
            f"{arch.hf_id} has {arch.vocab_size}"
        )
    elements = lora_elements_per_slot_per_gpu(arch, tp, limits.max_rank)
    return limits.slots * elements * DTYPE_BYTES[dtype]
