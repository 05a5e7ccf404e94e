"""Ollama as a ModelDeployment engine: CPU serving of GGUF models for prototypes.

The ModelDeployment spec holds these as fields (``spec.ollama``, ``spec.resources``); the rules that span the
spec (which sources and settings go with ``engine: ollama``) are here too, as CEL for the API server and as a
function the spec's validator calls."""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import Field, field_validator

from .common import ApiModel, Rule

#: A CPU quantity above zero (500m, 2, 1.5).
CPU_QUANTITY = r"^([0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)m?$"
#: A memory quantity above zero (16Gi, 512Mi, 8G).
MEMORY_QUANTITY = r"^([0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)(Ki|Mi|Gi|Ti|k|M|G|T)?$"

OLLAMA_SOURCE_PREFIXES = ("ollama://", "hf://", "pvc://")
#: A FROM instruction on any line of spec.ollama.modelfile: the same regular expression for Python and the API
#: server's RE2 (whitespace spelled out: their \s differ beyond ASCII).
MODELFILE_FROM = r"(?im)^[ \t\n\f\r]*FROM[ \t\n\f\r]"

GPU_UNLESS_OLLAMA = Rule(
    "self.engine == 'ollama' || has(self.gpu)",
    "gpu: required for engines vllm and nim (only engine ollama serves on CPU)",
    ".gpu",
)
OLLAMA_SOURCE_NEEDS_OLLAMA = Rule(
    "!self.model.source.startsWith('ollama://') || self.engine == 'ollama'",
    "model.source: ollama:// sources need engine: ollama",
    ".model.source",
)
OLLAMA_SOURCES = Rule(
    "self.engine != 'ollama' || self.model.source.startsWith('ollama://') || "
    "self.model.source.startsWith('pvc://') || "
    "(self.model.source.startsWith('hf://') && self.model.source.endsWith('.gguf'))",
    "model.source: engine ollama serves ollama://NAME:TAG, hf://ORG/REPO/FILE.gguf or pvc://CLAIM[/PATH] "
    "(a GGUF file or an Ollama models directory)",
    ".model.source",
)
OLLAMA_NO_VLLM_SETTINGS = Rule(
    "self.engine != 'ollama' || (!has(self.serving) || (!has(self.serving.quantization) && "
    "(!has(self.serving.extraArgs) || size(self.serving.extraArgs) == 0) && "
    "(!has(self.serving.kvCacheDtype) || self.serving.kvCacheDtype == 'auto')))",
    "serving: quantization, kvCacheDtype and extraArgs are vLLM/NIM settings; with engine ollama the "
    "quantization is in the GGUF (ollama.quantization) and the KV cache type is ollama.kvCacheType",
    ".serving",
)
OLLAMA_SETTINGS_NEED_OLLAMA = Rule(
    "self.engine == 'ollama' || (!has(self.ollama) && !has(self.resources))",
    "ollama and resources: only for engine ollama (vLLM and NIM are sized by their GPUs)",
)
OLLAMA_ONE_REPLICA_PER_NODE = Rule(
    "self.engine != 'ollama' || !has(self.gpu) || !has(self.gpu.maxNodesPerReplica) || "
    "self.gpu.maxNodesPerReplica == 1",
    "gpu.maxNodesPerReplica: Ollama serves a model on one node",
    ".gpu",
)
OLLAMA_NO_AUTOSCALING = Rule(
    "self.engine != 'ollama' || !has(self.autoscaling)",
    "autoscaling: Ollama exports no in-flight request metric to scale on; set replicas",
    ".autoscaling",
)
RULES = (
    OLLAMA_NO_AUTOSCALING,
    GPU_UNLESS_OLLAMA,
    OLLAMA_SOURCE_NEEDS_OLLAMA,
    OLLAMA_SOURCES,
    OLLAMA_NO_VLLM_SETTINGS,
    OLLAMA_SETTINGS_NEED_OLLAMA,
    OLLAMA_ONE_REPLICA_PER_NODE,
)


class GgufQuantization(StrEnum):
    """GGUF file types (llama.cpp's quantize presets) the planner knows the size of."""

    F32 = "F32"
    F16 = "F16"
    BF16 = "BF16"
    Q8_0 = "Q8_0"
    Q6_K = "Q6_K"
    Q5_K_M = "Q5_K_M"
    Q5_K_S = "Q5_K_S"
    Q5_0 = "Q5_0"
    Q4_K_M = "Q4_K_M"
    Q4_K_S = "Q4_K_S"
    Q4_0 = "Q4_0"
    Q3_K_L = "Q3_K_L"
    Q3_K_M = "Q3_K_M"
    Q3_K_S = "Q3_K_S"
    Q2_K = "Q2_K"


