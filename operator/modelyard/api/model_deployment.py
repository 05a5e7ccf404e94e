"""ModelDeployment: a self-hosted model served by vLLM or NVIDIA NIM on GPUs."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, field_validator, model_validator

from .adapters import (
    ADAPTER_NOT_ABOVE_BASE,
    ADAPTER_NOT_BASE_NAME,
    ADAPTERS_NEED_VLLM,
    PVC_MODEL_PVC_ADAPTERS,
    Adapter,
    AdapterStatus,
    InferencePoolSpec,
    LoraSpec,
    adapters_field,
    check_adapters,
)
from .common import (
    AGE_COLUMN,
    DNS_1035_LABEL,
    DNS_SUBDOMAIN,
    ROLE_ARN,
    ApiModel,
    Condition,
    DataClassification,
    Finding,
    LabelKey,
    LabelValue,
    Resource,
    Rule,
    SecretKeyRef,
    cel_rules,
    label_map,
)
from .ollama import RULES as OLLAMA_RULES
from .ollama import CpuResources, OllamaSpec, check_ollama

#: A storage quantity above zero (a claim of 0 is refused by Kubernetes): some digit is not 0.
QUANTITY = r"^([0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"
MODEL_SOURCE = r"^(hf|s3|pvc|ngc|ollama)://[^\s]+$"
#: A TCP port, 0-65535.
PORT = r"([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_H16 = r"[0-9A-Fa-f]{1,4}"
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_LS32 = rf"({_H16}:{_H16}|({_OCTET}\.){{3}}{_OCTET})"
#: An IPv6 address as RFC 3986 writes one (no zone): what Python's ipaddress accepts, in a regular expression
#: the API server (RE2) evaluates too.
_IPV6_FORMS = [
    rf"({_H16}:){{6}}{_LS32}",
    rf"::({_H16}:){{5}}{_LS32}",
    rf"({_H16})?::({_H16}:){{4}}{_LS32}",
    rf"(({_H16}:){{0,1}}{_H16})?::({_H16}:){{3}}{_LS32}",
    rf"(({_H16}:){{0,2}}{_H16})?::({_H16}:){{2}}{_LS32}",
    rf"(({_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}",
    rf"(({_H16}:){{0,4}}{_H16})?::{_LS32}",
    rf"(({_H16}:){{0,5}}{_H16})?::{_H16}",
    rf"(({_H16}:){{0,6}}{_H16})?::",
]
IPV6 = "(" + "|".join(_IPV6_FORMS) + ")"
#: An S3-compatible endpoint: scheme, host (DNS name, IPv4 or bracketed IPv6) and optional port, no path.
ENDPOINT_URL = rf"^https?://([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[{IPV6}\])(:{PORT})?/?$"

REPLICAS_XOR_AUTOSCALING = Rule(
    "!(has(self.replicas) && has(self.autoscaling))",
    "replicas and autoscaling are exclusive: set one of them",
    ".autoscaling",
)
NGC_NEEDS_NIM = Rule(
    "!self.model.source.startsWith('ngc://') || self.engine == 'nim'",
    "model.source: ngc:// sources need engine: nim",
    ".model.source",
)
NIM_NOT_HF = Rule(
    "self.engine != 'nim' || !self.model.source.startsWith('hf://')",
    "model.source: NIM serves ngc://, s3:// or pvc:// sources, not hf://",
    ".model.source",
)
S3_ENDPOINT_NEEDS_S3 = Rule(
    "(!has(self.endpointURL) && !has(self.region)) || self.source.startsWith('s3://')",
    "endpointURL and region: only for s3:// sources",
)
TOLERATION_KEY_OR_EXISTS = Rule(
    "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
    "operator: must be Exists when key is empty (a toleration of every taint)",
    ".operator",
)
TOLERATION_EXISTS_NO_VALUE = Rule(
    "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
    "value: must be empty when operator is Exists",
    ".value",
)
TOLERATION_SECONDS_NO_EXECUTE = Rule(
    "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
    "tolerationSeconds: only with effect NoExecute",
    ".tolerationSeconds",
)
PEER_NEEDS_SELECTOR = Rule(
    "has(self.namespaceSelector) || has(self.podSelector)",
    "set namespaceSelector, podSelector or both (podSelector: {} allows every pod of this namespace)",
)
MIN_LE_MAX = Rule(
    "!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",
    "minReplicas must not exceed maxReplicas",
    ".minReplicas",
)


class Engine(StrEnum):
    VLLM = "vllm"
    NIM = "nim"
    OLLAMA = "ollama"


class Dtype(StrEnum):
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"
    FLOAT32 = "float32"


class Quantization(StrEnum):
    AWQ = "awq"
    GPTQ = "gptq"
    FP8 = "fp8"
    MXFP4 = "mxfp4"


class KvCacheDtype(StrEnum):
    AUTO = "auto"
    FP8 = "fp8"


class SourceScheme(StrEnum):
    HF = "hf"
    S3 = "s3"
    PVC = "pvc"
    NGC = "ngc"
    OLLAMA = "ollama"


MAX_NODES_PER_REPLICA = 4
"""The widest span the planner uses unless spec.gpu.maxNodesPerReplica says otherwise: beyond four nodes the
pipeline's bubbles and the group's failure domain (one lost node stops the whole replica) outweigh the
capacity."""
NODES_PER_REPLICA_LIMIT = 16
"""The most nodes one replica may span at all (a LeaderWorkerSet group of 16 pods)."""


class ModelArchitecture(ApiModel):
    """Shape of a model not in the built-in catalog, from its config.json."""

    parameters: int = Field(description="Total parameter count, e.g. 8030261248.", ge=1)
    layers: int = Field(description="num_hidden_layers.", ge=1)
    attention_heads: int = Field(description="num_attention_heads.", ge=1)
    kv_heads: int = Field(description="num_key_value_heads (equal to attentionHeads without GQA).", ge=1)
    head_dim: int = Field(description="Dimension of one attention head.", ge=1)
    max_position_embeddings: int | None = Field(
        default=None, description="Longest context the model supports.", ge=1
    )
    quantization: Quantization | None = Field(
        default=None,
        description="Format the checkpoint is stored in, as its config.json's quantization_config says "
        "(awq, gptq, fp8 or mxfp4); unset for a 16-bit checkpoint. vLLM loads it as stored, with no "
        "--quantization flag.",
    )
    experts: int | None = Field(
        default=None,
        description="Mixture of experts: routed experts per MoE layer (n_routed_experts, num_experts or "
        "num_local_experts). All of them are loaded: parameters counts every expert.",
        ge=1,
    )
    experts_per_token: int | None = Field(
        default=None,
        description="Mixture of experts: experts each token is routed to (num_experts_per_tok).",
        ge=1,
    )
    active_parameters: int | None = Field(
        default=None,
        description="Mixture of experts: parameters one token passes through (the model card's activated "
        "count); reported in the plan, memory is planned for every parameter.",
        ge=1,
    )
    kv_lora_rank: int | None = Field(
        default=None,
        description="Multi-head latent attention (MLA, DeepSeek-V3 style): kv_lora_rank. The KV cache then "
        "holds layers x (kvLoraRank + qkRopeHeadDim) elements per token, the same on every GPU of the "
        "tensor-parallel group, instead of 2 x kvHeads x headDim. Set with qkRopeHeadDim.",
        ge=1,
    )
    qk_rope_head_dim: int | None = Field(
        default=None, description="Multi-head latent attention: qk_rope_head_dim (set with kvLoraRank).", ge=1
    )
    attention_chunk_size: int | None = Field(
        default=None,
        description="Chunked local attention (Llama 4): attention_chunk_size; chunkedAttentionLayers of the "
        "layers hold at most one chunk plus the scheduled tokens of KV per sequence.",
        ge=1,
    )
    chunked_attention_layers: int | None = Field(
        default=None,
        description="How many layers use chunked local attention (set with attentionChunkSize).",
        ge=1,
    )


class ModelSpec(ApiModel):
    """Which model to serve and where its weights come from."""

    model_config = cel_rules(S3_ENDPOINT_NEEDS_S3)

    name: str = Field(
        description="Name clients request (vLLM --served-model-name), e.g. llama-3.1-8b-instruct.",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$",
    )
    source: str = Field(
        description=(
            "Where the weights come from: hf://ORG/NAME (Hugging Face), s3://BUCKET/PREFIX (through the "
            "pod's IRSA identity), ngc://nim/ORG/NAME[:TAG] (NVIDIA NGC, for NIM), ollama://NAME:TAG (the "
            "Ollama library, for engine ollama; hf://ORG/REPO/FILE.gguf is a GGUF file for it) or "
            "pvc://CLAIM[/PATH] (an existing claim, for air-gapped clusters)."
        ),
        max_length=512,
        pattern=MODEL_SOURCE,
    )
    revision: str | None = Field(
        default=None,
        description="Pinned revision (commit hash or tag). Unpinned models are flagged by the audit.",
        max_length=128,
    )
    credentials_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the Hugging Face or NGC token. Never copied."
    )
    architecture: ModelArchitecture | None = Field(
        default=None, description="Model shape for the capacity plan; known models come from the catalog."
    )
    role_arn: str | None = Field(
        default=None,
        description="For s3:// sources: the IAM role the download Job assumes with its pod's ServiceAccount "
        "token (audience sts.amazonaws.com, AssumeRoleWithWebIdentity), wired into the pod as the EKS pod "
        "identity webhook would (IRSA), so it works on any cluster whose issuer the role trusts; also "
        "annotated on the model's ServiceAccount.",
        max_length=2048,
        pattern=ROLE_ARN,
    )
    endpoint_url: str | None = Field(
        default=None,
        alias="endpointURL",
        description="For s3:// sources on an S3-compatible store (MinIO, Ceph RGW, on-premises S3): its URL, "
        "e.g. https://minio.storage.svc:9000. The download Job's AWS CLI sends S3 and STS calls there "
        "(AWS_ENDPOINT_URL), and its NetworkPolicy opens only this port (443 or 80 by scheme when none "
        "is given). Unset: AWS S3 itself, over HTTPS.",
        max_length=512,
        pattern=ENDPOINT_URL,
    )
    region: str | None = Field(
        default=None,
        description="For s3:// sources: the region requests are signed for (AWS_REGION), e.g. eu-central-1, "
        "or the region an S3-compatible store is configured with (MinIO's default is us-east-1).",
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$",
    )

    @model_validator(mode="after")
    def _s3_only(self) -> ModelSpec:
        if (self.endpoint_url is not None or self.region is not None) and self.scheme is not SourceScheme.S3:
            raise ValueError(S3_ENDPOINT_NEEDS_S3.message)
        if self.endpoint_url is not None:
            try:  # the pattern says the same (ports up to 65535, IPv6 in brackets): a second opinion
                _ = urlsplit(self.endpoint_url).port
            except ValueError as exc:
                raise ValueError(f"endpointURL: {exc}") from None
        return self

    @property
    def scheme(self) -> SourceScheme:
        return SourceScheme(self.source.split("://", 1)[0])

    @property
    def location(self) -> str:
        """The source without its scheme, e.g. meta-llama/Llama-3.1-8B-Instruct."""
        return self.source.split("://", 1)[1]


class GpuSpec(ApiModel):
    """The GPUs each replica runs on."""

    type: str = Field(
        description="GPU type, e.g. nvidia-h100-80gb; selects nodes by their nvidia.com/gpu.product label.",
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9-]*$",
    )
    count: int | None = Field(
        default=None,
        description="GPUs per replica (the tensor-parallel size). Leave unset to let the planner choose.",
        json_schema_extra={"enum": [1, 2, 4, 8]},
    )

    max_nodes_per_replica: int | None = Field(
        default=None,
        description=f"Most nodes one replica may span (default {MAX_NODES_PER_REPLICA}, at most "
        f"{NODES_PER_REPLICA_LIMIT}). A model that fits no node is planned tensor-parallel over each node's "
        "GPUs (count, or the GPU type's 8) x pipeline-parallel over the fewest nodes that fit, and served "
        "by a LeaderWorkerSet; 1 keeps every replica on one node.",
        ge=1,
        le=NODES_PER_REPLICA_LIMIT,
    )

    @field_validator("count")
    @classmethod
    def _count_is_tp_size(cls, count: int | None) -> int | None:
        if count is not None and count not in (1, 2, 4, 8):
            raise ValueError(f"must be 1, 2, 4 or 8, got {count}")
        return count


class ServingSpec(ApiModel):
    """Engine settings that decide memory use."""

    max_model_len: int = Field(
        default=8192, description="Longest sequence (prompt + output) in tokens.", ge=128, le=1048576
    )
    dtype: Dtype = Field(default=Dtype.BFLOAT16, description="Dtype of weights and activations.")
    quantization: Quantization | None = Field(
        default=None,
        description="Weight quantization. awq or gptq: the source is an AWQ/GPTQ int4 checkpoint of the "
        "model. fp8: a 16-bit checkpoint that vLLM quantizes to FP8 while loading (a pre-quantized FP8 "
        "checkpoint is a catalog entry or architecture.quantization: fp8 and needs nothing here). A "
        "checkpoint that is already quantized (gpt-oss's mxfp4, the catalog's AWQ/GPTQ/FP8 entries) is "
        "always loaded as stored.",
    )
    kv_cache_dtype: KvCacheDtype = Field(
        default=KvCacheDtype.AUTO, description="KV-cache dtype: auto (as dtype) or fp8."
    )
    gpu_memory_utilization: float = Field(
        default=0.9, description="Fraction of each GPU's memory the engine may use.", ge=0.5, le=0.98
    )
    extra_args: list[str] = Field(
        default_factory=list,
        description="Extra engine arguments, appended as given.",
        max_length=64,
    )


class Autoscaling(ApiModel):
    """Horizontal autoscaling on the engine's in-flight requests (needs a Prometheus metrics adapter)."""

    model_config = cel_rules(MIN_LE_MAX)

    min_replicas: int = Field(default=1, description="Fewest replicas.", ge=1, le=1000)
    max_replicas: int = Field(description="Most replicas.", ge=1, le=1000)
    target_in_flight_requests: int = Field(
        default=16, description="Average in-flight requests per replica to aim for.", ge=1, le=100000
    )

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"{MIN_LE_MAX.message} ({self.min_replicas} > {self.max_replicas})")
        return self


