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
    sliding_window: int | None = None  #: window of the sliding-window attention layers, if any
    sliding_window_layers: int = 0  #: how many of ``layers`` use it (the rest attend to the full context)
    nim_image: str | None = None  #: NVIDIA NIM image repository on nvcr.io, when NVIDIA publishes one
    tokenizer_encodings: tuple[str, ...] = ()  #: :data:`TIKTOKEN_ENCODINGS` the server loads at start
    aliases: tuple[str, ...] = ()  #: short names accepted by :func:`lookup_model`

    def __post_init__(self) -> None:
        for name in ("parameters", "layers", "attention_heads", "kv_heads", "head_dim",
                     "max_position_embeddings"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{self.hf_id}: {name} must be positive")
        if self.attention_heads % self.kv_heads:
            raise ValueError(f"{self.hf_id}: attention_heads ({self.attention_heads}) must be a multiple of "
                             f"kv_heads ({self.kv_heads})")
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
        hf_id=hf_id, parameters=parameters, layers=layers, attention_heads=heads, kv_heads=8, head_dim=128,
        max_position_embeddings=131072, hidden_size=hidden, vocab_size=128256, nim_image=nim, aliases=aliases,
    )


def _gpt_oss(size: str) -> ModelArch:
    """gpt-oss: 64 query heads and 8 KV heads of dim 64, hidden 2880, MoE experts in MXFP4 (see ModelArch).

    Expert matrices per layer: experts x (2880 x 5760 gate_up + 2880 x 2880 down) = experts x 24,883,200.
    ``layer_types`` alternates sliding (128-token window) and full attention, so half the layers keep only
    a window of KV per sequence.
    """
    parameters, layers, experts = {"20b": (20_914_757_184, 24, 32), "120b": (116_829_156_672, 36, 128)}[size]
    return ModelArch(
        hf_id=f"openai/gpt-oss-{size}", parameters=parameters, layers=layers, attention_heads=64, kv_heads=8,
        head_dim=64, max_position_embeddings=131072, sliding_window=128, sliding_window_layers=layers // 2,
        native_quantization="mxfp4", quant_method="mxfp4",
        native_quantized_parameters=layers * experts * 24_883_200, hidden_size=2880, vocab_size=201088,
        nim_image=f"nvcr.io/nim/openai/gpt-oss-{size}", aliases=(f"gpt-oss-{size}",),
        tokenizer_encodings=("o200k_base",),
    )


def quantized_checkpoint(base: ModelArch, hf_id: str, quantization: str, quant_method: str) -> ModelArch:
    """A published quantized checkpoint of ``base``: every linear layer quantized, embeddings, ``lm_head``
    and norms kept in 16 bits (norms are counted as quantized: below 0.01 %)."""
    return replace(base, hf_id=hf_id, native_quantization=quantization, quant_method=quant_method,
                   native_quantized_parameters=base.parameters - base.embedding_parameters, nim_image=None,
                   aliases=())


_BASE_MODELS: tuple[ModelArch, ...] = (
    _llama3("meta-llama/Llama-3.1-8B-Instruct", size="8b", nim="nvcr.io/nim/meta/llama-3.1-8b-instruct",
            aliases=("llama-3.1-8b-instruct",)),
    _llama3("meta-llama/Llama-3.1-70B-Instruct", size="70b",
            nim="nvcr.io/nim/meta/llama-3.1-70b-instruct", aliases=("llama-3.1-70b-instruct",)),
    _llama3("meta-llama/Llama-3.1-405B-Instruct", size="405b",
            nim="nvcr.io/nim/meta/llama-3.1-405b-instruct", aliases=("llama-3.1-405b-instruct",)),
    _llama3("meta-llama/Llama-3.3-70B-Instruct", size="70b",
            nim="nvcr.io/nim/meta/llama-3.3-70b-instruct", aliases=("llama-3.3-70b-instruct",)),
    _llama3("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", size="70b",
            nim="nvcr.io/nim/deepseek-ai/deepseek-r1-distill-llama-70b",
            aliases=("deepseek-r1-distill-llama-70b",)),
    ModelArch(
        hf_id="mistralai/Mistral-7B-Instruct-v0.3", parameters=7_248_023_552, layers=32,
        attention_heads=32, kv_heads=8, head_dim=128, max_position_embeddings=32768, hidden_size=4096,
        vocab_size=32768,
        nim_image="nvcr.io/nim/mistralai/mistral-7b-instruct-v03", aliases=("mistral-7b-instruct-v0.3",),
    ),
    ModelArch(  # 8 experts of 3 x 4096 x 14336 per layer; all experts are resident in memory
        hf_id="mistralai/Mixtral-8x7B-Instruct-v0.1", parameters=46_702_792_704, layers=32,
        attention_heads=32, kv_heads=8, head_dim=128, max_position_embeddings=32768, hidden_size=4096,
        vocab_size=32000, nim_image="nvcr.io/nim/mistralai/mixtral-8x7b-instruct-v01",
        aliases=("mixtral-8x7b-instruct-v0.1", "mixtral-8x7b-instruct"),
    ),
    ModelArch(  # config: 32768 positions; 128K needs a YaRN rope_scaling override, not planned here
        hf_id="Qwen/Qwen2.5-7B-Instruct", parameters=7_615_616_512, layers=28, attention_heads=28,
        kv_heads=4, head_dim=128, max_position_embeddings=32768, hidden_size=3584, vocab_size=152064,
        nim_image="nvcr.io/nim/qwen/qwen-2.5-7b-instruct", aliases=("qwen2.5-7b-instruct",),
    ),
    ModelArch(
        hf_id="Qwen/Qwen2.5-72B-Instruct", parameters=72_706_203_648, layers=80, attention_heads=64,
        kv_heads=8, head_dim=128, max_position_embeddings=32768, hidden_size=8192, vocab_size=152064,
        nim_image="nvcr.io/nim/qwen/qwen-2.5-72b-instruct", aliases=("qwen2.5-72b-instruct",),
    ),
    _gpt_oss("20b"),
    _gpt_oss("120b"),
)
_BY_ID = {m.hf_id: m for m in _BASE_MODELS}

_QUANTIZED_CHECKPOINTS = (  # (base model, checkpoint, format, quant_method in its config.json)
    ("meta-llama/Llama-3.1-8B-Instruct", "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4", "awq", "awq"),
    ("meta-llama/Llama-3.1-70B-Instruct", "hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4", "awq",
     "awq"),
    ("meta-llama/Llama-3.1-405B-Instruct", "hugging-quants/Meta-Llama-3.1-405B-Instruct-AWQ-INT4", "awq",
     "awq"),
    ("meta-llama/Llama-3.1-70B-Instruct", "RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8", "fp8",
     "compressed-tensors"),
    ("meta-llama/Llama-3.1-405B-Instruct", "RedHatAI/Meta-Llama-3.1-405B-Instruct-FP8", "fp8",
     "compressed-tensors"),
)

MODELS: dict[str, ModelArch] = {
    **_BY_ID,
    **{
        hf_id: quantized_checkpoint(_BY_ID[base], hf_id, quantization, method)
        for base, hf_id, quantization, method in _QUANTIZED_CHECKPOINTS
    },
}

_NIM_REGISTRY = "nvcr.io/"


def _strip_reference(ref: str) -> str:
    """``hf://org/name@rev`` -> ``org/name``; ``ngc://nim/org/name:1.8.3`` -> ``nim/org/name``."""
    ref = ref.strip().lower()
    for scheme in ("hf://", "ngc://", "docker://"):
        if ref.startswith(scheme):
            ref = ref[len(scheme):]
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
