"""The capacity planner: proves a model fits its GPUs before a pod is scheduled. Pure functions, no I/O.

The model of GPU memory follows what vLLM does at start-up (``gpu_memory_utilization`` x GPU memory is the
budget; weights, then activations and CUDA graphs, and whatever is left becomes the paged KV cache, which must
hold at least one full ``max_model_len`` sequence or the engine refuses to start)::

    weights            = quantized parameters x quantized width + other parameters x dtype width
    KV bytes per token = 2 (K and V) x layers x KV heads per GPU x head dim x KV-cache dtype width
    need per GPU       = weights / TP + overhead + KV bytes per token x max_model_len
    usable per GPU     = gpu_memory_utilization x GPU memory
    TP                 = smallest of 1, 2, 4, 8 that vLLM accepts for the model and where need <= usable
    concurrent seqs    = floor((usable - weights / TP - overhead) / KV per GPU for one sequence)

Quantization is charged what the pinned vLLM release (``render.model_deployment.VLLM_VERSION``) loads:

- a pre-quantized checkpoint (AWQ/GPTQ int4 with their group scales and zero points, FP8, MXFP4) is loaded
  as stored: its quantized parameters at their packed width, embeddings, ``lm_head`` and norms at ``dtype``;
- ``quantization: fp8`` on a 16-bit checkpoint is quantized *while loading*, layer by layer: vLLM 0.33 creates
  each linear weight on the meta device and materializes it in 16 bits only when its first shard arrives
  (``OnlineLinearBase.create_weights`` in ``model_executor/layers/quantization/online/fp8.py``, with
  ``initialize_online_processing`` in ``model_executor/model_loader/reload/layerwise.py``), then quantizes it
  once the layer is complete. The load peak is therefore the FP8 weights plus one decoder layer in 16 bits,
  not the whole 16-bit model (vLLM 0.11 allocated all of it before quantizing: Llama-3.1-405B on 8 x H100
  peaked near 94.5 GiB per GPU there, 48.5 GiB in 0.33). The planner checks that peak fits as well.

Two refinements make the KV term match vLLM's own admission check: a sequence's KV is allocated in whole
16-token blocks, and a sliding-window layer (gpt-oss alternates them) holds only
``window - 1 + max_num_batched_tokens`` tokens plus one block, not the whole context.

Frontier architectures (see :class:`~modelyard.planning.catalog.ModelArch`): a mixture of experts is charged
all its experts (every expert is resident; the active parameters are reported, not planned for); latent
attention (MLA) caches ``layers x (kv_lora_rank + qk_rope_head_dim)`` elements per token, the same on every
tensor-parallel rank; chunked local attention layers (Llama 4) hold at most ``chunk + max_num_batched_tokens``
tokens; block-quantized FP8 checkpoints add one float32 scale per 128 x 128 block.

A model that fits no tensor-parallel size on one node is planned across nodes, the way vLLM (and NIM) run
multi-node: tensor parallel over the node's GPUs x pipeline parallel over 2 .. ``max_nodes`` nodes. Pipeline
stages split the decoder layers (vLLM's ``get_pp_indices``: ``ceil(layers / PP)`` on the largest stage), so
per GPU::

    weights per GPU    = (non-embedding weights x ceil(layers / PP) / layers + one embedding matrix) / TP
    KV per GPU         = KV per GPU at PP 1 x ceil(layers / PP) / layers

(the first stage holds the input embedding, the last ``lm_head``: one vocabulary x hidden matrix each).

Everything is in bytes internally and GiB (2**30 bytes) at the edges, the unit vLLM logs and
``nvidia.com/gpu.memory`` (MiB) converts to exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from modelyard.api.model_deployment import NODES_PER_REPLICA_LIMIT
from modelyard.errors import Infeasible, UserError
from modelyard.planning.catalog import GpuType, ModelArch

GIB = 1 << 30
TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)

BLOCK_SCALE_BYTES = 4
"""Block-quantized FP8 keeps one float32 scale (``weight_scale_inv``) per block of weights."""

OVERHEAD_GIB_PER_GPU = 2.0
"""Memory per GPU that is neither weights nor KV cache.

vLLM's profiling run for 7B-70B models on one GPU logs about 0.1-0.5 GiB of non-torch memory (CUDA context,
NCCL and custom all-reduce buffers when TP > 1) and about 1.2 GiB of peak activations (default
``max_num_batched_tokens``), and capturing CUDA graphs takes another 0.3-0.6 GiB. 2 GiB covers the sum
with a little margin; it is a constant, so a plan can be checked by hand.
"""

KV_CACHE_BLOCK_TOKENS = 16
"""vLLM's default paged-attention block: a sequence's KV is allocated in whole blocks."""

DTYPE_BYTES: dict[str, float] = {
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
}
"""Bytes per element of each storage type (weights or KV cache)."""

SERVING_DTYPES = ("float32", "float16", "bfloat16")
"""Types vLLM's ``--dtype`` accepts for the unquantized weights and activations."""

