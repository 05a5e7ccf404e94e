"""ModelDeployment -> ServiceAccount, weight cache (PVC + download Job), Deployment, Service,
NetworkPolicies, PodDisruptionBudget and HorizontalPodAutoscaler.

Pure: the same spec and plan give byte-identical objects. Serving objects are returned apart from the cache
objects because the controller applies them only once the weights are cached.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from modelyard.api.model_deployment import (
    AccessMode,
    Engine,
    KvCacheDtype,
    ModelDeployment,
    ModelDeploymentSpec,
    ModelSpec,
    SourceScheme,
)
from modelyard.planning.capacity import GIB, Plan
from modelyard.planning.catalog import GPU_TYPES, MODELS, TIKTOKEN_ENCODINGS, TokenizerEncoding, lookup_model
from modelyard.planning.spec import nim_tag

from . import leader_worker_set as lws
from .adapters import (
    RANK_ENV,
    adapter_claims,
    adapter_model,
    adapter_path,
    claim_volumes,
    lora_args,
    rank_check_py,
    rank_check_sh,
)
from .common import (
    HTTPS_PORT,
    Manifest,
    cluster_ip_service,
    dns_egress,
    gateway_labels,
    http_probe,
    labels,
    metadata,
    network_policy,
    pod_security_context,
    restricted_security_context,
    selector_labels,
    spec_hash,
    stamp_content_hashes,
    tcp_egress,
    tmp_mount,
    tmp_volume,
)
from .web_identity import region_env, token_mount, token_volume, web_identity_env

KIND = "ModelDeployment"
SERVER = "model-server"
#: The download container's exit code for a failure no retry can fix (no such repository or revision, no
#: access): the Job's podFailurePolicy fails the Job on it at once.
PERMANENT_FAILURE = 42
#: Error codes in the AWS CLI's output after which an s3:// download exits PERMANENT_FAILURE: STS refused the
#: token or the role (AccessDenied on AssumeRoleWithWebIdentity, InvalidIdentityToken), or the role may not
#: read the bucket, or there is no such bucket. Throttling, timeouts and 5xx stay retryable.
S3_PERMANENT_ERRORS = ("AccessDenied", "InvalidIdentityToken", "NoSuchBucket", "InvalidAccessKeyId")
#: Ports an S3 endpoint URL without one listens on, by scheme.
DEFAULT_PORTS = {"https": HTTPS_PORT, "http": 80}
DOWNLOADER = "model-download"
PORT = 8000
CACHE_MOUNT = "/models"
RUN_AS_USER = 1000
#: The vLLM release modelyard renders for: the image's tag, and the wheel tests/engines judges every rendered
#: command line with (hack/vllm.sh installs it). Changing the pin is this one line; the judge then decides.
VLLM_VERSION = "0.33.0"
#: Pinned engine images; overridable per ModelDeployment with ``spec.image``.
VLLM_IMAGE = f"vllm/vllm-openai:v{VLLM_VERSION}"
AWS_CLI_IMAGE = "amazon/aws-cli:2.31.13"
OLLAMA_VERSION = "0.17.4"
#: engine: ollama (render/ollama.py): the upstream image of the pinned release; the sandbox runs its own
#: build of the same release (hack/images/ollama.sh)
OLLAMA_IMAGE = f"docker.io/ollama/ollama:{OLLAMA_VERSION}"
COMPLETE_MARKER = ".modelyard-complete"
GPU_RESOURCE = "nvidia.com/gpu"
#: Metric the HorizontalPodAutoscaler targets, as each engine exports it to Prometheus.
IN_FLIGHT_METRIC = {Engine.VLLM: "vllm:num_requests_running", Engine.NIM: "num_requests_running"}
HEALTH_PATH = {Engine.VLLM: "/health", Engine.NIM: "/v1/health/ready"}
LIVE_PATH = {Engine.VLLM: "/health", Engine.NIM: "/v1/health/live"}

#: The startup probe's budget. Every tensor-parallel worker reads the whole checkpoint from the one claim
#: (vLLM's loader iterates every safetensors file on each rank and keeps its own shard), so a replica reads
#: weights x TP bytes. STARTUP_READ_MIB_PER_SECOND is a conservative rate for a network volume (a gp3 or
#: pd-balanced disk's provisioned throughput, an NFS/EFS share under load); local NVMe is ten times faster.
STARTUP_READ_MIB_PER_SECOND = 250
#: Engine processes, NCCL set-up and warm-up, before and after the weights are read.
STARTUP_BASE_SECONDS = 300
#: A cold torch.compile and CUDA graph capture (vLLM's compile step); a warm cache on the claim skips most
#: of it, but the budget stays cold-safe, since the first start of a new version compiles cold.
STARTUP_COMPILE_SECONDS = 600
STARTUP_PROBE_PERIOD = 10
#: Where vLLM keeps its torch.compile, Inductor and Triton caches: a directory of the weights claim, so a
#: restarted or rescheduled replica starts warm. Keyed by the vLLM version. A pvc:// claim (air-gapped, often
#: read-only) keeps it in an emptyDir instead.
COMPILE_CACHE_MOUNT = "/compile-cache"
COMPILE_CACHE_SUB_PATH = f".compile-cache/vllm-{VLLM_VERSION}"
#: Directory next to the weights where the download Job puts the tokenizer encodings a model loads at start.
TOKENIZER_ENCODINGS_DIR = "tiktoken"


@dataclass(frozen=True, slots=True)
class Images:
    """Images the renderer uses; the operator's settings may override the defaults."""

    vllm: str = VLLM_IMAGE
    aws_cli: str = AWS_CLI_IMAGE
    ollama: str = OLLAMA_IMAGE


