"""LoRA adapters served on a ModelDeployment's base model, their engine limits, and the opt-in InferencePool
(Gateway API Inference Extension) of its serving pods. The ModelDeployment spec holds these as fields;
the rules that span the spec (unique names, vLLM only, classification no higher than the base's) are here
too, as CEL for the API server and as a function the spec's validator calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field, field_validator, model_validator

from .common import DNS_1035_LABEL, ApiModel, DataClassification, Rule, cel_rules

#: Where an adapter's weights come from: like the base model's sources, without ngc:// (NIM has no adapters).
ADAPTER_SOURCE = r"^(hf|s3|pvc)://[^\s]+$"
#: The name clients request for an adapter (vLLM's LoRA name, the gateway's served model): the base model
#: name's characters; it never holds "=" or "," (vLLM's name=path form splits on them) nor whitespace.
ADAPTER_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"
#: The LoRA ranks the pinned vLLM accepts for --max-lora-rank (``MaxLoRARanks`` in vllm/config/lora.py).
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
DEFAULT_LORA_RANK = 16
#: Most adapters one ModelDeployment lists (each is a download step and a --lora-modules entry).
MAX_ADAPTERS = 32
#: The endpoint picker's gRPC port in the extension's own deployments (its Helm chart's default).
DEFAULT_ENDPOINT_PICKER_PORT = 9002

_CLASS_RANK = "{" + ", ".join(f"'{c.value}': {c.rank}" for c in DataClassification) + "}"

ADAPTERS_NEED_VLLM = Rule(
    "self.engine == 'vllm' || !has(self.adapters) || size(self.adapters) == 0",
    "adapters: LoRA adapters are served by engine vllm only",
    ".adapters",
)
ADAPTER_NOT_ABOVE_BASE = Rule(
    "!has(self.adapters) || self.adapters.all(a, !has(a.dataClassification) || "
    f"{_CLASS_RANK}[a.dataClassification] <= {_CLASS_RANK}[self.dataClassification])",
    "adapters: an adapter's dataClassification may not exceed the ModelDeployment's (it runs on the same "
    "server, behind the same NetworkPolicy)",
    ".adapters",
)
ADAPTER_NOT_BASE_NAME = Rule(
    "!has(self.adapters) || self.adapters.all(a, a.name != self.model.name)",
    "adapters: an adapter's name must differ from model.name (clients choose between them by name)",
    ".adapters",
)
PVC_MODEL_PVC_ADAPTERS = Rule(
    "!has(self.adapters) || !self.model.source.startsWith('pvc://') || "
    "self.adapters.all(a, a.source.startsWith('pvc://'))",
    "adapters: a pvc:// model has no download Job, so its adapters come from pvc:// too",
    ".adapters",
)
MAX_LORAS_LE_MAX_CPU = Rule(
    "!has(self.maxLoras) || !has(self.maxCpuLoras) || self.maxLoras <= self.maxCpuLoras",
    "maxCpuLoras must be at least maxLoras",
    ".maxCpuLoras",
)
POOL_NEEDS_PICKER = Rule(
    "!self.enabled || has(self.endpointPickerRef)",
    "endpointPickerRef: required when the InferencePool is enabled",
    ".endpointPickerRef",
)


class Adapter(ApiModel):
    """A LoRA fine-tune of the base model, served by the same engine on the same GPUs under its own name."""

    name: str = Field(
        description="Name clients request for this adapter (the gateway routes it, vLLM serves it as a LoRA "
        "module), e.g. llama-8b-support. Unique within the ModelDeployment and different from model.name.",
        min_length=1,
        max_length=128,
        pattern=ADAPTER_NAME,
    )
    source: str = Field(
        description="Where the adapter's weights (adapter_config.json and adapter_model.safetensors) come "
        "from: hf://ORG/NAME, s3://BUCKET/PREFIX (with the base model's roleArn, endpointURL and region) or "
        "pvc://CLAIM[/PATH]. hf:// and s3:// adapters are downloaded by the download Job next to the base "
        "weights, with the base model's credentials.",
        max_length=512,
        pattern=ADAPTER_SOURCE,
    )
    revision: str | None = Field(
        default=None,
        description="Pinned revision (commit hash or tag) of an hf:// adapter. Unpinned adapters are "
        "flagged by the audit.",
        max_length=128,
    )
    data_classification: DataClassification | None = Field(
        default=None,
        description="The highest class of data this adapter may receive; defaults to, and may not exceed, "
        "the ModelDeployment's dataClassification (a fine-tune may have seen data that limits where it "
        "may be used).",
    )

    @property
    def scheme(self) -> str:
        return self.source.split("://", 1)[0]

    @property
    def location(self) -> str:
        return self.source.split("://", 1)[1]

    def cleared_for(self, base: DataClassification) -> DataClassification:
        """The adapter's effective classification: its own, or the base's when unset."""
        return self.data_classification or base


class LoraSpec(ApiModel):
    """The engine's LoRA limits: what vLLM preallocates on every GPU (--max-loras slots of --max-lora-rank
    for every targeted layer) and keeps in host memory."""

    model_config = cel_rules(MAX_LORAS_LE_MAX_CPU)

    max_rank: int = Field(
        default=DEFAULT_LORA_RANK,
        description="Largest adapter rank served (vLLM --max-lora-rank); an adapter of a higher rank fails "
        "to load. One of 1, 8, 16, 32, 64, 128, 256, 320, 512.",
        json_schema_extra={"enum": list(LORA_RANKS)},
    )
    max_loras: int | None = Field(
        default=None,
        description="Adapters one batch may use at once, each a preallocated GPU slot (vLLM --max-loras); "
        "unset: one per adapter listed.",
        ge=1,
        le=MAX_ADAPTERS,
    )
    max_cpu_loras: int | None = Field(
        default=None,
        description="Adapters kept in host memory (vLLM --max-cpu-loras), at least maxLoras; unset: "
        "vLLM's default (maxLoras).",
        ge=1,
        le=1024,
    )

    @field_validator("max_rank")
    @classmethod
    def _known_rank(cls, rank: int) -> int:
        if rank not in LORA_RANKS:
            raise ValueError(f"must be one of {', '.join(map(str, LORA_RANKS))}, got {rank}")
        return rank

    @model_validator(mode="after")
    def _cpu_holds_slots(self) -> LoraSpec:
        slots, cpu = self.max_loras, self.max_cpu_loras
        if slots is not None and cpu is not None and slots > cpu:
            raise ValueError(f"{MAX_LORAS_LE_MAX_CPU.message} ({self.max_cpu_loras} < {self.max_loras})")
        return self

    def slots(self, adapters: Sequence[Adapter]) -> int:
        """GPU adapter slots (--max-loras): maxLoras, else one per adapter."""
        return self.max_loras if self.max_loras is not None else max(1, len(adapters))


class EndpointPickerRef(ApiModel):
    """The endpoint picker (the Inference Extension's EPP) Service the gateway asks which pod serves a
    request."""

    name: str = Field(
        description="Name of the endpoint picker's Service in this namespace.",
        max_length=63,
        pattern=DNS_1035_LABEL,
    )
    port: int = Field(
        default=DEFAULT_ENDPOINT_PICKER_PORT,
        description="The Service port of the endpoint picker (its gRPC ext-proc port).",
        ge=1,
        le=65535,
    )


class InferencePoolSpec(ApiModel):
    """An InferencePool (inference.networking.k8s.io/v1) selecting this model's serving pods on the engine's
    port, so a Gateway API Inference Extension gateway can route to them through its endpoint picker."""

    model_config = cel_rules(POOL_NEEDS_PICKER)

    enabled: bool = Field(default=False, description="Create the InferencePool (needs its CRD installed).")
    endpoint_picker_ref: EndpointPickerRef | None = Field(
        default=None, description="The endpoint picker Service; required when enabled."
    )

    @model_validator(mode="after")
    def _picker(self) -> InferencePoolSpec:
        if self.enabled and self.endpoint_picker_ref is None:
            raise ValueError(POOL_NEEDS_PICKER.message)
        return self


class AdapterStatus(ApiModel):
    """Whether one adapter is served."""

    name: str = Field(description="The adapter's name.")
    served: bool = Field(description="True when the serving pods run with this adapter loaded.")
    reason: str = Field(default="", description="Why it is or is not served.", max_length=1024)


def adapter_statuses(adapters: Sequence[Adapter], *, served: bool, why: str) -> list[AdapterStatus]:
    """``status.adapters``: every adapter is served once the serving pods that load it at start are all
    ready (``why`` says how many), else none is (``why`` says what the server waits for)."""
    return [AdapterStatus(name=a.name, served=served, reason=why) for a in adapters]


def adapters_field() -> Any:
    """``spec.adapters``: a list keyed by name (the API server refuses two entries with one name)."""
    return Field(
        default_factory=list,
        description="LoRA adapters served on the same GPUs as the base model, each under its own name "
        "(engine vllm only). Adding or removing one rolls the serving pods.",
        max_length=MAX_ADAPTERS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


def check_adapters(
    adapters: Sequence[Adapter],
    *,
    engine: str,
    base_name: str,
    base_source: str,
    base_class: DataClassification,
) -> None:
    """The spec-wide adapter rules (the CRD's CEL says the same); raises ValueError naming the first
    broken one."""
    if adapters and engine != "vllm":
        raise ValueError(ADAPTERS_NEED_VLLM.message)
    if base_source.startswith("pvc://") and any(a.scheme != "pvc" for a in adapters):
        raise ValueError(PVC_MODEL_PVC_ADAPTERS.message)
    seen: set[str] = set()
    for adapter in adapters:
        if adapter.name in seen:
            raise ValueError(f"adapters: duplicate name {adapter.name!r}")
        seen.add(adapter.name)
        if adapter.name == base_name:
            raise ValueError(ADAPTER_NOT_BASE_NAME.message)
        if adapter.data_classification is not None and adapter.data_classification.rank > base_class.rank:
            raise ValueError(
                f"{ADAPTER_NOT_ABOVE_BASE.message}: {adapter.name} is {adapter.data_classification}, "
                f"the base {base_class}"
            )
