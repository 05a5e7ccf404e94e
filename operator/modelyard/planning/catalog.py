"""Catalogs of GPU types and well-known open models.

GPU memory is the figure the driver reports (``nvidia-smi`` / the GPU feature discovery label
``nvidia.com/gpu.memory``, in MiB), which is what an inference engine can actually allocate from.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

MIB_PER_GIB = 1024


@dataclass(frozen=True, slots=True)
class TokenizerEncoding:
    """A file a model's tokenizer loads at start beyond its weights, fetched by the download Job."""

    file: str  #: file name the engine looks up, e.g. ``o200k_base.tiktoken``
    url: str  #: where the download Job fetches it
    sha256: str  #: its digest, checked after download (the same one openai-harmony checks when loading)


TIKTOKEN_ENCODINGS: dict[str, TokenizerEncoding] = {
    "o200k_base": TokenizerEncoding(
        "o200k_base.tiktoken",
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}
"""tiktoken encodings by name. gpt-oss's harmony format loads ``o200k_base`` when the server starts and,
unless ``TIKTOKEN_ENCODINGS_BASE`` names a directory holding it, downloads it (DNS-only egress refuses)."""


@dataclass(frozen=True, slots=True)
class GpuType:
    """A GPU model as the NVIDIA GPU operator labels it."""

    name: str  #: the key users write in ``spec.gpu.type``, e.g. ``nvidia-h100-80gb``
    product: str  #: the ``nvidia.com/gpu.product`` label value
    memory_mib: int  #: the ``nvidia.com/gpu.memory`` label value (MiB, as the driver reports it)
    gpus_per_node: int = 8  #: GPUs in the usual server (HGX H100/H200/B200/A100, g5/g6/g6e.48xlarge)

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / MIB_PER_GIB


GPU_TYPES: dict[str, GpuType] = {
    g.name: g
    for g in (
        GpuType("nvidia-a10g", "NVIDIA-A10G", 23028),
        GpuType("nvidia-l4", "NVIDIA-L4", 23034),
        GpuType("nvidia-l40s", "NVIDIA-L40S", 46068),
        GpuType("nvidia-a100-40gb", "NVIDIA-A100-SXM4-40GB", 40960),
        GpuType("nvidia-a100-80gb", "NVIDIA-A100-SXM4-80GB", 81920),
        GpuType("nvidia-h100-80gb", "NVIDIA-H100-80GB-HBM3", 81559),
        GpuType("nvidia-h200", "NVIDIA-H200", 143771),
        GpuType("nvidia-b200", "NVIDIA-B200", 183359),
    )
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelArch:
    """The shape of a model, as far as memory planning needs it.

    Every number comes from the model's public ``config.json`` on Hugging Face (``num_hidden_layers``,
    ``num_attention_heads``, ``num_key_value_heads``, ``head_dim`` or ``hidden_size / num_attention_heads``,
    ``max_position_embeddings``, ``hidden_size``, ``vocab_size``, ``tie_word_embeddings``, ``sliding_window``
    and ``layer_types``); ``parameters`` is the exact count of the published safetensors, which the same
    config reproduces.

    Natively quantized checkpoints: gpt-oss ships its MoE expert weights (the ``gate_up_proj`` and
    ``down_proj`` matrices, ~91% / ~98% of the parameters) in MXFP4 and everything else (attention, router,
    embeddings, biases) in bf16, and vLLM loads them as they are. ``native_quantization`` names that format
    and ``native_quantized_parameters`` counts the parameters stored in it, so the planner charges exactly
    what is loaded (12.8 GiB for gpt-oss-20b, 60.8 GiB for gpt-oss-120b, the model card's checkpoint sizes)
    instead of ``parameters x 2`` bytes, which would overstate them 3 to 3.6 times.

    DeepSeek-V3/R1, Kimi K2 and Qwen3-235B-A22B-FP8 ship block-quantized FP8 (``quantization_config``
    ``fmt: e4m3``, ``weight_block_size: [128, 128]``): every linear layer of the decoder in one byte per
    weight plus one float32 scale per 128 x 128 block (``weight_scale_inv``); embeddings, ``lm_head``, norms
    and the MoE routers stay 16-bit. ``weight_block_size`` records the block, which also limits tensor
    parallelism: vLLM refuses a split whose per-GPU expert width is not a whole number of blocks (see
    :func:`modelyard.planning.capacity.tensor_parallel_problem`).

    Mixture of experts: ``parameters`` counts every expert (all are resident; routing picks
    ``experts_per_token`` per token), ``active_parameters`` is what one token passes through (the model card's
    "activated" figure), reported but not what memory is planned for.

    Multi-head latent attention (DeepSeek-V3/R1, Kimi K2): the cache holds one compressed latent of
    ``kv_lora_rank`` plus the shared rotary key of ``qk_rope_head_dim`` per token and layer, not K and V per
    head; vLLM keeps that latent whole on every tensor-parallel rank (``MLAAttention`` declares
    ``num_kv_heads=1`` and ``head_size = kv_lora_rank + qk_rope_head_dim`` in
    ``model_executor/layers/attention/mla_attention.py``), so it does not shrink with TP.

    Chunked local attention (Llama 4): ``chunked_attention_layers`` of the layers attend only within
    ``attention_chunk_size``-token chunks (the rest are global NoPE layers), and vLLM's
    ``ChunkedLocalAttentionSpec`` keeps at most ``chunk + max_num_batched_tokens`` tokens of them.

    Pre-quantized checkpoints of a catalog model (AWQ/GPTQ int4, FP8) are entries of their own with the same
    shape: every linear layer is stored quantized, embeddings, ``lm_head`` and norms in 16 bits, and
    ``quant_method`` is what their ``config.json`` says (``quantization_config.quant_method``), from which
    vLLM picks its kernel without a ``--quantization`` flag.
    """

    hf_id: str  #: Hugging Face repository id, e.g. ``meta-llama/Llama-3.1-8B-Instruct``
    parameters: int  #: total parameter count (all experts of an MoE, embeddings included)
    layers: int  #: ``num_hidden_layers``
    attention_heads: int  #: ``num_attention_heads``
    kv_heads: int  #: ``num_key_value_heads`` (grouped-query attention)
    head_dim: int  #: per-head dimension
    max_position_embeddings: int  #: the longest context the config declares
    default_dtype: str = "bfloat16"  #: ``torch_dtype`` of the published weights
    native_quantization: str | None = None  #: format the checkpoint ships in, e.g. ``mxfp4``
    native_quantized_parameters: int = 0  #: how many of ``parameters`` are stored in that format
    quant_method: str | None = None  #: ``quantization_config.quant_method`` of the checkpoint's config.json
    hidden_size: int | None = None  #: with ``vocab_size``: the embeddings that weight-only quantization skips
    vocab_size: int | None = None
    tie_word_embeddings: bool = False  #: ``lm_head`` shares the input embedding matrix
    experts: int = 0  #: routed experts per MoE layer (``n_routed_experts`` / ``num_experts``); 0 = dense
    experts_per_token: int = 0  #: ``num_experts_per_tok``
    active_parameters: int | None = None  #: parameters one token passes through (published "activated")
    kv_lora_rank: int | None = None  #: MLA: width of the cached KV latent
    qk_rope_head_dim: int | None = None  #: MLA: width of the cached rotary key, shared by all heads
    attention_chunk_size: int | None = None  #: chunked local attention (Llama 4): tokens per chunk
    chunked_attention_layers: int = 0  #: how many of ``layers`` use it
    weight_block_size: int | None = None  #: block-quantized FP8: the square block one scale covers
    moe_intermediate_size: int | None = None  #: width of one expert (split by tensor parallelism)
    sliding_window: int | None = None  #: window of the sliding-window attention layers, if any
    sliding_window_layers: int = 0  #: how many of ``layers`` use it (the rest attend to the full context)
    nim_image: str | None = None  #: NVIDIA NIM image repository on nvcr.io, when NVIDIA publishes one
    tokenizer_encodings: tuple[str, ...] = ()  #: :data:`TIKTOKEN_ENCODINGS` the server loads at start
    aliases: tuple[str, ...] = ()  #: short names accepted by :func:`lookup_model`

    def __post_init__(self) -> None:
        for name in (
            "parameters",
            "layers",
            "attention_heads",
            "kv_heads",
            "head_dim",
            "max_position_embeddings",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{self.hf_id}: {name} must be positive")
        if self.attention_heads % self.kv_heads:
            raise ValueError(
                f"{self.hf_id}: attention_heads ({self.attention_heads}) must be a multiple of "
                f"kv_heads ({self.kv_heads})"
            )
        if (self.native_quantization is None) != (self.native_quantized_parameters == 0):
            raise ValueError(f"{self.hf_id}: native_quantization and native_quantized_parameters go together")
        if (self.quant_method is None) != (self.native_quantization is None):
            raise ValueError(f"{self.hf_id}: native_quantization and quant_method go together")
        if not 0 <= self.native_quantized_parameters <= self.parameters:
            raise ValueError(f"{self.hf_id}: native_quantized_parameters exceeds parameters")
        if (self.sliding_window is None) != (self.sliding_window_layers == 0):
            raise ValueError(f"{self.hf_id}: sliding_window and sliding_window_layers go together")
        if not 0 <= self.sliding_window_layers <= self.layers:
            raise ValueError(f"{self.hf_id}: sliding_window_layers exceeds layers")
        if (self.kv_lora_rank is None) != (self.qk_rope_head_dim is None):
            raise ValueError(
                f"{self.hf_id}: kv_lora_rank and qk_rope_head_dim go together (latent attention)"
            )
        if (self.experts == 0) != (self.experts_per_token == 0) or self.experts_per_token > self.experts:
            raise ValueError(f"{self.hf_id}: experts_per_token must be between 1 and experts for an MoE")
        if self.active_parameters is not None and not 0 < self.active_parameters <= self.parameters:
            raise ValueError(f"{self.hf_id}: active_parameters must be positive and at most parameters")
        if (self.attention_chunk_size is None) != (self.chunked_attention_layers == 0):
            raise ValueError(f"{self.hf_id}: attention_chunk_size and chunked_attention_layers go together")
        if self.sliding_window_layers + self.chunked_attention_layers > self.layers:
            raise ValueError(f"{self.hf_id}: sliding and chunked layers exceed layers")

    @property
    def latent_attention(self) -> bool:
        """Multi-head latent attention (MLA): the cache holds a latent, not K and V per head."""
        return self.kv_lora_rank is not None

    @property
    def kv_elements_per_layer_token(self) -> int:
        """Cached elements per token and layer for the whole replica: ``kv_lora_rank + qk_rope_head_dim``
        with MLA, else ``2 x KV heads x head dim``."""
        if self.kv_lora_rank is not None and self.qk_rope_head_dim is not None:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.kv_heads * self.head_dim

    @property
    def embedding_parameters(self) -> int:
        """Input embedding plus (untied) ``lm_head``: the parameters AWQ/GPTQ/FP8 leave unquantized.

        0 when ``hidden_size`` or ``vocab_size`` is unknown (a custom architecture), which makes quantized
        weight estimates slightly optimistic.
        """
        if self.hidden_size is None or self.vocab_size is None:
            return 0
        matrices = 1 if self.tie_word_embeddings else 2
        return matrices * self.vocab_size * self.hidden_size


def _llama3(hf_id: str, *, size: str, nim: str | None, aliases: tuple[str, ...]) -> ModelArch:
    """Llama 3.x and its derivatives: 128K context, 128256-token vocabulary, 8 KV heads of dim 128."""
    shapes = {  # parameters, layers, attention heads, hidden size
        "8b": (8_030_261_248, 32, 32, 4096),
        "70b": (70_553_706_496, 80, 64, 8192),
        "405b": (405_853_388_800, 126, 128, 16384),
    }
    parameters, layers, heads, hidden = shapes[size]
    return ModelArch(
        hf_id=hf_id,
        parameters=parameters,
        layers=layers,
        attention_heads=heads,
        kv_heads=8,
        head_dim=128,
        max_position_embeddings=131072,
        hidden_size=hidden,
        vocab_size=128256,
        nim_image=nim,
        aliases=aliases,
    )


def _gpt_oss(size: str) -> ModelArch:
    """gpt-oss: 64 query heads and 8 KV heads of dim 64, hidden 2880, MoE experts in MXFP4 (see ModelArch).

    Expert matrices per layer: experts x (2880 x 5760 gate_up + 2880 x 2880 down) = experts x 24,883,200.
    ``layer_types`` alternates sliding (128-token window) and full attention, so half the layers keep only
    a window of KV per sequence.
    """
    parameters, layers, experts = {"20b": (20_914_757_184, 24, 32), "120b": (116_829_156_672, 36, 128)}[size]
    return ModelArch(
        hf_id=f"openai/gpt-oss-{size}",
        parameters=parameters,
        layers=layers,
        attention_heads=64,
        kv_heads=8,
        head_dim=64,
        max_position_embeddings=131072,
        sliding_window=128,
        sliding_window_layers=layers // 2,
        native_quantization="mxfp4",
        quant_method="mxfp4",
        native_quantized_parameters=layers * experts * 24_883_200,
        hidden_size=2880,
        vocab_size=201088,
        nim_image=f"nvcr.io/nim/openai/gpt-oss-{size}",
        aliases=(f"gpt-oss-{size}",),
        tokenizer_encodings=("o200k_base",),
    )


def _block_fp8(parameters: int, *, vocab: int, hidden: int, moe_layers: int, experts: int) -> int:
    """Parameters a block-FP8 MoE checkpoint stores in FP8: all but the untied embeddings and the routers
    (``experts x hidden`` weights plus the ``e_score_correction_bias``/no bias: counted with the router)."""
    return parameters - 2 * vocab * hidden - moe_layers * experts * (hidden + 1)


def _deepseek_v3(hf_id: str, *, aliases: tuple[str, ...]) -> ModelArch:
    """DeepSeek-V3 and R1 share ``config.json`` (deepseek-ai/DeepSeek-V3 and -R1): hidden 7168, 61 layers (the
    first 3 dense, ``first_k_dense_replace``), 128 heads, MLA with ``kv_lora_rank`` 512 and
    ``qk_rope_head_dim`` 64, 256 routed experts of ``moe_intermediate_size`` 2048 (8 per token) plus one
    shared, vocabulary 129280, 163840 positions, FP8 e4m3 in 128 x 128 blocks. 671,026,419,200 parameters
    without the multi-token-prediction layer vLLM does not load (the model card's 671B; 37B activated).
    Numbers as quoted in tenstorrent/tt-metal models/demos/deepseek_v3/reference/README_WEIGHTS.md and in
    transformers' DeepseekV3Config."""
    parameters = 671_026_419_200
    return ModelArch(
        hf_id=hf_id,
        parameters=parameters,
        layers=61,
        attention_heads=128,
        kv_heads=128,
        head_dim=192,
        max_position_embeddings=163840,
        hidden_size=7168,
        vocab_size=129280,
        experts=256,
        experts_per_token=8,
        active_parameters=37_552_297_472,
        kv_lora_rank=512,
        qk_rope_head_dim=64,
        weight_block_size=128,
        moe_intermediate_size=2048,
        native_quantization="fp8",
        quant_method="fp8",
        native_quantized_parameters=_block_fp8(
            parameters, vocab=129280, hidden=7168, moe_layers=58, experts=256
        ),
        aliases=aliases,
    )


_LLAMA4_VISION_PARAMETERS = 871_932_416
"""Llama 4's vision encoder and projector (``vision_config``: 34 layers of hidden 1408 and MLP 5632, patch 14
at 336 px, pixel-shuffle adapter to 4096, projector to 5120), identical in Scout and Maverick; vLLM loads it
with the multimodal checkpoint, so the plan charges it."""


def _llama4(size: str) -> ModelArch:
    """Llama 4 (meta-llama/Llama-4-*-17B-*E-Instruct ``text_config``): hidden 5120, 48 layers, 40 heads, 8 KV
    heads of dim 128, vocabulary 202048, one routed expert per token plus a shared one, expert MLP 8192.
    Scout: 16 experts in every layer, 10M positions. Maverick: 128 experts in every other layer
    (``interleave_moe_layer_step`` 2, dense MLP 16384 between), 1M positions. Three of every four layers
    attend within 8192-token chunks (``attention_chunk_size``; every fourth is a global NoPE layer,
    ``no_rope_layer_interval`` 4). Totals are the text model from these numbers plus the vision encoder:
    108,641,793,536 and 401,583,781,376, the published 109B and 400B (17B activated)."""
    parameters, experts, positions, active = {
        "scout": (108_641_793_536, 16, 10485760, 18_044_827_136),
        "maverick": (401_583_781_376, 128, 1048576, 18_056_623_616),
    }[size]
    name = {"scout": "Scout-17B-16E", "maverick": "Maverick-17B-128E"}[size]
    return ModelArch(
        hf_id=f"meta-llama/Llama-4-{name}-Instruct",
        parameters=parameters,
        layers=48,
        attention_heads=40,
        kv_heads=8,
        head_dim=128,
        max_position_embeddings=positions,
        hidden_size=5120,
        vocab_size=202048,
        experts=experts,
        experts_per_token=1,
        active_parameters=active,
        attention_chunk_size=8192,
        chunked_attention_layers=36,
        moe_intermediate_size=8192,
        aliases=(f"llama-4-{size}",),
    )


def quantized_checkpoint(base: ModelArch, hf_id: str, quantization: str, quant_method: str) -> ModelArch:
    """A published quantized checkpoint of ``base``: every linear layer quantized, embeddings, ``lm_head``
    and norms kept in 16 bits (norms are counted as quantized: below 0.01 %)."""
    return replace(
        base,
        hf_id=hf_id,
        native_quantization=quantization,
        quant_method=quant_method,
        native_quantized_parameters=base.parameters - base.embedding_parameters,
        nim_image=None,
        aliases=(),
    )


_BASE_MODELS: tuple[ModelArch, ...] = (
    _llama3(
        "meta-llama/Llama-3.1-8B-Instruct",
        size="8b",
        nim="nvcr.io/nim/meta/llama-3.1-8b-instruct",
        aliases=("llama-3.1-8b-instruct",),
    ),
    _llama3(
        "meta-llama/Llama-3.1-70B-Instruct",
        size="70b",
        nim="nvcr.io/nim/meta/llama-3.1-70b-instruct",
        aliases=("llama-3.1-70b-instruct",),
    ),
    _llama3(
        "meta-llama/Llama-3.1-405B-Instruct",
        size="405b",
        nim="nvcr.io/nim/meta/llama-3.1-405b-instruct",
        aliases=("llama-3.1-405b-instruct",),
    ),
    _llama3(
        "meta-llama/Llama-3.3-70B-Instruct",
        size="70b",
        nim="nvcr.io/nim/meta/llama-3.3-70b-instruct",
        aliases=("llama-3.3-70b-instruct",),
    ),
    _llama3(
        "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
        size="70b",
        nim="nvcr.io/nim/deepseek-ai/deepseek-r1-distill-llama-70b",
        aliases=("deepseek-r1-distill-llama-70b",),
    ),
    ModelArch(
        hf_id="mistralai/Mistral-7B-Instruct-v0.3",
        parameters=7_248_023_552,
        layers=32,
        attention_heads=32,
        kv_heads=8,
        head_dim=128,
        max_position_embeddings=32768,
        hidden_size=4096,
        vocab_size=32768,
        nim_image="nvcr.io/nim/mistralai/mistral-7b-instruct-v03",
        aliases=("mistral-7b-instruct-v0.3",),
    ),
    ModelArch(  # 8 experts of 3 x 4096 x 14336 per layer; all experts are resident in memory
        hf_id="mistralai/Mixtral-8x7B-Instruct-v0.1",
        parameters=46_702_792_704,
        layers=32,
        attention_heads=32,
        kv_heads=8,
        head_dim=128,
        max_position_embeddings=32768,
        hidden_size=4096,
        vocab_size=32000,
        nim_image="nvcr.io/nim/mistralai/mixtral-8x7b-instruct-v01",
        aliases=("mixtral-8x7b-instruct-v0.1", "mixtral-8x7b-instruct"),
    ),
    ModelArch(  # config: 32768 positions; 128K needs a YaRN rope_scaling override, not planned here
        hf_id="Qwen/Qwen2.5-7B-Instruct",
        parameters=7_615_616_512,
        layers=28,
        attention_heads=28,
        kv_heads=4,
        head_dim=128,
        max_position_embeddings=32768,
        hidden_size=3584,
        vocab_size=152064,
        nim_image="nvcr.io/nim/qwen/qwen-2.5-7b-instruct",
        aliases=("qwen2.5-7b-instruct",),
    ),
    ModelArch(
        hf_id="Qwen/Qwen2.5-72B-Instruct",
        parameters=72_706_203_648,
        layers=80,
        attention_heads=64,
        kv_heads=8,
        head_dim=128,
        max_position_embeddings=32768,
        hidden_size=8192,
        vocab_size=152064,
        nim_image="nvcr.io/nim/qwen/qwen-2.5-72b-instruct",
        aliases=("qwen2.5-72b-instruct",),
    ),
    _gpt_oss("20b"),
    _gpt_oss("120b"),
    _deepseek_v3("deepseek-ai/DeepSeek-V3", aliases=("deepseek-v3",)),
    _deepseek_v3("deepseek-ai/DeepSeek-R1", aliases=("deepseek-r1",)),
    # Kimi K2 (moonshotai/Kimi-K2-Instruct config.json): DeepSeek-V3's architecture with 64 heads, 384 routed
    # experts, one dense layer (first_k_dense_replace 1), vocabulary 163840 and 131072 positions; FP8 in
    # 128 x 128 blocks. 1,026,408,232,448 parameters (the published 1T, 32B activated).
    ModelArch(
        hf_id="moonshotai/Kimi-K2-Instruct",
        parameters=1_026_408_232_448,
        layers=61,
        attention_heads=64,
        kv_heads=64,
        head_dim=192,
        max_position_embeddings=131072,
        hidden_size=7168,
        vocab_size=163840,
        experts=384,
        experts_per_token=8,
        active_parameters=32_861_500_928,
        kv_lora_rank=512,
        qk_rope_head_dim=64,
        weight_block_size=128,
        moe_intermediate_size=2048,
        native_quantization="fp8",
        quant_method="fp8",
        native_quantized_parameters=_block_fp8(
            1_026_408_232_448, vocab=163840, hidden=7168, moe_layers=60, experts=384
        ),
        aliases=("kimi-k2-instruct", "kimi-k2"),
    ),
    # Qwen3 (Qwen/Qwen3-*/config.json): vocabulary 151936, 40960 positions (128K only with a YaRN override,
    # not planned), head_dim 128, q/k norms, untied embeddings. 32B: hidden 5120, 64 layers, 64 heads, 8 KV
    # heads, MLP 25600 (32.8B). 30B-A3B: hidden 2048, 48 layers, 32 heads, 4 KV heads, 128 experts of 768,
    # 8 per token (30.5B, 3.3B activated). 235B-A22B: hidden 4096, 94 layers, 64 heads, 4 KV heads,
    # 128 experts of 1536, 8 per token (235.1B, 22.2B activated). Shapes as in THUDM/slime
    # scripts/models/qwen3-*.sh.
    ModelArch(
        hf_id="Qwen/Qwen3-32B",
        parameters=32_762_123_264,
        layers=64,
        attention_heads=64,
        kv_heads=8,
        head_dim=128,
        max_position_embeddings=40960,
        hidden_size=5120,
        vocab_size=151936,
        aliases=("qwen3-32b",),
    ),
    ModelArch(
        hf_id="Qwen/Qwen3-30B-A3B",
        parameters=30_532_122_624,
        layers=48,
        attention_heads=32,
        kv_heads=4,
        head_dim=128,
        max_position_embeddings=40960,
        hidden_size=2048,
        vocab_size=151936,
        experts=128,
        experts_per_token=8,
        active_parameters=3_353_032_704,
        moe_intermediate_size=768,
        aliases=("qwen3-30b-a3b",),
    ),
    ModelArch(
        hf_id="Qwen/Qwen3-235B-A22B",
        parameters=235_093_634_560,
        layers=94,
        attention_heads=64,
        kv_heads=4,
        head_dim=128,
        max_position_embeddings=40960,
        hidden_size=4096,
        vocab_size=151936,
        experts=128,
        experts_per_token=8,
        active_parameters=22_190_763_520,
        moe_intermediate_size=1536,
        aliases=("qwen3-235b-a22b",),
    ),
    # GLM-4.5 (zai-org/GLM-4.5 config.json): hidden 5120, 92 layers (3 dense, MLP 12288), 96 heads, 8 KV heads
    # of 128 with q/k/v biases and q/k norms, 160 routed experts of 1536 (8 per token) plus one shared,
    # vocabulary 151552, 131072 positions. 352,797,829,024 parameters without the MTP layer vLLM does not
    # load (published 355B with it, 32B activated). Shapes as in THUDM/slime
    # scripts/models/glm4.5-355B-A32B.sh.
    ModelArch(
        hf_id="zai-org/GLM-4.5",
        parameters=352_797_829_024,
        layers=92,
        attention_heads=96,
        kv_heads=8,
        head_dim=128,
        max_position_embeddings=131072,
        hidden_size=5120,
        vocab_size=151552,
        experts=160,
        experts_per_token=8,
        active_parameters=33_632_266_144,
        moe_intermediate_size=1536,
        aliases=("glm-4.5",),
    ),
    _llama4("scout"),
    _llama4("maverick"),
    # Mistral Large 2 (mistralai/Mistral-Large-Instruct-2411 config.json): hidden 12288, 88 layers, 96 heads,
    # 8 KV heads of 128, MLP 28672, vocabulary 32768, 131072 positions (122.6B, the published 123B).
    ModelArch(
        hf_id="mistralai/Mistral-Large-Instruct-2411",
        parameters=122_610_069_504,
        layers=88,
        attention_heads=96,
        kv_heads=8,
        head_dim=128,
        max_position_embeddings=131072,
        hidden_size=12288,
        vocab_size=32768,
        aliases=("mistral-large-instruct-2411", "mistral-large"),
    ),
)
_BY_ID = {m.hf_id: m for m in _BASE_MODELS}

_QUANTIZED_CHECKPOINTS = (  # (base model, checkpoint, format, quant_method in its config.json)
    ("meta-llama/Llama-3.1-8B-Instruct", "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4", "awq", "awq"),
    (
        "meta-llama/Llama-3.1-70B-Instruct",
        "hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4",
        "awq",
        "awq",
    ),
    (
        "meta-llama/Llama-3.1-405B-Instruct",
        "hugging-quants/Meta-Llama-3.1-405B-Instruct-AWQ-INT4",
        "awq",
        "awq",
    ),
    (
        "meta-llama/Llama-3.1-70B-Instruct",
        "RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8",
        "fp8",
        "compressed-tensors",
    ),
    (
        "meta-llama/Llama-3.1-405B-Instruct",
        "RedHatAI/Meta-Llama-3.1-405B-Instruct-FP8",
        "fp8",
        "compressed-tensors",
    ),
)

_BLOCK_FP8_CHECKPOINTS = (
    # Qwen/Qwen3-235B-A22B-FP8: the same shape, fine-grained FP8 in 128 x 128 blocks (quant_method fp8);
    # embeddings, lm_head and the routers stay bf16.
    replace(
        _BY_ID["Qwen/Qwen3-235B-A22B"],
        hf_id="Qwen/Qwen3-235B-A22B-FP8",
        native_quantization="fp8",
        quant_method="fp8",
        weight_block_size=128,
        aliases=("qwen3-235b-a22b-fp8",),
        native_quantized_parameters=_block_fp8(
            235_093_634_560, vocab=151936, hidden=4096, moe_layers=94, experts=128
        ),
    ),
)

MODELS: dict[str, ModelArch] = {
    **_BY_ID,
    **{
        hf_id: quantized_checkpoint(_BY_ID[base], hf_id, quantization, method)
        for base, hf_id, quantization, method in _QUANTIZED_CHECKPOINTS
    },
    **{arch.hf_id: arch for arch in _BLOCK_FP8_CHECKPOINTS},
}

_NIM_REGISTRY = "nvcr.io/"


def _strip_reference(ref: str) -> str:
    """``hf://org/name@rev`` -> ``org/name``; ``ngc://nim/org/name:1.8.3`` -> ``nim/org/name``."""
    ref = ref.strip().lower()
    for scheme in ("hf://", "ngc://", "docker://"):
        if ref.startswith(scheme):
            ref = ref[len(scheme) :]
            break
    ref = ref.split("?", 1)[0].split("@", 1)[0]
    if ":" in ref.rsplit("/", 1)[-1]:  # an image or NGC tag, never part of a repository path
        ref = ref.rsplit(":", 1)[0]
    ref = ref.rstrip("/")
    return ref.removeprefix(_NIM_REGISTRY)


def _index() -> dict[str, ModelArch]:
    """Every accepted spelling, lower-cased: HF id, aliases, NIM path with and without ``nim/``."""
    index: dict[str, ModelArch] = {}
    for arch in MODELS.values():
        keys = [arch.hf_id, *arch.aliases]
        if arch.nim_image:
            path = arch.nim_image.removeprefix(_NIM_REGISTRY)  # nim/meta/llama-3.1-8b-instruct
            keys += [path, path.removeprefix("nim/"), path.rsplit("/", 1)[-1]]
        for key in keys:
            index.setdefault(key.lower(), arch)
    return index


_MODEL_INDEX = _index()


def lookup_model(ref: str) -> ModelArch | None:
    """Find a catalog model by HF id (any case), ``hf://`` source, alias, NIM image or ``ngc://`` reference.

    >>> lookup_model("ngc://nim/meta/llama-3.1-70b-instruct:1.8.3").hf_id
    'meta-llama/Llama-3.1-70B-Instruct'
    """
    key = _strip_reference(ref)
    if key in _MODEL_INDEX:
        return _MODEL_INDEX[key]
    if key.startswith("nim/"):  # a NIM repository spelled differently: try its last segment as an alias
        return _MODEL_INDEX.get(key.rsplit("/", 1)[-1])
    return None


def lookup_gpu(name: str) -> GpuType | None:
    """Find a GPU type by its ``spec.gpu.type`` name or its ``nvidia.com/gpu.product`` label (any case)."""
    wanted = name.strip().lower()
    for gpu in GPU_TYPES.values():
        if wanted in (gpu.name.lower(), gpu.product.lower()):
            return gpu
    return None