class KvCacheType(StrEnum):
    """Ollama's OLLAMA_KV_CACHE_TYPE (q8_0 and q4_0 need flash attention, which modelyard then turns on)."""

    F16 = "f16"
    Q8_0 = "q8_0"
    Q4_0 = "q4_0"


class OllamaSpec(ApiModel):
    """Ollama settings (engine: ollama). The context length is serving.maxModelLen."""

    quantization: GgufQuantization | None = Field(
        default=None,
        description="The GGUF's quantization, for the memory plan: the catalog's default for an ollama:// "
        "name (Q4_K_M for most of the library's tags), the file name's for hf://.../NAME-Q8_0.gguf; set it "
        "for a tag or file that says otherwise and for pvc:// sources.",
    )
    num_parallel: int = Field(
        default=1,
        description="Requests served at once (OLLAMA_NUM_PARALLEL); each holds a full context of KV cache.",
        ge=1,
        le=64,
    )
    kv_cache_type: KvCacheType = Field(
        default=KvCacheType.F16,
        description="KV cache type (OLLAMA_KV_CACHE_TYPE): f16, or q8_0 / q4_0 (half / a quarter of the "
        "memory, with flash attention).",
    )
    gguf_file: str | None = Field(
        default=None,
        description="For pvc:// sources: the GGUF file's path inside the claim's PATH (e.g. model.gguf); "
        "unset, PATH is an Ollama models directory (blobs/ and manifests/) that already holds model.name.",
        max_length=512,
        pattern=r"^[A-Za-z0-9._-][A-Za-z0-9._/-]*\.gguf$",
    )
    modelfile: str | None = Field(
        default=None,
        description="Modelfile lines after FROM, for GGUF sources (hf:// and a pvc:// ggufFile): TEMPLATE "
        "(the chat template, in Go template syntax; a GGUF that carries tokenizer.chat_template needs none), "
        "SYSTEM, PARAMETER (e.g. PARAMETER num_predict 256). The model is created from the cached GGUF "
        "with them before the server reports ready.",
        max_length=16384,
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": f"!self.matches(r'{MODELFILE_FROM}')", "message": "modelfile: modelyard writes FROM"}
            ]
        },
    )

    @field_validator("modelfile")
    @classmethod
    def _no_from(cls, modelfile: str | None) -> str | None:
        if modelfile is not None and re.search(MODELFILE_FROM, modelfile):
            raise ValueError("modelyard writes FROM")
        return modelfile


class CpuResources(ApiModel):
    """CPU and memory of each Ollama replica (requests and limits)."""

    cpu: str | None = Field(
        default=None,
        description="CPUs (request; no limit, so the server may use idle CPUs). Default 2.",
        pattern=CPU_QUANTITY,
        max_length=32,
    )
    memory: str | None = Field(
        default=None,
        description="Memory (request = limit). The plan refuses a model whose weights, KV cache and runtime "
        "do not fit; unset, the plan's need rounded up to a whole GiB.",
        pattern=MEMORY_QUANTITY,
        max_length=32,
    )


def check_ollama(
    *,
    engine: str,
    source: str,
    has_gpu: bool,
    serving_quantization: object,
    serving_extra_args: list[str],
    serving_kv_cache_dtype: str,
    has_settings: bool,
    max_nodes: int | None,
    has_autoscaling: bool,
) -> None:
    """The rules above, offline (raises ValueError with the rule's message)."""
    if engine != "ollama":
        if not has_gpu:
            raise ValueError(GPU_UNLESS_OLLAMA.message)
        if source.startswith("ollama://"):
            raise ValueError(OLLAMA_SOURCE_NEEDS_OLLAMA.message)
        if has_settings:
            raise ValueError(OLLAMA_SETTINGS_NEED_OLLAMA.message)
        return
    if not (
        source.startswith(("ollama://", "pvc://"))
        or (source.startswith("hf://") and source.endswith(".gguf"))
    ):
        raise ValueError(OLLAMA_SOURCES.message)
    if serving_quantization is not None or serving_extra_args or serving_kv_cache_dtype != "auto":
        raise ValueError(OLLAMA_NO_VLLM_SETTINGS.message)
    if max_nodes not in (None, 1):
        raise ValueError(OLLAMA_ONE_REPLICA_PER_NODE.message)
    if has_autoscaling:
        raise ValueError(OLLAMA_NO_AUTOSCALING.message)