class AccessMode(StrEnum):
    READ_WRITE_ONCE = "ReadWriteOnce"
    READ_WRITE_MANY = "ReadWriteMany"


class CacheSpec(ApiModel):
    """The PersistentVolumeClaim holding the weights, downloaded once and shared by every replica."""

    storage_class_name: str | None = Field(
        default=None,
        description="StorageClass of the cache claim; the cluster default when unset.",
        max_length=253,
        pattern=DNS_SUBDOMAIN,
    )
    size: str | None = Field(
        default=None,
        description="Claim size as a quantity (e.g. 200Gi); from the plan when unset.",
        pattern=QUANTITY,
    )
    access_mode: AccessMode | None = Field(
        default=None,
        description="ReadWriteOnce or ReadWriteMany; unset means ReadWriteMany when more than one replica "
        "may run (replicas span nodes), else ReadWriteOnce.",
    )


class Toleration(ApiModel):
    """A Kubernetes toleration, checked as Kubernetes checks it (the download Job and the Deployment carry
    it)."""

    model_config = cel_rules(
        TOLERATION_KEY_OR_EXISTS, TOLERATION_EXISTS_NO_VALUE, TOLERATION_SECONDS_NO_EXECUTE
    )

    key: LabelKey | None = Field(
        default=None, description="Taint key; empty with Exists tolerates every taint."
    )
    operator: str | None = Field(
        default=None,
        description="Exists or Equal (the default).",
        json_schema_extra={"enum": ["Exists", "Equal"]},
    )
    value: LabelValue | None = Field(default=None, description="Taint value (with Equal).")
    effect: str | None = Field(
        default=None,
        description="NoSchedule, PreferNoSchedule or NoExecute.",
        json_schema_extra={"enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
    )
    toleration_seconds: int | None = Field(default=None, description="For NoExecute: how long to stay.")

    @field_validator("operator", "effect")
    @classmethod
    def _known(cls, value: str | None, info: Any) -> str | None:
        allowed = cls.model_fields[info.field_name].json_schema_extra["enum"]  # type: ignore[index]
        if value is not None and value not in allowed:  # type: ignore[operator]
            raise ValueError(f"must be one of {', '.join(allowed)}, got {value!r}")  # type: ignore[arg-type]
        return value

    @model_validator(mode="after")
    def _as_kubernetes_checks(self) -> Toleration:
        if not self.key and self.operator != "Exists":
            raise ValueError(TOLERATION_KEY_OR_EXISTS.message)
        if self.operator == "Exists" and self.value:
            raise ValueError(TOLERATION_EXISTS_NO_VALUE.message)
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError(TOLERATION_SECONDS_NO_EXECUTE.message)
        return self


class SchedulingSpec(ApiModel):
    """Where serving pods may run, beyond the GPU product selector modelyard adds."""

    node_selector: dict[LabelKey, LabelValue] = label_map("Extra node labels to require.")
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Extra tolerations.", max_length=32
    )
    priority_class_name: str | None = Field(
        default=None, description="PriorityClass of serving pods.", max_length=253, pattern=DNS_SUBDOMAIN
    )