DTYPE_ALIASES = {
    "float": "float32",
    "fp32": "float32",
    "half": "float16",
    "fp16": "float16",
    "bf16": "bfloat16",
}

QUANTIZATION_BYTES: dict[str, float] = {
    "awq": 0.5 + 2.5 / 128,
    "gptq": 0.5 + 2.5 / 128,
    "fp8": 1.0,
    "mxfp4": 0.5 + 1 / 32,
}
"""Bytes per quantized parameter, scales included.

- ``awq`` / ``gptq``: 4-bit weights in groups of 128, each group with an fp16 scale and a 4-bit zero point
  (2.5 bytes / 128 weights); GPTQ's act-order index (4 bytes per input row) is below 0.1% and ignored.
- ``fp8``: one byte per weight plus a per-tensor scale (negligible).
- ``mxfp4``: OCP microscaling FP4, 4-bit values in blocks of 32 sharing one 8-bit exponent scale.

Weight-only quantization leaves the embeddings and ``lm_head`` in the serving dtype (see
:attr:`ModelArch.embedding_parameters`); a natively quantized model states its own quantized share.
"""

QUANTIZATION_ALIASES = {"awq_marlin": "awq", "gptq_marlin": "gptq"}

ONLINE_QUANTIZATION_FLAG = {"fp8": "fp8_per_tensor"}
"""``--quantization`` value that makes the pinned vLLM quantize a 16-bit checkpoint while loading.

vLLM 0.33 deprecates ``--quantization fp8`` for that (``get_quant_config`` in
``model_executor/model_loader/weight_utils.py`` maps it to ``fp8_per_tensor`` with a warning, and
``Fp8Config`` itself refuses non-FP8 checkpoints). A pre-quantized checkpoint gets no flag at all: vLLM reads
``quantization_config`` from its ``config.json`` and picks the kernel itself (``AutoAWQConfig`` /
``AutoGPTQConfig`` choose Marlin where the GPU has it); naming a method that differs from the checkpoint's
(``fp8`` on a compressed-tensors FP8 checkpoint) is refused by ``ModelConfig._verify_quantization``.
"""

QUANTIZATION_DTYPES: dict[str, tuple[str, ...]] = {
    "awq": ("float16", "bfloat16"),
    "gptq": ("float16", "bfloat16"),
    "fp8": ("bfloat16", "float16"),
    "mxfp4": ("bfloat16",),
}
"""Activation dtypes each quantization's kernels accept in the pinned release
(``get_supported_act_dtypes`` of ``AutoAWQConfig``, ``AutoGPTQConfig``, ``Fp8Config`` /
``OnlineQuantizationConfig``, ``Mxfp4Config``; ``VllmConfig._get_quantization_config`` refuses any other dtype
at start). tests/engines reads the same lists from the installed vLLM and fails when they differ."""