@dataclass(frozen=True, slots=True)
class ModelDeploymentChildren:
    """Every object a ModelDeployment owns, grouped by when the controller applies them."""

    base: list[Manifest]  #: ServiceAccount, Service, NetworkPolicies
    cache: list[Manifest]  #: PVC and download Job (empty for pvc:// sources)
    serving: list[Manifest] = field(default_factory=list)  #: Deployment, PDB, HPA

    def all(self) -> list[Manifest]:
        return [*self.base, *self.cache, *self.serving]


def endpoint(name: str, namespace: str) -> str:
    """The in-cluster OpenAI-compatible base URL of a ModelDeployment."""
    return f"http://{name}.{namespace}.svc:{PORT}/v1"


def render_model_deployment(
    md: ModelDeployment, plan: Plan, images: Images = Images()
) -> ModelDeploymentChildren:
    """All children of ``md`` for the capacity ``plan``."""
    if md.spec.engine is Engine.OLLAMA:  # GGUF on CPU: its own download Job and pod (render/ollama.py)
        from .ollama import OllamaContext  # noqa: PLC0415 (render/ollama.py builds on this module)

        ctx: _Context = OllamaContext(md, plan, images)
    else:
        ctx = _Context(md, plan, images)
    cache = [] if md.spec.model.scheme is SourceScheme.PVC else [ctx.pvc(), ctx.download_job()]
    # a plan spanning nodes is served by a LeaderWorkerSet (render/leader_worker_set.py)
    serving = [ctx.leader_worker_set() if plan.multi_node else ctx.deployment()]
    if md.spec.max_replicas > 1:
        serving.append(ctx.pdb())
    if md.spec.autoscaling is not None:
        serving.append(ctx.hpa())
    base = [ctx.service_account(), ctx.service(), ctx.server_network_policy()]
    if cache:
        base.append(ctx.download_network_policy())
    stamp_content_hashes([*base, *cache, *serving])
    return ModelDeploymentChildren(base=base, cache=cache, serving=serving)


def weights_path(spec: ModelDeploymentSpec, model: ModelSpec | None = None) -> str:
    """Where the weights live inside the cache volume, as the engine sees them (``model``: another source
    cached beside them, an adapter)."""
    model = model or spec.model
    if model.scheme is SourceScheme.HF:
        return f"{CACHE_MOUNT}/hf/{model.location}/{model.revision or 'main'}"
    if model.scheme is SourceScheme.S3:
        return f"{CACHE_MOUNT}/s3/{model.location.rstrip('/')}"
    if model.scheme is SourceScheme.PVC:
        _, _, sub_path = model.location.partition("/")
        return f"{CACHE_MOUNT}/{sub_path}".rstrip("/")
    return CACHE_MOUNT  # ngc: NIM manages the layout under NIM_CACHE_PATH


def cache_claim_name(md: ModelDeployment) -> str:
    if md.spec.model.scheme is SourceScheme.PVC:
        return md.spec.model.location.split("/", 1)[0]
    return f"{md.metadata.name}-weights"