class LabelSelector(ApiModel):
    """Labels to match."""

    match_labels: dict[LabelKey, LabelValue] = label_map("Labels that must all match.")


class NetworkPeer(ApiModel):
    """Pods allowed to call the model server: pods matching podSelector in namespaces matching
    namespaceSelector (this namespace when namespaceSelector is unset). At least one of them is set
    (``podSelector: {}`` allows every pod of this namespace)."""

    model_config = cel_rules(PEER_NEEDS_SELECTOR)

    namespace_selector: LabelSelector | None = Field(default=None, description="Namespaces to allow.")
    pod_selector: LabelSelector | None = Field(default=None, description="Pods to allow.")

    @model_validator(mode="after")
    def _a_selector(self) -> NetworkPeer:
        if self.namespace_selector is None and self.pod_selector is None:
            raise ValueError(PEER_NEEDS_SELECTOR.message)
        return self


class NetworkSpec(ApiModel):
    """Who may reach the model server besides modelyard gateways."""

    allow_from: list[NetworkPeer] = Field(
        default_factory=list, description="Extra ingress peers.", max_length=32
    )


class NimSpec(ApiModel):
    """NVIDIA NIM settings."""

    profile: str | None = Field(
        default=None,
        description="The NIM model profile to cache and serve: an ID or name from the image's "
        "list-model-profiles (e.g. a GPU-optimized tensorrt_llm profile). Unset: the generic vLLM profile "
        "for the plan, vllm-<bf16|fp8>-tp<N>-pp1. The download Job caches exactly this profile and the "
        "server runs it (NIM_MODEL_PROFILE).",
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
    )