class InvalidPlanRequest(UserError, ValueError):
    """A request the planner cannot evaluate (bad dtype, too long a context, impossible GPU count)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """A replica layout that fits, with the numbers that prove it (GiB = 2**30 bytes)."""

    model: str  #: Hugging Face id
    gpu_type: str  #: GpuType.name
    tensor_parallel_size: int
    gpus_per_replica: int  #: ``tensor_parallel_size x pipeline_parallel_size``
    max_model_len: int
    dtype: str  #: serving dtype of the unquantized weights
    quantization: str | None  #: weight quantization actually loaded (``mxfp4`` for gpt-oss)
    kv_cache_dtype: str
    weights_gib: float  #: the whole model
    weights_gib_per_gpu: float
    kv_cache_bytes_per_token: int  #: all layers, the whole replica (replicated KV heads included)
    kv_cache_gib_per_sequence: float  #: one ``max_model_len`` sequence, the whole replica
    kv_cache_gib_per_sequence_per_gpu: float
    overhead_gib_per_gpu: float
    gpu_memory_gib: float
    gpu_memory_utilization: float
    usable_gib_per_gpu: float
    max_concurrent_sequences: int  #: full ``max_model_len`` sequences whose KV fits at once
    sliding_window_layers: int = 0  #: layers that hold only ``sliding_window_tokens`` of KV per sequence
    sliding_window_tokens: int = 0
    quantize_on_load: bool = False  #: a 16-bit checkpoint quantized while loading (``quantization: fp8``)
    load_peak_gib_per_gpu: float = 0.0  #: weights plus what loading holds on top of them, per GPU
    pipeline_parallel_size: int = 1  #: pipeline stages, one per node (1: the replica fits one node)
    parameters: int = 0  #: every parameter loaded (all experts of an MoE)
    active_parameters: int | None = None  #: parameters one token passes through (MoE), when known
    experts: int = 0  #: routed experts per MoE layer (0: dense)
    experts_per_token: int = 0
    latent_attention: bool = False  #: the KV cache holds MLA latents
    chunked_attention_layers: int = 0  #: layers that hold only ``chunked_attention_tokens`` per sequence
    chunked_attention_tokens: int = 0

    @property
    def nodes_per_replica(self) -> int:
        """Nodes one replica spans: one per pipeline stage."""
        return self.pipeline_parallel_size

    @property
    def multi_node(self) -> bool:
        return self.pipeline_parallel_size > 1

    lora_gib_per_gpu: float = 0.0  #: LoRA adapter slots vLLM preallocates (planning/lora.py), per GPU

    @property
    def quantization_flag(self) -> str | None:
        """The ``--quantization`` value vLLM needs: only for quantizing while loading (see
        :data:`ONLINE_QUANTIZATION_FLAG`); a pre-quantized checkpoint declares its own method."""
        if not (self.quantize_on_load and self.quantization):
            return None
        return ONLINE_QUANTIZATION_FLAG[self.quantization]

    @property
    def needed_gib_per_gpu(self) -> float:
        """Weights, overhead and one full sequence of KV on each GPU."""
        return (
            self.weights_gib_per_gpu
            + self.overhead_gib_per_gpu
            + self.kv_cache_gib_per_sequence_per_gpu
            + self.lora_gib_per_gpu
        )

    @property
    def kv_cache_free_gib_per_gpu(self) -> float:
        """What is left for the paged KV cache on each GPU."""
        return (
            self.usable_gib_per_gpu
            - self.weights_gib_per_gpu
            - self.overhead_gib_per_gpu
            - self.lora_gib_per_gpu
        )

    def to_status(self) -> dict[str, int | float]:
        """The ``status.plan`` block of a ModelDeployment (GiB rounded to 2 decimals)."""
        return {
            "tensorParallelSize": self.tensor_parallel_size,
            "pipelineParallelSize": self.pipeline_parallel_size,
            "nodesPerReplica": self.nodes_per_replica,
            "gpusPerReplica": self.gpus_per_replica,
            "weightsGiB": round(self.weights_gib, 2),
            "kvCacheGiBPerSequence": round(self.kv_cache_gib_per_sequence, 2),
            "maxConcurrentSequences": self.max_concurrent_sequences,
        }


def resolve_dtype(dtype: str, arch: ModelArch) -> str:
    """Canonical serving dtype; ``auto`` means the dtype the weights were published in."""
    name = dtype.strip().lower()
    name = arch.default_dtype if name == "auto" else DTYPE_ALIASES.get(name, name)
    if name not in SERVING_DTYPES:
        hint = " (FP8 weights are `quantization: fp8`)" if name.startswith("fp8") else ""
        raise InvalidPlanRequest(f"dtype {dtype!r} is not one of auto, {', '.join(SERVING_DTYPES)}{hint}")
    return name


def resolve_quantization(quantization: str | None, arch: ModelArch) -> str | None:
    """Canonical quantization; a natively quantized model is always loaded in its own format."""
    return _resolve_quantization(quantization, arch)[0]


def quantized_on_load(quantization: str | None, arch: ModelArch) -> bool:
    """Whether vLLM quantizes a 16-bit checkpoint while loading: ``fp8`` asked of a model whose checkpoint is
    not quantized (an FP8 checkpoint is a catalog entry or ``architecture.quantization: fp8``)."""
    return _resolve_quantization(quantization, arch)[1]


def _resolve_quantization(quantization: str | None, arch: ModelArch) -> tuple[str | None, bool]:
    name = None if quantization is None else quantization.strip().lower()
    name = QUANTIZATION_ALIASES.get(name, name) if name else None
    if arch.native_quantization is not None:
        if name not in (None, arch.native_quantization):
            raise InvalidPlanRequest(
                f"{arch.hf_id} ships {arch.native_quantization} weights; quantization "
                f"{quantization!r} does not apply (leave it empty)"
            )
        return arch.native_quantization, False
    if name is None:
        return None, False
    if name not in QUANTIZATION_BYTES or name == "mxfp4":
        choices = ", ".join(q for q in QUANTIZATION_BYTES if q != "mxfp4")
        raise InvalidPlanRequest(f"quantization {quantization!r} is not one of {choices} for {arch.hf_id}")
    # awq/gptq name the checkpoint's own format (nothing quantizes to them while loading); fp8 on a 16-bit
    # checkpoint is quantized while loading.
    return name, name in ONLINE_QUANTIZATION_FLAG


def check_quantization_dtype(quantization: str | None, dtype: str, arch: ModelArch) -> None:
    """Refuse a dtype the quantization's kernels do not run in (vLLM would refuse it at start)."""
    if quantization is None or dtype in QUANTIZATION_DTYPES[quantization]:
        return
    accepted = " or ".join(QUANTIZATION_DTYPES[quantization])
    raise InvalidPlanRequest(
        f"dtype {dtype} does not run {quantization} weights of {arch.hf_id}: vLLM's "
        f"{quantization} kernels take {accepted}"
    )