def cache_size_gib(plan: Plan) -> int:
    """Weights plus 20 % headroom (tokenizer, configs, a second revision), rounded up to 10 GiB."""
    return max(10, math.ceil(plan.weights_gib * 1.2 / 10) * 10)


def nim_image(spec: ModelDeploymentSpec) -> str:
    """The NIM image for an ngc://nim/ORG/NAME:TAG source (the tag is required: see :func:`nim_tag`)."""
    repository = spec.model.location.partition(":")[0]
    arch = lookup_model(spec.model.source)
    base = arch.nim_image if arch is not None and arch.nim_image else f"nvcr.io/{repository}"
    return f"{base}:{nim_tag(spec)}"


def nim_profile(spec: ModelDeploymentSpec, plan: Plan) -> str:
    """The NIM profile the download Job caches and the server runs: ``spec.nim.profile``, or NIM's generic
    vLLM profile for the plan's precision and tensor-parallel size (NIM names them
    ``vllm-<precision>-tp<N>-pp1``; they run on any GPU with the memory). A GPU-optimized TensorRT-LLM
    profile has an ID only the image's manifest knows: the NIM operator reads the manifest in a running
    container and matches its tags (``gpu``, ``tp``, ``precision``); modelyard renders offline, so such a
    profile is named in ``spec.nim.profile``."""
    if spec.nim.profile:
        return spec.nim.profile
    precision = "fp8" if plan.quantization == "fp8" else plan.quantization or "bf16"
    return f"vllm-{precision}-tp{plan.tensor_parallel_size}-pp1"


def startup_seconds(plan: Plan) -> int:
    """The time a replica may take to start: every worker's read of the checkpoint at
    :data:`STARTUP_READ_MIB_PER_SECOND`, plus compile and fixed start-up time."""
    read_mib = plan.weights_gib * plan.tensor_parallel_size * GIB / (1 << 20)
    return math.ceil(STARTUP_BASE_SECONDS + STARTUP_COMPILE_SECONDS + read_mib / STARTUP_READ_MIB_PER_SECOND)


def tokenizer_encodings(plan: Plan) -> list[TokenizerEncoding]:
    """Files the model's tokenizer loads at start (gpt-oss's o200k_base), cached beside the weights."""
    arch = MODELS.get(plan.model)
    return [TIKTOKEN_ENCODINGS[name] for name in arch.tokenizer_encodings] if arch else []