class ModelDeploymentSpec(ApiModel):
    """A model served on GPUs."""

    model_config = cel_rules(
        REPLICAS_XOR_AUTOSCALING,
        NGC_NEEDS_NIM,
        NIM_NOT_HF,
        ADAPTERS_NEED_VLLM,
        ADAPTER_NOT_ABOVE_BASE,
        ADAPTER_NOT_BASE_NAME,
        PVC_MODEL_PVC_ADAPTERS,
        *OLLAMA_RULES,
    )

    engine: Engine = Field(
        default=Engine.VLLM,
        description="Inference engine: vllm or nim (GPUs), or ollama (GGUF models on CPU nodes, for "
        "prototypes; with gpu set it uses those GPUs).",
    )
    image: str | None = Field(
        default=None,
        description="Engine image; a pinned vllm/vllm-openai, or the model's nvcr.io/nim image for NIM.",
        max_length=512,
    )
    image_pull_secrets: list[Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN)]] = Field(
        default_factory=list,
        description="Secrets for pulling the engine image (nvcr.io needs one for NIM).",
        max_length=8,
    )
    model: ModelSpec = Field(description="The model to serve.")
    gpu: GpuSpec | None = Field(
        default=None, description="GPUs per replica (required for vllm and nim; optional for ollama)."
    )
    serving: ServingSpec = Field(default_factory=ServingSpec, description="Engine memory settings.")
    nim: NimSpec = Field(default_factory=NimSpec, description="NIM settings (engine: nim).")
    ollama: OllamaSpec | None = Field(default=None, description="Ollama settings (engine: ollama).")
    resources: CpuResources | None = Field(
        default=None,
        description="CPU and memory of each replica (engine: ollama); unset, from the capacity plan.",
    )
    replicas: int | None = Field(
        default=None,
        description="Fixed replica count (default 1). Exclusive with autoscaling.",
        ge=0,
        le=1000,
    )
    autoscaling: Autoscaling | None = Field(default=None, description="Autoscaling; exclusive with replicas.")
    cache: CacheSpec = Field(default_factory=CacheSpec, description="Weight cache claim.")
    scheduling: SchedulingSpec = Field(default_factory=SchedulingSpec, description="Pod placement.")
    network: NetworkSpec = Field(default_factory=NetworkSpec, description="Ingress allowed to the server.")
    data_classification: DataClassification = Field(
        default=DataClassification.RESTRICTED,
        description="The highest class of data this backend may receive (public < internal < "
        "confidential < restricted).",
    )
    adapters: list[Adapter] = adapters_field()
    lora: LoraSpec = Field(default_factory=LoraSpec, description="LoRA limits of the engine (with adapters).")
    inference_pool: InferencePoolSpec = Field(
        default_factory=InferencePoolSpec,
        description="An InferencePool (Gateway API Inference Extension) of the serving pods, opt-in.",
    )

    @model_validator(mode="after")
    def _cross_fields(self) -> ModelDeploymentSpec:
        if self.replicas is not None and self.autoscaling is not None:
            raise ValueError(REPLICAS_XOR_AUTOSCALING.message)
        if self.model.scheme is SourceScheme.NGC and self.engine is not Engine.NIM:
            raise ValueError(NGC_NEEDS_NIM.message)
        if self.engine is Engine.NIM and self.model.scheme is SourceScheme.HF:
            raise ValueError(NIM_NOT_HF.message)
        check_ollama(
            engine=self.engine.value,
            source=self.model.source,
            has_gpu=self.gpu is not None,
            serving_quantization=self.serving.quantization,
            serving_extra_args=self.serving.extra_args,
            serving_kv_cache_dtype=self.serving.kv_cache_dtype.value,
            has_settings=self.ollama is not None or self.resources is not None,
            max_nodes=self.gpu.max_nodes_per_replica if self.gpu is not None else None,
            has_autoscaling=self.autoscaling is not None,
        )
        check_adapters(
            self.adapters,
            engine=self.engine.value,
            base_name=self.model.name,
            base_source=self.model.source,
            base_class=self.data_classification,
        )
        return self

    @property
    def desired_replicas(self) -> int:
        if self.autoscaling is not None:
            return self.autoscaling.min_replicas
        return 1 if self.replicas is None else self.replicas

    @property
    def max_replicas(self) -> int:
        """The most replicas that may run at once (autoscaling's ceiling, or the fixed count)."""
        return self.autoscaling.max_replicas if self.autoscaling is not None else self.desired_replicas