def load_overhead_bytes(arch: ModelArch, dtype: str, quantize_on_load: bool) -> float:
    """What loading holds on top of the final weights, for the whole replica: one decoder layer's
    parameters in 16 bits while vLLM quantizes it (0 when nothing is quantized while loading)."""
    if not quantize_on_load:
        return 0.0
    return (arch.parameters - arch.embedding_parameters) / arch.layers * DTYPE_BYTES[dtype]


def resolve_kv_cache_dtype(kv_cache_dtype: str, serving_dtype: str) -> str:
    """``auto`` stores the KV cache in the serving dtype; ``fp8`` (e4m3/e5m2) halves it against bf16."""
    name = kv_cache_dtype.strip().lower()
    name = serving_dtype if name == "auto" else DTYPE_ALIASES.get(name, name)
    if name not in DTYPE_BYTES:
        choices = ", ".join(DTYPE_BYTES)
        raise InvalidPlanRequest(f"kv cache dtype {kv_cache_dtype!r} is not one of auto, {choices}")
    return name


def weight_bytes(arch: ModelArch, dtype: str, quantization: str | None) -> float:
    """Bytes of weights actually loaded: quantized parameters at their width, the rest at ``dtype``.

    Which parameters are quantized: a natively quantized checkpoint says so itself
    (``native_quantized_parameters``); weight-only AWQ/GPTQ/FP8 quantize every linear layer and keep the
    embeddings and ``lm_head`` in the serving dtype. Norm weights are counted as quantized (< 0.01%).
    """
    if quantization is None:
        return arch.parameters * DTYPE_BYTES[dtype]
    quantized = (
        arch.native_quantized_parameters
        if arch.native_quantization
        else (arch.parameters - arch.embedding_parameters)
    )
    width = QUANTIZATION_BYTES[quantization]
    if arch.weight_block_size and arch.native_quantization == quantization:
        width += BLOCK_SCALE_BYTES / arch.weight_block_size**2
    return quantized * width + (arch.parameters - quantized) * DTYPE_BYTES[dtype]


