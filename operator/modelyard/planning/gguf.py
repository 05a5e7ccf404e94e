"""Memory plan of a GGUF model served by Ollama on CPU (or on GPUs, when spec.gpu is set).

need = weights (the GGUF's tensor bytes) + KV cache (context length x parallel requests, f16 / q8_0 / q4_0)
       + runtime overhead

- Weights: from the GGUF file's header when the file is at hand (:func:`read_gguf`: the tensors' types and
  shapes, summed as ggml stores them); for an Ollama library tag (:data:`OLLAMA_LIBRARY`) in its own
  quantization, the size the library lists for it (the GGUF it pulls); otherwise parameters x bits per weight
  of the quantization (:data:`BITS_PER_WEIGHT`), parameters from the catalog or ``spec.model.architecture``.
- KV cache: 2 (K and V) x layers x KV heads x head dim x bytes per element x context x parallel. Ollama
  allocates the whole context for every parallel slot when the model loads (num_ctx x OLLAMA_NUM_PARALLEL).
- Overhead: :data:`RUNTIME_OVERHEAD_GIB` for the server, the runner and ggml's compute buffers.

The result is checked against spec.resources.memory (the pod's limit, which Kubernetes then places only on a
node whose allocatable memory holds it) or, with spec.gpu, the GPUs' memory; a model that does not fit is
refused with the numbers, as for vLLM.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from modelyard.api.model_deployment import ModelDeploymentSpec, SourceScheme
from modelyard.api.ollama import GgufQuantization, KvCacheType
from modelyard.errors import Infeasible, UserError

from .capacity import GIB, Plan
from .catalog import GPU_TYPES, lookup_gpu, lookup_model

#: Effective bits per weight of each GGUF file type, whole file included (embeddings and output kept at
#: higher precision by the _M/_S/_L mixes). The mixes and Q6_K, Q8_0: llama.cpp's tools/quantize/quantize.cpp
#: table of file sizes for Llama-3-8B (8.03 B parameters; Q4_K_M "4.58G" = 4.58 GiB -> 4.90 bits); Q4_0,
#: Q5_0: their block layout (18 and 22 bytes per 32 weights); F16, BF16, F32 exact.
_LLAMA3_8B = 8_030_261_248
_TABLE_GIB = {"Q2_K": 2.96, "Q3_K_S": 3.41, "Q3_K_M": 3.74, "Q3_K_L": 4.03, "Q4_K_S": 4.37, "Q4_K_M": 4.58,
              "Q5_K_S": 5.21, "Q5_K_M": 5.33, "Q6_K": 6.14, "Q8_0": 7.96}  # fmt: skip
BITS_PER_WEIGHT: dict[GgufQuantization, float] = {
    **{GgufQuantization(k): gib * GIB * 8 / _LLAMA3_8B for k, gib in _TABLE_GIB.items()},
    GgufQuantization.Q4_0: 18 * 8 / 32,
    GgufQuantization.Q5_0: 22 * 8 / 32,
    GgufQuantization.F16: 16.0,
    GgufQuantization.BF16: 16.0,
    GgufQuantization.F32: 32.0,
}
#: Bytes per KV cache element (ggml's q8_0 and q4_0 blocks: 34 and 18 bytes per 32 values).
KV_BYTES: dict[KvCacheType, float] = {
    KvCacheType.F16: 2.0,
    KvCacheType.Q8_0: 34 / 32,
    KvCacheType.Q4_0: 18 / 32,
}
#: The Ollama server, its runner process and ggml's compute buffers (the graph of a 512-token batch), on top
#: of weights and KV cache.
RUNTIME_OVERHEAD_GIB = 1.0
DEFAULT_CPU = "2"
CPU_TYPE = "cpu"  #: Plan.gpu_type of a CPU plan


@dataclass(frozen=True, slots=True)
class LibraryModel:
    """An Ollama library tag: its Hugging Face model (shape from modelyard's catalog when it has it), the
    quantization the tag ships and the download size the library page shows."""

    tag: str
    hf_id: str
    parameters: int
    layers: int
    kv_heads: int
    head_dim: int
    context: int
    quantization: GgufQuantization
    library_size_gb: float  #: ollama.com/library/<name>: the tag's download size (GB), its GGUF's size


def _library() -> Iterator[LibraryModel]:
    q4 = GgufQuantization.Q4_K_M
    # (tag, hf id, size GB on ollama.com/library, shape when not in modelyard's catalog:
    #  (parameters, layers, KV heads, head dim, context) from the model's config.json)
    entries: list[tuple[str, str, float, tuple[int, int, int, int, int] | None]] = [
        ("llama3.1:8b", "meta-llama/Llama-3.1-8B-Instruct", 4.9, None),
        ("llama3.1:70b", "meta-llama/Llama-3.1-70B-Instruct", 43.0, None),
        ("llama3.3:70b", "meta-llama/Llama-3.3-70B-Instruct", 43.0, None),
        ("llama3.2:1b", "meta-llama/Llama-3.2-1B-Instruct", 1.3, (1_235_814_400, 16, 8, 64, 131072)),
        ("llama3.2:3b", "meta-llama/Llama-3.2-3B-Instruct", 2.0, (3_212_749_824, 28, 8, 128, 131072)),
        ("qwen2.5:0.5b", "Qwen/Qwen2.5-0.5B-Instruct", 0.398, (494_032_768, 24, 2, 64, 32768)),
        ("qwen2.5:7b", "Qwen/Qwen2.5-7B-Instruct", 4.7, None),
        ("qwen2.5:14b", "Qwen/Qwen2.5-14B-Instruct", 9.0, (14_770_033_664, 48, 8, 128, 32768)),
        ("qwen2.5:32b", "Qwen/Qwen2.5-32B-Instruct", 20.0, (32_763_876_352, 64, 8, 128, 32768)),
        ("qwen2.5:72b", "Qwen/Qwen2.5-72B-Instruct", 47.0, None),
        ("qwen3:4b", "Qwen/Qwen3-4B", 2.5, (4_022_468_096, 36, 8, 128, 40960)),
        ("qwen3:8b", "Qwen/Qwen3-8B", 5.2, (8_190_735_360, 36, 8, 128, 40960)),
        ("qwen3:32b", "Qwen/Qwen3-32B", 20.0, None),
        ("mistral:7b", "mistralai/Mistral-7B-Instruct-v0.3", 4.4, None),
        ("gemma2:9b", "google/gemma-2-9b-it", 5.4, (9_241_705_984, 42, 8, 256, 8192)),
        ("gemma3:12b", "google/gemma-3-12b-it", 8.1, (12_187_325_040, 48, 8, 256, 131072)),
        ("gemma3:27b", "google/gemma-3-27b-it", 17.0, (27_432_406_640, 62, 16, 128, 131072)),
        ("phi3:3.8b", "microsoft/Phi-3-mini-4k-instruct", 2.2, (3_821_079_552, 32, 32, 96, 4096)),
        ("phi4:14b", "microsoft/phi-4", 9.1, (14_659_507_200, 40, 10, 128, 16384)),
    ]
    quantization = {"llama3.2:1b": GgufQuantization.Q8_0}  # the library's other tags: Q4_K_M
    for tag, hf_id, size_gb, given in entries:
        arch = lookup_model(hf_id)
        shape = given or (
            (arch.parameters, arch.layers, arch.kv_heads, arch.head_dim, arch.max_position_embeddings)
            if arch
            else None
        )
        assert shape is not None, hf_id
        parameters, layers, kv_heads, head_dim, context = shape
        quant = quantization.get(tag, q4)
        yield LibraryModel(tag, hf_id, parameters, layers, kv_heads, head_dim, context, quant, size_gb)


OLLAMA_LIBRARY: dict[str, LibraryModel] = {m.tag: m for m in _library()}
#: Untagged names and the library's aliases resolve to these tags (ollama.com/library: the default tag).
LIBRARY_ALIASES = {
    "llama3.1": "llama3.1:8b",
    "llama3.3": "llama3.3:70b",
    "llama3.2": "llama3.2:3b",
    "qwen2.5": "qwen2.5:7b",
    "qwen3": "qwen3:8b",
    "mistral": "mistral:7b",
    "gemma2": "gemma2:9b",
    "phi3": "phi3:3.8b",
    "phi3:mini": "phi3:3.8b",
    "phi4": "phi4:14b",
}


def lookup_library(name: str) -> LibraryModel | None:
    """An Ollama library tag (``qwen2.5:7b``; ``:latest`` and untagged names resolve to the default tag)."""
    name = name.removeprefix("ollama://").lower().removesuffix(":latest")
    name = LIBRARY_ALIASES.get(name, name)
    return OLLAMA_LIBRARY.get(name)


# --- the GGUF header -----------------------------------------------------------------------------------
GGUF_MAGIC = b"GGUF"
#: ggml_type -> (block size in values, bytes per block), for the types GGUF files carry (ggml.c type_traits).
GGML_TYPES: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110),
    22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56),
    30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17),
}  # fmt: skip
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True, slots=True)
class GgufInfo:
    """What the planner needs from a GGUF file's header."""

    architecture: str
    tensor_bytes: int  #: every tensor, as stored
    tensors: int
    metadata: dict[str, object]

    def key(self, name: str) -> object:
        return self.metadata.get(f"{self.architecture}.{name}")


def _read(handle: BinaryIO, fmt: str) -> object:
    size = struct.calcsize("<" + fmt)
    data = handle.read(size)
    if len(data) != size:
        raise ValueError("truncated GGUF header")
    return struct.unpack("<" + fmt, data)[0]


def _string(handle: BinaryIO) -> str:
    length = int(_read(handle, "Q"))  # type: ignore[call-overload]
    return handle.read(length).decode("utf-8", errors="replace")


def _value(handle: BinaryIO, kind: int) -> object:
    if kind == _STRING:
        return _string(handle)
    if kind == _ARRAY:
        item, count = int(_read(handle, "I")), int(_read(handle, "Q"))  # type: ignore[call-overload]
        return [_value(handle, item) for _ in range(count)]
    if kind not in _SCALARS:
        raise ValueError(f"unknown GGUF value type {kind}")
    return _read(handle, _SCALARS[kind])


def read_gguf(path: Path) -> GgufInfo:
    """Parse a GGUF (v2/v3) header: metadata and each tensor's type and shape; sum the tensors' bytes."""
    with path.open("rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise ValueError(f"{path}: not a GGUF file")
        version = int(_read(handle, "I"))  # type: ignore[call-overload]
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is not supported")
        tensors, entries = int(_read(handle, "Q")), int(_read(handle, "Q"))  # type: ignore[call-overload]
        metadata: dict[str, object] = {}
        for _ in range(entries):
            key = _string(handle)
            metadata[key] = _value(handle, int(_read(handle, "I")))  # type: ignore[call-overload]
        total = 0
        for _ in range(tensors):
            _string(handle)
            dims = int(_read(handle, "I"))  # type: ignore[call-overload]
            elements = math.prod(int(_read(handle, "Q")) for _ in range(dims))  # type: ignore[call-overload]
            ggml_type = int(_read(handle, "I"))  # type: ignore[call-overload]
            _read(handle, "Q")  # offset
            if ggml_type not in GGML_TYPES:
                raise ValueError(f"{path}: unknown ggml tensor type {ggml_type}")
            block, size = GGML_TYPES[ggml_type]
            total += elements // block * size
    return GgufInfo(str(metadata.get("general.architecture", "")), total, tensors, metadata)


# --- the plan ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OllamaPlan:
    """An Ollama replica's memory, with the numbers that prove it fits (GiB = 2**30 bytes)."""

    model: str  #: the library tag, Hugging Face id or served name
    quantization: str
    parameters: int
    context_length: int
    num_parallel: int
    kv_cache_type: str
    weights_gib: float
    kv_cache_gib_per_sequence: float
    overhead_gib: float
    memory_gib: float  #: what the replica may use: spec.resources.memory, the GPUs' memory, or the need
    memory_source: str  #: where memory_gib comes from
    memory_request: str  #: the pod's memory request and limit
    cpu: str
    gpu_type: str = CPU_TYPE
    gpu_count: int = 0

    @property
    def kv_cache_gib(self) -> float:
        return self.kv_cache_gib_per_sequence * self.num_parallel

    @property
    def needed_gib(self) -> float:
        return self.weights_gib + self.kv_cache_gib + self.overhead_gib

    def to_plan(self) -> Plan:
        """The plan in the shape status.plan and the controller use (no tensor parallelism; GPUs 0 on CPU)."""
        return Plan(
            model=self.model,
            gpu_type=self.gpu_type,
            tensor_parallel_size=1,
            gpus_per_replica=self.gpu_count,
            max_model_len=self.context_length,
            dtype=self.quantization,
            quantization=self.quantization,
            kv_cache_dtype=self.kv_cache_type,
            weights_gib=self.weights_gib,
            weights_gib_per_gpu=self.weights_gib,
            kv_cache_bytes_per_token=round(self.kv_cache_gib_per_sequence * GIB / self.context_length),
            kv_cache_gib_per_sequence=self.kv_cache_gib_per_sequence,
            kv_cache_gib_per_sequence_per_gpu=self.kv_cache_gib_per_sequence,
            overhead_gib_per_gpu=self.overhead_gib,
            gpu_memory_gib=self.memory_gib,
            gpu_memory_utilization=1.0,
            usable_gib_per_gpu=self.memory_gib,
            max_concurrent_sequences=self.num_parallel,
            parameters=self.parameters,
        )


_QUANT_IN_NAME = re.compile(
    r"(?i)(?<![A-Za-z0-9])("
    + "|".join(sorted((q.value for q in GgufQuantization), key=len, reverse=True))
    + r")"
)


def quantization_in_name(name: str) -> GgufQuantization | None:
    """The quantization a GGUF file name says (``Qwen2.5-7B-Instruct-Q4_K_M.gguf`` -> Q4_K_M)."""
    match = _QUANT_IN_NAME.search(name.rsplit("/", 1)[-1])
    return GgufQuantization(match.group(1).upper()) if match else None


def parse_quantity_gib(quantity: str) -> float:
    """A Kubernetes memory quantity in GiB (16Gi -> 16, 8G -> 7.45)."""
    units = {
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "k": 10**3,
        "M": 10**6,
        "G": 10**9,
        "T": 10**12,
    }
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", quantity)
    if match is None or (match.group(2) and match.group(2) not in units):
        raise UserError(f"spec.resources.memory: {quantity!r} is not a memory quantity")
    return float(match.group(1)) * units.get(match.group(2), 1) / GIB


def plan_ollama(spec: ModelDeploymentSpec, gguf: GgufInfo | None = None) -> OllamaPlan:
    """Plan an ``engine: ollama`` spec or raise :class:`UserError` / :class:`Infeasible` (with the numbers).
    ``gguf``: the model file's header, when it is at hand (its tensor bytes replace the estimate)."""
    settings = spec.ollama
    kv_type = settings.kv_cache_type if settings else KvCacheType.F16
    parallel = settings.num_parallel if settings else 1
    context = spec.serving.max_model_len
    model = spec.model
    # an ollama:// tag, or a GGUF of a library model served under the tag's name (model.name: qwen2.5:7b)
    library = lookup_library(model.location if model.scheme is SourceScheme.OLLAMA else model.name)
    quant = (settings.quantization if settings else None) or (
        quantization_in_name(model.location) if model.scheme is SourceScheme.HF else None
    )
    if library is not None:
        quant = quant or library.quantization
        name, parameters, layers, kv_heads, head_dim = (
            library.tag, library.parameters, library.layers, library.kv_heads, library.head_dim
        )  # fmt: skip
    elif model.architecture is not None:
        shape = model.architecture
        name, parameters, layers, kv_heads, head_dim = (
            model.name, shape.parameters, shape.layers, shape.kv_heads, shape.head_dim
        )  # fmt: skip
    else:
        known = ", ".join(sorted(OLLAMA_LIBRARY))
        raise UserError(
            f"spec.model.source: {model.source} is not in the Ollama library catalog; set "
            f"spec.model.architecture (and spec.ollama.quantization) for it (catalog: {known})"
        )
    if gguf is not None:
        weights = gguf.tensor_bytes / GIB
        quant = quant or GgufQuantization.F16
    elif quant is None:
        raise UserError(
            f"spec.ollama.quantization: say which GGUF type {model.source} is (e.g. Q4_K_M): the planner "
            "sizes its weights from it"
        )
    elif library is not None and quant is library.quantization:
        weights = library.library_size_gb * 1e9 / GIB  # the tag's GGUF, as the library lists its size
    else:
        weights = parameters * BITS_PER_WEIGHT[quant] / 8 / GIB
    kv_per_sequence = 2 * layers * kv_heads * head_dim * KV_BYTES[kv_type] * context / GIB
    need = weights + kv_per_sequence * parallel + RUNTIME_OVERHEAD_GIB
    resources = spec.resources
    cpu = (resources.cpu if resources else None) or DEFAULT_CPU
    gpu_type, gpu_count = CPU_TYPE, 0
    if spec.gpu is not None:
        gpu = lookup_gpu(spec.gpu.type)
        if gpu is None:
            raise UserError(
                f"spec.gpu.type: unknown GPU type {spec.gpu.type!r} (known: {', '.join(GPU_TYPES)})"
            )
        gpu_type, gpu_count = gpu.name, spec.gpu.count or 1
        memory, source = gpu.memory_gib * gpu_count, f"{gpu_count} x {gpu.name}"
    elif resources is not None and resources.memory is not None:
        memory, source = parse_quantity_gib(resources.memory), resources.memory
    else:
        memory, source = need, "plan"
    result = OllamaPlan(
        model=name,
        quantization=quant.value,
        parameters=parameters,
        context_length=context,
        num_parallel=parallel,
        kv_cache_type=kv_type.value,
        weights_gib=weights,
        kv_cache_gib_per_sequence=kv_per_sequence,
        overhead_gib=RUNTIME_OVERHEAD_GIB,
        memory_gib=memory,
        memory_source=source,
        memory_request=(resources.memory if resources and resources.memory else f"{math.ceil(need)}Gi"),
        cpu=cpu,
        gpu_type=gpu_type,
        gpu_count=gpu_count,
    )
    if need > memory:
        raise Infeasible(
            f"{name} ({quant.value}) needs {need:.1f} GiB: weights {weights:.1f} + KV cache "
            f"{kv_per_sequence * parallel:.1f} ({parallel} x {context} tokens, {kv_type.value}) + runtime "
            f"{RUNTIME_OVERHEAD_GIB:.1f}; {source} holds {memory:.1f} GiB. Use a smaller model or "
            "quantization, a shorter serving.maxModelLen, fewer ollama.numParallel, or more memory"
        )
    return result


def format_ollama_plan(plan: OllamaPlan) -> str:
    """``modelyard plan`` output for an Ollama model."""
    rows = [
        ("model", f"{plan.model} ({_count(plan.parameters)} parameters)"),
        ("engine", "ollama" + ("" if plan.gpu_count else " (CPU)")),
        ("quantization", plan.quantization),
        ("weights", _size(plan.weights_gib)),
        (
            "KV cache",
            f"{_size(plan.kv_cache_gib)} ({plan.num_parallel} x {plan.context_length} tokens, "
            f"{plan.kv_cache_type}; {_size(plan.kv_cache_gib_per_sequence)} per request)",
        ),
        ("runtime overhead", f"{plan.overhead_gib:.2f} GiB"),
        ("needs", _size(plan.needed_gib)),
        ("memory", f"{plan.memory_gib:.2f} GiB ({plan.memory_source})"),
        ("pod resources", f"cpu {plan.cpu}, memory {plan.memory_request}"),
    ]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)


def _count(parameters: int) -> str:
    return f"{parameters / 1e9:.2f} B" if parameters >= 10**8 else f"{parameters / 1e6:.2f} M"


def _size(gib: float) -> str:
    return f"{gib:.2f} GiB" if gib >= 0.1 else f"{gib * 1024:.2f} MiB"