class Phase(StrEnum):
    PENDING = "Pending"
    DOWNLOADING = "Downloading"
    DEPLOYING = "Deploying"
    READY = "Ready"
    FAILED = "Failed"


class PlanStatus(ApiModel):
    """The capacity plan: how the model fits its GPUs."""

    tensor_parallel_size: int = Field(description="Tensor-parallel size (GPUs of one node a replica uses).")
    pipeline_parallel_size: int | None = Field(
        default=None, description="Pipeline-parallel size: stages of one replica, one per node."
    )
    nodes_per_replica: int | None = Field(
        default=None, description="Nodes one replica spans (above 1: served by a LeaderWorkerSet)."
    )
    gpus_per_replica: int = Field(description="GPUs requested by each replica (on all its nodes).")
    weights_gib: float = Field(alias="weightsGiB", description="Weight memory of the whole model, GiB.")
    kv_cache_gib_per_sequence: float = Field(
        alias="kvCacheGiBPerSequence", description="KV cache of one maxModelLen sequence, GiB."
    )
    max_concurrent_sequences: int = Field(description="Full-length sequences that fit at once.")
    usable_gib_per_gpu: float | None = Field(
        default=None, alias="usableGiBPerGPU", description="Memory the engine may use per GPU, GiB."
    )


class ModelDeploymentStatus(ApiModel):
    """Observed state, written by the operator."""

    model_config = ConfigDict(extra="ignore")  # status.kopf holds the operator framework's own state

    observed_generation: int | None = Field(default=None, description="Generation this status is for.")
    phase: Phase | None = Field(default=None, description="Pending, Downloading, Deploying, Ready or Failed.")
    replicas: int | None = Field(default=None, description="Serving pods that exist.")
    ready_replicas: int | None = Field(default=None, description="Serving pods that are ready.")
    endpoint: str | None = Field(default=None, description="In-cluster OpenAI-compatible base URL.")
    plan: PlanStatus | None = Field(default=None, description="The capacity plan.")
    findings: list[Finding] = Field(default_factory=list, description="Security findings.")
    adapters: list[AdapterStatus] = Field(
        default_factory=list, description="Each LoRA adapter of spec.adapters and whether it is served."
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Planned, ModelCached, Available and Ready."
    )