class _Context:
    """Shared inputs of one render: names, labels and the spec hash."""

    def __init__(self, md: ModelDeployment, plan: Plan, images: Images) -> None:
        self.md = md
        self.spec = md.spec
        self.plan = plan
        self.images = images
        self.name = md.metadata.name
        self.namespace = md.metadata.namespace
        self.digest = spec_hash(md.spec.to_wire(), _plan_fields(plan), images.vllm, images.aws_cli)
        self.tp = plan.tensor_parallel_size

    def _meta(self, name: str, component: str, **extra: Any) -> dict[str, Any]:
        return metadata(
            name, self.namespace, labels(KIND, self.name, component, self._app()), self.digest, **extra
        )

    def _app(self) -> str:
        return self.spec.engine.value

    def _selector(self, component: str) -> dict[str, str]:
        return selector_labels(KIND, self.name, component)

    # --- identity -------------------------------------------------------------------------------
    def service_account(self) -> Manifest:
        annotations = (
            {"eks.amazonaws.com/role-arn": self.spec.model.role_arn} if self.spec.model.role_arn else {}
        )
        return {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": self._meta(self.name, SERVER, annotations=annotations),
            "automountServiceAccountToken": False,
        }

    # --- weight cache ---------------------------------------------------------------------------
    def pvc(self) -> Manifest:
        cache = self.spec.cache
        mode = cache.access_mode or (
            AccessMode.READ_WRITE_MANY
            if self.spec.max_replicas > 1 or self.plan.multi_node
            else AccessMode.READ_WRITE_ONCE
        )
        spec: dict[str, Any] = {
            "accessModes": [mode.value],
            "resources": {"requests": {"storage": cache.size or f"{cache_size_gib(self.plan)}Gi"}},
        }
        if cache.storage_class_name:
            spec["storageClassName"] = cache.storage_class_name
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": self._meta(cache_claim_name(self.md), DOWNLOADER),
            "spec": spec,
        }

    def download_job_name(self) -> str:
        # adapters downloaded (hf://, s3://) are part of what the Job caches: a changed list is a new Job
        adapters = [(m.source, m.revision) for m in self._downloaded_adapters().values()]
        source = spec_hash(self.spec.model.source, self.spec.model.revision, *adapters)[:8]
        return f"{self.name}-download-{source}"

    def _downloaded_adapters(self) -> dict[str, ModelSpec]:
        """hf:// and s3:// adapters, as model sources the download Job fetches, by container name."""
        return {
            f"adapter-{i}": adapter_model(self.spec, a)
            for i, a in enumerate(self.spec.adapters)
            if a.scheme != SourceScheme.PVC.value
        }

    def download_job(self) -> Manifest:
        adapters = self._downloaded_adapters()
        web_identity = self._web_identity() or any(
            m.scheme is SourceScheme.S3 and m.role_arn is not None for m in adapters.values()
        )
        steps = [("download", self._download_command())] + [
            (name, self._download_command(model, weights_path(self.spec, model), adapter=True))
            for name, model in adapters.items()
        ]
        containers = [
            {
                "name": name,
                **command,
                "volumeMounts": [
                    {"name": "weights", "mountPath": CACHE_MOUNT},
                    tmp_mount(),
                    *([token_mount()] if web_identity else []),
                ],
                "securityContext": restricted_security_context(read_only_root_filesystem=True),
                "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "8Gi"}},
            }
            for name, command in steps
        ]
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": self._meta(self.download_job_name(), DOWNLOADER),
            "spec": {
                "backoffLimit": 3,
                "activeDeadlineSeconds": 6 * 3600,
                # A repository, revision or token the hub refuses fails the Job at once: retrying cannot help.
                "podFailurePolicy": {
                    "rules": [
                        {
                            "action": "FailJob",
                            "onExitCodes": {
                                "containerName": name,
                                "operator": "In",
                                "values": [PERMANENT_FAILURE],
                            },
                        }
                        for name, _ in steps
                    ]
                },
                "template": {
                    "metadata": {"labels": labels(KIND, self.name, DOWNLOADER, self._app())},
                    "spec": {
                        "restartPolicy": "Never",
                        "serviceAccountName": self.name,
                        "automountServiceAccountToken": False,
                        "securityContext": pod_security_context(RUN_AS_USER, fs_group=True),
                        # Where the serving pods run (no GPU request): a claim binds in the zone or node
                        # pool of its first consumer, so the weights land where they are mounted.
                        **self._placement(),
                        "imagePullSecrets": self._pull_secrets(),
                        "containers": containers,
                        "volumes": [
                            self._weights_volume(read_only=False),
                            tmp_volume(),
                            *([token_volume()] if web_identity else []),
                        ],
                    },
                },
            },
        }

    def _download_command(
        self, model: ModelSpec | None = None, target: str | None = None, *, adapter: bool = False
    ) -> dict[str, Any]:
        """The download step of ``model`` (the base model unless given) into ``target``. The base model's
        step also fetches its tokenizer encodings; an adapter's checks its rank against spec.lora.maxRank."""
        model = model or self.spec.model
        target = target or weights_path(self.spec)
        env: list[dict[str, Any]] = [{"name": "HOME", "value": "/tmp"}]
        if adapter:
            env.append({"name": RANK_ENV, "value": str(self.spec.lora.max_rank)})
        tokenizers = [] if adapter else tokenizer_encodings(self.plan)
        if tokenizers:
            env.append(
                {
                    "name": "ENCODINGS",
                    "value": json.dumps(
                        [[e.file, e.url, e.sha256] for e in tokenizers], separators=(",", ":")
                    ),
                }
            )
        if model.scheme is SourceScheme.HF:
            script = (
                "import os, pathlib, sys\n"
                "from huggingface_hub import snapshot_download\n"
                "from huggingface_hub.utils import (\n"
                "    GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError)\n"
                "target = os.environ['TARGET']\n"
                "try:\n"
                "    snapshot_download(repo_id=os.environ['REPO'], revision=os.environ['REVISION'], "
                "local_dir=target, token=os.environ.get('HF_TOKEN'))\n"
                "except (GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError) as exc:\n"
                "    print(f'{type(exc).__name__}: {exc}', file=sys.stderr)\n"
                f"    sys.exit({PERMANENT_FAILURE})\n"
                + (_FETCH_ENCODINGS_PY if tokenizers else "")
                + (rank_check_py(PERMANENT_FAILURE) if adapter else "")
                + f"pathlib.Path(target, '{COMPLETE_MARKER}').touch()\n"
            )
            env += [
                {"name": "REPO", "value": model.location},
                {"name": "REVISION", "value": model.revision or "main"},
                {"name": "TARGET", "value": target},
                {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
            ]
            env += self._secret_env("HF_TOKEN")
            return {"image": self._engine_image(), "command": ["python3", "-c", script], "env": env}
        if model.scheme is SourceScheme.S3:
            if model.role_arn is not None:
                env += web_identity_env(model.role_arn, model.region)
            else:
                env += region_env(model.region)
            if model.endpoint_url is not None:
                env.append({"name": "AWS_ENDPOINT_URL", "value": model.endpoint_url})
            return {
                "image": self.images.aws_cli,
                "command": [
                    "/bin/sh",
                    "-c",
                    _S3_SYNC_SH
                    + "true "
                    + "".join(_fetch_encoding_sh(e) for e in tokenizers)
                    + (rank_check_sh(PERMANENT_FAILURE) if adapter else "")
                    + f'&& touch "$TARGET/{COMPLETE_MARKER}" && echo "downloaded $SOURCE to $TARGET"',
                ],
                "env": [*env, {"name": "SOURCE", "value": model.source}, {"name": "TARGET", "value": target}],
            }
        # ngc: NIM caches the profile the server will run (left to choose, a pod without a GPU picks another)
        return {
            "image": self._engine_image(),
            "args": ["download-to-cache", "--profiles", nim_profile(self.spec, self.plan)],
            "env": [*env, {"name": "NIM_CACHE_PATH", "value": target}, *self._secret_env("NGC_API_KEY")],
        }

    def _web_identity(self) -> bool:
        """Whether the download pod assumes ``spec.model.roleArn`` with its own ServiceAccount token."""
        return self.spec.model.scheme is SourceScheme.S3 and self.spec.model.role_arn is not None

    def _secret_env(self, name: str) -> list[dict[str, Any]]:
        ref = self.spec.model.credentials_secret_ref
        if ref is None:
            return []
        return [{"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}]

    def _weights_volume(self, *, read_only: bool) -> dict[str, Any]:
        claim = {"claimName": cache_claim_name(self.md), "readOnly": read_only}
        return {"name": "weights", "persistentVolumeClaim": claim}

    def _pull_secrets(self) -> list[dict[str, str]]:
        return [{"name": secret} for secret in self.spec.image_pull_secrets]

    # --- serving --------------------------------------------------------------------------------
    def _engine_image(self) -> str:
        if self.spec.image:
            return self.spec.image
        return nim_image(self.spec) if self.spec.engine is Engine.NIM else self.images.vllm

    def deployment(self) -> Manifest:
        spec: dict[str, Any] = {
            "selector": {"matchLabels": self._selector(SERVER)},
            # GPUs are scarce: replace pods one at a time instead of surging onto GPUs that may not exist.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels(KIND, self.name, SERVER, self._app())},
                "spec": self._pod_spec(),
            },
        }
        if self.spec.autoscaling is None:
            spec = {"replicas": self.spec.desired_replicas, **spec}
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": self._meta(self.name, SERVER),
            "spec": spec,
        }

    def leader_worker_set(self) -> Manifest:
        return lws.leader_worker_set(
            self, self._meta(self.name, SERVER), labels(KIND, self.name, SERVER, self._app())
        )

    def _placement(self) -> dict[str, Any]:
        """Node selector (GPU product label and spec.scheduling.nodeSelector) and tolerations (the GPU taint
        and spec.scheduling.tolerations) of the serving pods, which the download Job shares."""
        scheduling = self.spec.scheduling
        gpu = GPU_TYPES[self.plan.gpu_type]
        tolerations = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
        tolerations += [t.to_wire() for t in scheduling.tolerations]
        return {
            "nodeSelector": {**scheduling.node_selector, "nvidia.com/gpu.product": gpu.product},
            "tolerations": tolerations,
        }

    def _pod_spec(self) -> dict[str, Any]:
        scheduling = self.spec.scheduling
        pod: dict[str, Any] = {
            "serviceAccountName": self.name,
            "automountServiceAccountToken": False,
            "securityContext": pod_security_context(RUN_AS_USER, fs_group=True),
            **self._placement(),
            "imagePullSecrets": self._pull_secrets(),
            "terminationGracePeriodSeconds": 60,
            "containers": [self._engine_container()],
            "volumes": [
                # writable for modelyard's own claims: the vLLM container mounts the weights read-only and
                # only the compile cache directory of the same claim read-write
                self._weights_volume(
                    read_only=not self._compile_cache_on_claim() and self.spec.engine is Engine.VLLM
                ),
                {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{self._shm_gib()}Gi"}},
                tmp_volume(),
            ],
        }
        if self._compile_cache_on_claim():
            # kubelet would create a missing subPath directory owned by root, which the engine (uid 1000)
            # cannot write: create it as the engine's user first.
            pod["initContainers"] = [
                {
                    "name": "compile-cache",
                    "image": self._engine_image(),
                    "command": ["mkdir", "-p", f"{CACHE_MOUNT}/{COMPILE_CACHE_SUB_PATH}"],
                    "volumeMounts": [{"name": "weights", "mountPath": CACHE_MOUNT}],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                    "securityContext": restricted_security_context(read_only_root_filesystem=True),
                }
            ]
        elif self.spec.engine is Engine.VLLM:
            pod["volumes"].append({"name": "compile-cache", "emptyDir": {}})
        pod["volumes"] += claim_volumes(adapter_claims(self.spec, cache_claim_name(self.md)))[0]
        if scheduling.priority_class_name:
            pod["priorityClassName"] = scheduling.priority_class_name
        return pod

    def _compile_cache_on_claim(self) -> bool:
        """vLLM's compile cache lives on the weights claim when modelyard created that claim."""
        return self.spec.engine is Engine.VLLM and self.spec.model.scheme is not SourceScheme.PVC

    def _shm_gib(self) -> int:
        """Shared memory for NCCL: tensor-parallel workers exchange activations through /dev/shm."""
        return 2 * self.tp

    def _engine_container(self) -> dict[str, Any]:
        engine = self.spec.engine
        memory = f"{16 * self.tp + self._shm_gib()}Gi"
        container: dict[str, Any] = {
            "name": "engine",
            "image": self._engine_image(),
            **self._engine_invocation(),
            "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
            "resources": {
                "requests": {"cpu": str(2 * self.tp), "memory": memory, GPU_RESOURCE: str(self.tp)},
                "limits": {"memory": memory, GPU_RESOURCE: str(self.tp)},
            },
            "startupProbe": http_probe(
                HEALTH_PATH[engine], period=STARTUP_PROBE_PERIOD, failures=self._startup_failures()
            ),
            "readinessProbe": http_probe(HEALTH_PATH[engine], period=10, failures=3),
            "livenessProbe": http_probe(LIVE_PATH[engine], period=30, failures=5),
            "volumeMounts": [
                {"name": "weights", "mountPath": CACHE_MOUNT, "readOnly": engine is Engine.VLLM},
                {"name": "dshm", "mountPath": "/dev/shm"},
                tmp_mount(),
            ],
            "securityContext": restricted_security_context(),
        }
        if self._compile_cache_on_claim():
            container["volumeMounts"].insert(
                1, {"name": "weights", "mountPath": COMPILE_CACHE_MOUNT, "subPath": COMPILE_CACHE_SUB_PATH}
            )
        elif engine is Engine.VLLM:
            container["volumeMounts"].insert(1, {"name": "compile-cache", "mountPath": COMPILE_CACHE_MOUNT})
        container["volumeMounts"] += claim_volumes(adapter_claims(self.spec, cache_claim_name(self.md)))[1]
        return container

    def _startup_failures(self) -> int:
        """:func:`startup_seconds` in probes of :data:`STARTUP_PROBE_PERIOD` seconds."""
        return math.ceil(startup_seconds(self.plan) / STARTUP_PROBE_PERIOD)

    def _engine_invocation(self) -> dict[str, Any]:
        serving = self.spec.serving
        common_env = [
            {"name": "HOME", "value": "/tmp"},
            {"name": "XDG_CACHE_HOME", "value": "/tmp/.cache"},
        ]
        if self.spec.engine is Engine.NIM:
            env = [
                *common_env,
                {"name": "NIM_CACHE_PATH", "value": weights_path(self.spec)},
                {"name": "NIM_MODEL_PROFILE", "value": nim_profile(self.spec, self.plan)},
                {"name": "NIM_SERVED_MODEL_NAME", "value": self.spec.model.name},
                {"name": "NIM_MAX_MODEL_LEN", "value": str(serving.max_model_len)},
                {"name": "NIM_TENSOR_PARALLEL_SIZE", "value": str(self.tp)},
                {"name": "NIM_SERVER_PORT", "value": str(PORT)},
                *self._secret_env("NGC_API_KEY"),
            ]
            return {"env": env, **({"args": serving.extra_args} if serving.extra_args else {})}
        args = [
            "--model",
            weights_path(self.spec),
            "--served-model-name",
            self.spec.model.name,
            "--tensor-parallel-size",
            str(self.tp),
            "--max-model-len",
            str(serving.max_model_len),
            "--gpu-memory-utilization",
            f"{serving.gpu_memory_utilization:g}",
            "--dtype",
            serving.dtype.value,
            "--port",
            str(PORT),
        ]
        if self.plan.quantization_flag:  # a pre-quantized checkpoint declares its own method
            args += ["--quantization", self.plan.quantization_flag]
        if serving.kv_cache_dtype is KvCacheDtype.FP8:
            args += ["--kv-cache-dtype", "fp8"]
        args += lora_args(self.spec, self._adapter_paths())
        env = [
            *common_env,
            # Replicas never download: weights come from the cache the Job filled.
            {"name": "HF_HUB_OFFLINE", "value": "1"},
            {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
            {"name": "DO_NOT_TRACK", "value": "1"},
            # torch.compile, Inductor and Triton caches on the claim: restarts start warm
            {"name": "VLLM_CACHE_ROOT", "value": COMPILE_CACHE_MOUNT},
            {"name": "TORCHINDUCTOR_CACHE_DIR", "value": f"{COMPILE_CACHE_MOUNT}/inductor"},
            {"name": "TRITON_CACHE_DIR", "value": f"{COMPILE_CACHE_MOUNT}/triton"},
        ]
        if tokenizer_encodings(self.plan):
            encodings_dir = f"{weights_path(self.spec)}/{TOKENIZER_ENCODINGS_DIR}"
            env.append({"name": "TIKTOKEN_ENCODINGS_BASE", "value": encodings_dir})
        return {"command": ["vllm", "serve"], "args": [*args, *serving.extra_args], "env": env}

    def _adapter_paths(self) -> dict[str, str]:
        """Where the engine finds each adapter, by name."""
        return {
            a.name: adapter_path(
                self.spec,
                a,
                base_claim=cache_claim_name(self.md),
                cache_mount=CACHE_MOUNT,
                cached_path=weights_path(self.spec, adapter_model(self.spec, a)),
            )
            for a in self.spec.adapters
        }

    def service(self) -> Manifest:
        selector = self._selector(SERVER)
        if self.plan.multi_node:  # only the leader of each group serves the API
            selector = lws.leader_selector(selector)
        return cluster_ip_service(self._meta(self.name, SERVER), selector, PORT)

    def pdb(self) -> Manifest:
        return {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": self._meta(self.name, SERVER),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": self._selector(SERVER)}},
        }

    def hpa(self) -> Manifest:
        auto = self.spec.autoscaling
        assert auto is not None
        metric = {
            "type": "Pods",
            "pods": {
                "metric": {"name": IN_FLIGHT_METRIC[self.spec.engine]},
                "target": {"type": "AverageValue", "averageValue": str(auto.target_in_flight_requests)},
            },
        }
        return {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": self._meta(self.name, SERVER),
            "spec": {
                "scaleTargetRef": lws.scale_target(self.name)
                if self.plan.multi_node
                else {"apiVersion": "apps/v1", "kind": "Deployment", "name": self.name},
                "minReplicas": auto.min_replicas,
                "maxReplicas": auto.max_replicas,
                "metrics": [metric],
            },
        }

    # --- network --------------------------------------------------------------------------------
    def server_network_policy(self) -> Manifest:
        """Serving pods: ingress from modelyard gateways in this namespace and spec.network.allowFrom;
        egress to DNS only (weights come from the cache, never the internet)."""
        peers: list[dict[str, Any]] = [{"podSelector": {"matchLabels": gateway_labels()}}]
        for peer in self.spec.network.allow_from:
            entry: dict[str, Any] = {}
            if peer.namespace_selector is not None:
                entry["namespaceSelector"] = {"matchLabels": dict(peer.namespace_selector.match_labels)}
            if peer.pod_selector is not None:
                entry["podSelector"] = {"matchLabels": dict(peer.pod_selector.match_labels)}
            peers.append(entry)
        ingress = [{"from": peers, "ports": [{"protocol": "TCP", "port": PORT}]}]
        egress = [dns_egress()]
        if self.plan.multi_node:  # the pods of a group exchange activations and control messages
            group_in, group_out = lws.group_peer_rules(self.name)
            ingress.append(group_in)
            egress.append(group_out)
        meta = self._meta(self.name, SERVER)
        return network_policy(meta, self._selector(SERVER), ingress=ingress, egress=egress)

    def download_network_policy(self) -> Manifest:
        """Download Job pods: no ingress; egress to DNS and the model source's port, only while the Job's
        pods run: the policy selects nothing once they have finished. The source's port is 443 (the hub, NGC,
        AWS S3 and STS), or the port of ``spec.model.endpointURL`` (which serves STS too)."""
        meta = self._meta(f"{self.name}-download", DOWNLOADER)
        ports = sorted(
            {
                self._source_port(),
                *(
                    HTTPS_PORT
                    for m in self._downloaded_adapters().values()
                    if m.scheme is not self.spec.model.scheme
                ),
            }
        )
        egress = [dns_egress(), *(tcp_egress(port) for port in ports)]
        return network_policy(meta, self._selector(DOWNLOADER), egress=egress)

    def _source_port(self) -> int:
        endpoint_url = self.spec.model.endpoint_url
        if endpoint_url is None or self.spec.model.scheme is not SourceScheme.S3:
            return HTTPS_PORT
        return endpoint_port(endpoint_url)


def endpoint_port(url: str) -> int:
    """The TCP port of an endpoint URL: its explicit port, else 443 for https and 80 for http."""
    parsed = urlsplit(url)
    return parsed.port or DEFAULT_PORTS[parsed.scheme]


def _plan_fields(plan: Plan) -> dict[str, Any]:
    fields = {"tp": plan.tensor_parallel_size, "gpu": plan.gpu_type, "weights": round(plan.weights_gib, 3)}
    return {**fields, "pp": plan.pipeline_parallel_size} if plan.multi_node else fields


#: Appended to the hf:// download script when the model loads tokenizer encodings at start: each file is
#: fetched once, checked against its digest, and written beside the weights.
_FETCH_ENCODINGS_PY = (
    "import hashlib, json, urllib.request\n"
    f"encodings = pathlib.Path(target, '{TOKENIZER_ENCODINGS_DIR}')\n"
    "encodings.mkdir(exist_ok=True)\n"
    "for name, url, digest in json.loads(os.environ['ENCODINGS']):\n"
    "    data = urllib.request.urlopen(url, timeout=120).read()\n"
    "    if hashlib.sha256(data).hexdigest() != digest:\n"
    "        sys.exit(f'{name}: sha256 mismatch')\n"
    "    (encodings / name).write_bytes(data)\n"
)


#: The s3:// download's sync, first line of its script: the CLI's errors go to the log, and an error no
#: retry can fix (:data:`S3_PERMANENT_ERRORS`, as the CLI prints them: "An error occurred (AccessDenied)
#: when calling ...") exits PERMANENT_FAILURE.
_S3_SYNC_SH = (
    'aws s3 sync --only-show-errors "$SOURCE" "$TARGET" 2>/tmp/aws-errors || { status=$?; '
    "cat /tmp/aws-errors >&2; "
    f"grep -qE '\\(({'|'.join(S3_PERMANENT_ERRORS)})\\)' /tmp/aws-errors && exit {PERMANENT_FAILURE}; "
    "exit $status; }\n"
)


def _fetch_encoding_sh(encoding: TokenizerEncoding) -> str:
    """The s3:// download's shell step for one tokenizer encoding (the aws-cli image's curl, sha256sum)."""
    path = f'"$TARGET/{TOKENIZER_ENCODINGS_DIR}/{encoding.file}"'
    return (
        f'&& mkdir -p "$TARGET/{TOKENIZER_ENCODINGS_DIR}" && curl -fsSL -o {path} {encoding.url} '
        f"&& echo '{encoding.sha256}  '{path} | sha256sum -c - "
    )