def tensor_parallel_problem(arch: ModelArch, tp: int) -> str | None:
    """Why vLLM would refuse this tensor-parallel size for the model, or None if it accepts it.

    Attention heads must split evenly. KV heads must too, or (TP > KV heads) TP must be a multiple of them,
    in which case vLLM replicates each KV head on TP / KV heads GPUs.
    """
    if tp not in TENSOR_PARALLEL_SIZES:
        return f"tensor-parallel size {tp} is not one of {', '.join(map(str, TENSOR_PARALLEL_SIZES))}"
    if arch.attention_heads % tp:
        return f"{arch.attention_heads} attention heads of {arch.hf_id} do not split over {tp} GPUs"
    if arch.kv_heads % tp and tp % arch.kv_heads:
        return f"{arch.kv_heads} KV heads of {arch.hf_id} neither split over nor replicate onto {tp} GPUs"
    block, width = arch.weight_block_size, arch.moe_intermediate_size
    if block and width and arch.native_quantization and (width % tp or (width // tp) % block):
        # Fp8MoEMethod.create_weights (model_executor/layers/quantization/fp8.py) refuses an expert slice that
        # is not a whole number of weight blocks.
        return (
            f"experts of {arch.hf_id} ({width} wide, FP8 in {block}-wide blocks) do not split into whole "
            f"blocks over {tp} GPUs"
        )
    return None


def kv_heads_per_gpu(arch: ModelArch, tp: int) -> int:
    """KV heads each GPU stores: an even share, or one replicated head once TP exceeds the KV heads."""
    return max(1, arch.kv_heads // tp)


def kv_elements_per_layer_token_per_gpu(arch: ModelArch, tp: int) -> int:
    """Cached elements per token and layer on one GPU: the whole MLA latent (vLLM keeps it on every rank),
    or ``2 (K and V) x KV heads per GPU x head dim``."""
    if arch.latent_attention:
        return arch.kv_elements_per_layer_token
    return 2 * kv_heads_per_gpu(arch, tp) * arch.head_dim


def kv_bytes_per_token_per_gpu(arch: ModelArch, tp: int, kv_bytes: float) -> float:
    """``layers x cached elements per layer and token on one GPU x bytes`` (see
    :func:`kv_elements_per_layer_token_per_gpu`)."""
    return arch.layers * kv_elements_per_layer_token_per_gpu(arch, tp) * kv_bytes


def kv_tokens_allocated(max_model_len: int) -> int:
    """Tokens of KV one full-attention layer holds for a full sequence: whole paged-attention blocks."""
    return math.ceil(max_model_len / KV_CACHE_BLOCK_TOKENS) * KV_CACHE_BLOCK_TOKENS


def max_num_batched_tokens(gpu: GpuType) -> int:
    """vLLM's default chunked-prefill budget for its OpenAI server: 8192 on >= 70 GiB GPUs except A100."""
    large = gpu.memory_gib >= 70 and "a100" not in gpu.product.lower()
    return 8192 if large else 2048


def sliding_window_tokens_allocated(window: int, max_model_len: int, batched_tokens: int) -> int:
    """Tokens of KV a sliding-window layer holds for one sequence, as vLLM's ``SlidingWindowSpec`` reserves.

    During chunked prefill the layer keeps the last ``window - 1`` tokens plus the scheduled chunk, never
    more than ``max_model_len``, plus one block because the window need not start on a block boundary
    (so a short ``max_model_len`` costs one block more than on a full-attention layer, as in vLLM).
    """
    tokens = min(window - 1 + batched_tokens, max_model_len)
    return (math.ceil(tokens / KV_CACHE_BLOCK_TOKENS) + 1) * KV_CACHE_BLOCK_TOKENS


def chunked_attention_tokens_allocated(chunk: int, max_model_len: int, batched_tokens: int) -> int:
    """Tokens of KV a chunked-local-attention layer holds for one sequence, as vLLM's
    ``ChunkedLocalAttentionSpec.max_admission_blocks_per_request`` reserves: one chunk plus the scheduled
    tokens, never more than ``max_model_len``, in whole blocks."""
    tokens = min(chunk + batched_tokens, max_model_len)
    return math.ceil(tokens / KV_CACHE_BLOCK_TOKENS) * KV_CACHE_BLOCK_TOKENS


def kv_bytes_per_sequence_per_gpu(
    arch: ModelArch, tp: int, kv_bytes: float, max_model_len: int, batched_tokens: int
) -> float:
    """KV bytes one ``max_model_len`` sequence holds on one GPU, summed over full, sliding-window and
    chunked-attention layers."""
    per_layer_token = kv_elements_per_layer_token_per_gpu(arch, tp) * kv_bytes
    full_layers = arch.layers - arch.sliding_window_layers - arch.chunked_attention_layers
    tokens = full_layers * kv_tokens_allocated(max_model_len)
    if arch.sliding_window is not None:
        window = sliding_window_tokens_allocated(arch.sliding_window, max_model_len, batched_tokens)
        tokens += arch.sliding_window_layers * window
    if arch.attention_chunk_size is not None:
        chunk = chunked_attention_tokens_allocated(arch.attention_chunk_size, max_model_len, batched_tokens)
        tokens += arch.chunked_attention_layers * chunk
    return per_layer_token * tokens


def stage_layers(arch: ModelArch, pp: int) -> int:
    """Decoder layers on the largest pipeline stage."""
    return math.ceil(arch.layers / pp)


def stage_weight_bytes(arch: ModelArch, weights: float, dtype: str, pp: int) -> float:
    """Weights of the largest pipeline stage (the whole model at PP 1): its share of the decoder layers plus
    one embedding matrix (input embedding on the first stage, ``lm_head`` on the last)."""
    if pp == 1:
        return weights
    matrix = arch.embedding_parameters // (1 if arch.tie_word_embeddings else 2) * DTYPE_BYTES[dtype]
    decoder = weights - arch.embedding_parameters * DTYPE_BYTES[dtype]
    return decoder * stage_layers(arch, pp) / arch.layers + matrix


@dataclass(frozen=True, slots=True)
class _Budget:
    """Per-GPU bytes at one tensor-parallel (x pipeline-parallel) size."""

    tp: int
    weights: float
    weights_per_gpu: float
    kv_per_sequence_per_gpu: float
    usable: float
    overhead: float
    load_extra_per_gpu: float = 0.0
    lora_per_gpu: float = 0.0
    pp: int = 1
    stage_weights: float = 0.0  #: weights of the largest pipeline stage (pp > 1)

    @property
    def needed(self) -> float:
        return self.weights_per_gpu + self.overhead + self.kv_per_sequence_per_gpu + self.lora_per_gpu

    @property
    def load_peak(self) -> float:
        return self.weights_per_gpu + self.load_extra_per_gpu + self.overhead

    @property
    def fits(self) -> bool:
        return self.needed <= self.usable and self.load_peak <= self.usable


def _infeasible_message(arch: ModelArch, gpu: GpuType, b: _Budget, max_model_len: int, util: float) -> str:
    if b.pp > 1:
        return (
            f"{arch.hf_id} needs {b.needed / GIB:.1f} GiB per GPU on {b.pp} nodes (tensor-parallel size "
            f"{b.tp} x pipeline-parallel size {b.pp}: weights {b.weights / GIB:.1f} GiB, "
            f"{b.stage_weights / GIB:.1f} GiB on the largest stage / {b.tp} + overhead "
            f"{b.overhead / GIB:.1f} GiB + KV for one {max_model_len}-token sequence "
            f"{b.kv_per_sequence_per_gpu / GIB:.1f} GiB"
            + (f" + LoRA adapter slots {b.lora_per_gpu / GIB:.1f} GiB" if b.lora_per_gpu else "")
            + f"); {gpu.name} has {b.usable / GIB:.1f} GiB usable per GPU ({util:.2f} x "
            f"{gpu.memory_gib:.1f} GiB), and {b.pp} nodes is the widest span allowed"
        )
    if b.load_peak > b.usable and b.load_peak > b.needed:
        return (
            f"{arch.hf_id} needs {b.load_peak / GIB:.1f} GiB per GPU while loading at tensor-parallel size "
            f"{b.tp} (weights {b.weights / GIB:.1f} GiB / {b.tp} + one layer in 16 bits before quantizing "
            f"{b.load_extra_per_gpu / GIB:.1f} GiB + overhead {b.overhead / GIB:.1f} GiB); "
            f"{gpu.name} has {b.usable / GIB:.1f} GiB usable per GPU ({util:.2f} x {gpu.memory_gib:.1f} GiB)"
        )
    return (
        f"{arch.hf_id} needs {b.needed / GIB:.1f} GiB per GPU at tensor-parallel size {b.tp} "
        f"(weights {b.weights / GIB:.1f} GiB / {b.tp} + overhead {b.overhead / GIB:.1f} GiB "
        f"+ KV for one {max_model_len}-token sequence {b.kv_per_sequence_per_gpu / GIB:.1f} GiB"
        + (f" + LoRA adapter slots {b.lora_per_gpu / GIB:.1f} GiB" if b.lora_per_gpu else "")
        + "); "
        f"{gpu.name} has {b.usable / GIB:.1f} GiB usable per GPU ({util:.2f} x {gpu.memory_gib:.1f} GiB)"
    )


def _check_request(arch: ModelArch, max_model_len: int, gpu_memory_utilization: float) -> None:
    if max_model_len <= 0:
        raise InvalidPlanRequest(f"maxModelLen must be positive, got {max_model_len}")
    if max_model_len > arch.max_position_embeddings:
        raise InvalidPlanRequest(
            f"maxModelLen {max_model_len} exceeds the {arch.max_position_embeddings} "
            f"positions {arch.hf_id} supports"
        )
    if not 0 < gpu_memory_utilization <= 1:
        raise InvalidPlanRequest(f"gpuMemoryUtilization must be in (0, 1], got {gpu_memory_utilization}")


def plan(
    arch: ModelArch,
    gpu: GpuType,
    *,
    max_model_len: int,
    dtype: str = "bfloat16",
    quantization: str | None = None,
    gpu_memory_utilization: float = 0.9,
    gpu_count: int | None = None,
    kv_cache_dtype: str = "auto",
    lora_bytes_per_gpu: Callable[[int, str], float] | None = None,
    max_nodes: int = 1,
    gpus_per_node: int | None = None,
) -> Plan:
    """Choose the smallest tensor-parallel size that fits (or check ``gpu_count``) and size the KV cache.

    When no tensor-parallel size fits one node and ``max_nodes`` > 1, the replica spans nodes: tensor
    parallel over ``gpu_count`` (or every GPU of the node the model accepts: ``gpus_per_node``, else the GPU
    type's usual server) x pipeline parallel over the fewest nodes, 2 .. ``max_nodes``, that fit.

    Raises :class:`InvalidPlanRequest` (a ``ValueError``) for a request that makes no sense, and
    :class:`modelyard.errors.Infeasible` naming needed and usable GiB per GPU when nothing fits; without
    ``gpu_count`` the numbers are those of the largest tensor-parallel size the model accepts.
    ``lora_bytes_per_gpu(tp, dtype)``, when given, is what LoRA adapters take on each GPU (planning/lora.py).
    """
    _check_request(arch, max_model_len, gpu_memory_utilization)
    serving = resolve_dtype(dtype, arch)
    quant, on_load = _resolve_quantization(quantization, arch)
    check_quantization_dtype(quant, serving, arch)
    kv_dtype = resolve_kv_cache_dtype(kv_cache_dtype, serving)
    if gpu_count is not None and (problem := tensor_parallel_problem(arch, gpu_count)):
        raise InvalidPlanRequest(f"gpu count {gpu_count}: {problem}")
    if not 1 <= max_nodes <= NODES_PER_REPLICA_LIMIT:
        raise InvalidPlanRequest(f"nodes per replica must be 1 to {NODES_PER_REPLICA_LIMIT}, got {max_nodes}")
    node_gpus = gpus_per_node or gpu.gpus_per_node
    if gpu_count is not None and gpu_count > node_gpus:
        raise InvalidPlanRequest(f"gpu count {gpu_count} exceeds the {node_gpus} GPUs of one node")
    sizes = (
        [gpu_count]
        if gpu_count is not None
        else [
            tp
            for tp in TENSOR_PARALLEL_SIZES
            if tp <= node_gpus and tensor_parallel_problem(arch, tp) is None
        ]
    )
    weights = weight_bytes(arch, serving, quant)
    load_extra = load_overhead_bytes(arch, serving, on_load)
    kv_bytes, batched = DTYPE_BYTES[kv_dtype], max_num_batched_tokens(gpu)

    def budget(tp: int, pp: int) -> _Budget:
        # pipeline stages keep pp batches in flight (VllmConfig.max_concurrent_batches)
        kv = kv_bytes_per_sequence_per_gpu(arch, tp, kv_bytes, max_model_len, batched * pp)
        stage = stage_weight_bytes(arch, weights, serving, pp)
        return _Budget(
            tp=tp,
            weights=weights,
            weights_per_gpu=stage / tp,
            overhead=OVERHEAD_GIB_PER_GPU * GIB,
            kv_per_sequence_per_gpu=kv * stage_layers(arch, pp) / arch.layers,
            usable=gpu_memory_utilization * gpu.memory_mib * (1 << 20),
            load_extra_per_gpu=load_extra / tp,
            lora_per_gpu=lora_bytes_per_gpu(tp, serving) if lora_bytes_per_gpu else 0.0,
            pp=pp,
            stage_weights=stage,
        )

    budgets = [budget(tp, 1) for tp in sizes]
    chosen = next((b for b in budgets if b.fits), None)
    if chosen is None and max_nodes > 1:
        # across nodes: the node's GPUs (or gpu_count) in tensor parallel, one pipeline stage per node
        budgets = [budget(sizes[-1], pp) for pp in range(2, min(max_nodes, arch.layers) + 1)]
        chosen = next((b for b in budgets if b.fits), None)
    if chosen is None:
        raise Infeasible(_infeasible_message(arch, gpu, budgets[-1], max_model_len, gpu_memory_utilization))
    free = chosen.usable - chosen.weights_per_gpu - chosen.overhead - chosen.lora_per_gpu
    per_token_per_gpu = kv_bytes_per_token_per_gpu(arch, chosen.tp, kv_bytes)
    return Plan(
        model=arch.hf_id,
        gpu_type=gpu.name,
        tensor_parallel_size=chosen.tp,
        gpus_per_replica=chosen.tp * chosen.pp,
        max_model_len=max_model_len,
        dtype=serving,
        quantization=quant,
        kv_cache_dtype=kv_dtype,
        weights_gib=weights / GIB,
        weights_gib_per_gpu=chosen.weights_per_gpu / GIB,
        kv_cache_bytes_per_token=round(per_token_per_gpu * chosen.tp),
        kv_cache_gib_per_sequence=kv_bytes_per_sequence_per_gpu(
            arch, chosen.tp, kv_bytes, max_model_len, batched * chosen.pp
        )
        * chosen.tp
        / GIB,
        kv_cache_gib_per_sequence_per_gpu=chosen.kv_per_sequence_per_gpu / GIB,
        overhead_gib_per_gpu=chosen.overhead / GIB,
        gpu_memory_gib=gpu.memory_gib,
        gpu_memory_utilization=gpu_memory_utilization,
        usable_gib_per_gpu=chosen.usable / GIB,
        max_concurrent_sequences=math.floor(free / chosen.kv_per_sequence_per_gpu),
        sliding_window_layers=arch.sliding_window_layers,
        sliding_window_tokens=0
        if arch.sliding_window is None
        else sliding_window_tokens_allocated(arch.sliding_window, max_model_len, batched * chosen.pp),
        quantize_on_load=on_load,
        load_peak_gib_per_gpu=(chosen.weights_per_gpu + chosen.load_extra_per_gpu) / GIB,
        lora_gib_per_gpu=chosen.lora_per_gpu / GIB,
        pipeline_parallel_size=chosen.pp,
        parameters=arch.parameters,
        active_parameters=arch.active_parameters,
        experts=arch.experts,
        experts_per_token=arch.experts_per_token,
        latent_attention=arch.latent_attention,
        chunked_attention_layers=arch.chunked_attention_layers,
        chunked_attention_tokens=0
        if arch.attention_chunk_size is None
        else chunked_attention_tokens_allocated(
            arch.attention_chunk_size, max_model_len, batched * chosen.pp
        ),
    )


def format_plan_table(plan: Plan) -> str:
    """A two-column, aligned table of a plan for the CLI."""
    kv_sequence = f"{plan.kv_cache_gib_per_sequence:.2f} GiB"
    kv_sequence_per_gpu = f"{plan.kv_cache_gib_per_sequence_per_gpu:.2f} GiB per GPU"
    usable = f"{plan.gpu_memory_utilization:.2f} x {plan.gpu_memory_gib:.2f} GiB"
    rows = [
        ("model", plan.model),
        ("gpu", f"{plan.gpu_type} ({plan.gpu_memory_gib:.2f} GiB)"),
        ("tensor-parallel size", str(plan.tensor_parallel_size)),
        ("GPUs per replica", str(plan.gpus_per_replica)),
        ("dtype", plan.dtype),
        ("quantization", _quantization_row(plan)),
        ("KV cache dtype", plan.kv_cache_dtype),
        ("max model length", f"{plan.max_model_len} tokens"),
        ("weights", f"{plan.weights_gib:.2f} GiB ({plan.weights_gib_per_gpu:.2f} GiB per GPU)"),
        ("KV cache per token", f"{plan.kv_cache_bytes_per_token / 1024:g} KiB"),
        ("KV cache per sequence", f"{kv_sequence} ({kv_sequence_per_gpu})"),
        ("overhead per GPU", f"{plan.overhead_gib_per_gpu:.2f} GiB"),
        ("usable per GPU", f"{plan.usable_gib_per_gpu:.2f} GiB ({usable})"),
        ("needed per GPU", f"{plan.needed_gib_per_gpu:.2f} GiB"),
        ("free for KV cache per GPU", f"{plan.kv_cache_free_gib_per_gpu:.2f} GiB"),
        ("max concurrent sequences", str(plan.max_concurrent_sequences)),
    ]
    if plan.quantize_on_load:
        rows.insert(
            9,
            (
                "load peak",
                f"{plan.load_peak_gib_per_gpu:.2f} GiB per GPU (weights + one layer "
                f"in {plan.dtype} while quantizing)",
            ),
        )
    if plan.lora_gib_per_gpu:
        needed = rows.index(("needed per GPU", f"{plan.needed_gib_per_gpu:.2f} GiB"))
        rows.insert(needed, ("LoRA adapter slots", f"{plan.lora_gib_per_gpu:.2f} GiB per GPU"))
    if plan.sliding_window_layers:
        held = f"{plan.sliding_window_layers}, holding {plan.sliding_window_tokens} tokens per sequence"
        rows.insert(10, ("sliding-window layers", held))
    _insert_frontier_rows(plan, rows)
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def _insert_frontier_rows(plan: Plan, rows: list[tuple[str, str]]) -> None:
    """Pipeline span, experts, latent and chunked attention rows, next to the rows they qualify."""
    labels = [label for label, _ in rows]
    span = f"{plan.nodes_per_replica} ({plan.tensor_parallel_size} GPUs on each)"
    at = labels.index("GPUs per replica")
    rows[at:at] = [("pipeline-parallel size", str(plan.pipeline_parallel_size)), ("nodes per replica", span)]
    extra: list[tuple[str, str]] = []
    if plan.experts:
        active = f", {plan.active_parameters / 1e9:.1f}B active" if plan.active_parameters else ""
        extra.append(
            (
                "experts",
                f"{plan.experts} routed, {plan.experts_per_token} per token, all loaded "
                f"({plan.parameters / 1e9:.1f}B parameters{active})",
            )
        )
    if plan.latent_attention:
        extra.append(
            (
                "KV cache layout",
                "latent attention (MLA): one latent per token and layer, whole on every tensor-parallel GPU",
            )
        )
    if plan.chunked_attention_layers:
        extra.append(
            (
                "chunked-attention layers",
                f"{plan.chunked_attention_layers}, holding "
                f"{plan.chunked_attention_tokens} tokens per sequence",
            )
        )
    at = [label for label, _ in rows].index("KV cache per token")
    rows[at:at] = extra


def _quantization_row(plan: Plan) -> str:
    if plan.quantization is None:
        return "none"
    if plan.quantize_on_load:
        return f"{plan.quantization}, quantized while loading (--quantization {plan.quantization_flag})"
    return f"{plan.quantization} checkpoint"