class ModelDeployment(Resource):
    """A self-hosted model served by vLLM or NVIDIA NIM on GPUs, with a capacity plan, weight cache,
    probes, autoscaling and a NetworkPolicy."""

    KIND: ClassVar[str] = "ModelDeployment"
    PLURAL: ClassVar[str] = "modeldeployments"
    #: its Service is named after it (RFC 1035), and its download Job NAME-download-<8 hex> (at most 63)
    NAME_PATTERN: ClassVar[str | None] = DNS_1035_LABEL
    NAME_MAX_LENGTH: ClassVar[int | None] = 63 - len("-download-12345678")
    SHORT_NAMES: ClassVar[list[str]] = ["mdep"]
    PRINTER_COLUMNS: ClassVar[list[dict[str, Any]]] = [
        {"name": "Engine", "type": "string", "jsonPath": ".spec.engine"},
        {"name": "Model", "type": "string", "jsonPath": ".spec.model.name"},
        {"name": "GPU", "type": "string", "jsonPath": ".spec.gpu.type"},
        {
            "name": "GPUs",
            "type": "integer",
            "jsonPath": ".status.plan.gpusPerReplica",
            "description": "GPUs per replica, from the capacity plan.",
        },
        {
            "name": "Nodes",
            "type": "integer",
            "jsonPath": ".status.plan.nodesPerReplica",
            "description": "Nodes per replica (tensor x pipeline parallel), from the capacity plan.",
            "priority": 1,
        },
        {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas"},
        {
            "name": "Ready",
            "type": "integer",
            "jsonPath": ".status.readyReplicas",
            "description": "Serving replicas that are ready.",
        },
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint", "priority": 1},
        AGE_COLUMN,
    ]

    kind: str = Field(default="ModelDeployment")
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus | None = None
