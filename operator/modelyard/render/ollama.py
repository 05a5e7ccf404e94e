"""An ``engine: ollama`` ModelDeployment's download Job and serving Deployment (the ServiceAccount, cache
claim, Service and NetworkPolicies are the other engines', from render/model_deployment.py).

- The server listens on the engines' port (OLLAMA_HOST=0.0.0.0:8000), so the Service, the NetworkPolicy and
  the gateway's entry (LiteLLM ``openai/<model.name>`` with ``api_base`` ``http://NAME.NS.svc:8000/v1``,
  Ollama's OpenAI-compatible API) are the same as for vLLM.
- OLLAMA_MODELS (blobs and manifests) is on the cache claim. Before the server reports ready, the container
  makes model.name from what is cached: ``ollama create`` from the GGUF (hf:// and a pvc:// ggufFile, with
  spec.ollama.modelfile), ``ollama cp`` of the pulled library tag (ollama://), nothing for a pvc:// models
  directory; then loads it (``ollama run NAME ""``, kept loaded: OLLAMA_KEEP_ALIVE=-1). Readiness is ``ollama
  ps`` listing the model, loaded in memory, not an open port.
- Download Job: ``ollama pull`` (an ``ollama serve`` on loopback in the Job's pod) for ollama://, from the
  Ollama registry (registry.ollama.ai, HTTPS); ``hf_hub_download`` of the one GGUF file for hf:// (the vLLM
  image, which has huggingface_hub); none for pvc://.
- Security: non-root (uid 1000), no privilege escalation, every capability dropped, read-only root
  filesystem; Ollama writes only to the claim (OLLAMA_MODELS) and /tmp (HOME, the Modelfile). Context length
  (OLLAMA_CONTEXT_LENGTH = serving.maxModelLen), parallel requests (OLLAMA_NUM_PARALLEL) and the KV cache type
  (OLLAMA_KV_CACHE_TYPE, with OLLAMA_FLASH_ATTENTION for q8_0/q4_0) come from the spec; CPU and memory from
  the plan (planning/gguf.py). No telemetry or cloud: OLLAMA_NO_CLOUD=1 (the NetworkPolicy allows DNS only).
"""

from __future__ import annotations

import math
from typing import Any

from modelyard.api.model_deployment import ModelDeployment, SourceScheme
from modelyard.api.ollama import KvCacheType
from modelyard.planning.capacity import Plan
from modelyard.planning.gguf import OllamaPlan, plan_ollama

from .common import (
    Manifest,
    http_probe,
    pod_security_context,
    restricted_security_context,
    spec_hash,
    tmp_mount,
    tmp_volume,
)
from .model_deployment import (
    CACHE_MOUNT,
    COMPLETE_MARKER,
    GPU_RESOURCE,
    PERMANENT_FAILURE,
    PORT,
    RUN_AS_USER,
    Images,
    _Context,
    cache_size_gib,
    weights_path,
)

#: Where OLLAMA_MODELS is, inside the cache claim modelyard creates.
MODELS_DIR = f"{CACHE_MOUNT}/ollama"
#: The server's address for the clients in the same container (the CLI, the probes).
LOCAL_HOST = f"127.0.0.1:{PORT}"
#: Model load read rate (MiB/s) for the startup probe's budget, plus a fixed start.
STARTUP_READ_MIB_PER_SECOND = 100
STARTUP_BASE_SECONDS = 120
PROBE_PERIOD = 10

#: The server container's script: serve, make model.name from the cache (MAKE_MODEL), load it, then wait.
SERVE_SH = """set -eu
OLLAMA_HOST="0.0.0.0:$PORT" ollama serve &
server=$!
trap 'kill -TERM "$server"; wait "$server"' TERM INT
until ollama list >/dev/null 2>&1; do
  kill -0 "$server" 2>/dev/null || { echo "ollama serve exited" >&2; exit 1; }
  sleep 1
done
case "$MAKE_MODEL" in
  gguf)
    [ -f "$GGUF" ] || { echo "no GGUF file at $GGUF" >&2; exit 1; }
    printf 'FROM %s\\n%s\\n' "$GGUF" "${MODELFILE:-}" > /tmp/Modelfile
    ollama create "$MODEL" -f /tmp/Modelfile ;;
  pulled)
    [ "$PULLED" = "$MODEL" ] || ollama cp "$PULLED" "$MODEL" ;;
esac
ollama show "$MODEL" >/dev/null
ollama run "$MODEL" "" </dev/null
echo "serving $MODEL"
wait "$server"
"""
#: The download Job's script for ollama://: pull the tag into OLLAMA_MODELS through a server on loopback.
PULL_SH = f"""set -eu
ollama serve &
server=$!
until ollama list >/dev/null 2>&1; do sleep 1; done
ollama pull "$PULLED" || {{ kill "$server"; exit 1; }}
kill "$server"
touch "$OLLAMA_MODELS/{COMPLETE_MARKER}"
echo "pulled $PULLED into $OLLAMA_MODELS"
"""
#: The download Job's script for hf://ORG/REPO/FILE.gguf: that one file, at the pinned revision.
HF_GGUF_PY = f"""import os, pathlib, sys
from huggingface_hub import hf_hub_download
from huggingface_hub.utils import (
    EntryNotFoundError, GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError)
try:
    hf_hub_download(repo_id=os.environ['REPO'], filename=os.environ['FILE'], revision=os.environ['REVISION'],
                    local_dir=os.environ['TARGET'], token=os.environ.get('HF_TOKEN'))
except (EntryNotFoundError, GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError) as exc:
    print(f'{{type(exc).__name__}}: {{exc}}', file=sys.stderr)
    sys.exit({PERMANENT_FAILURE})
pathlib.Path(os.environ['TARGET'], '{COMPLETE_MARKER}').touch()
"""


def served_tag(name: str) -> str:
    """model.name as ``ollama ps`` lists it: with its tag (``:latest`` when it has none)."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def gguf_path(md: ModelDeployment) -> str | None:
    """The GGUF file the model is created from, as the server sees it (None: ollama:// or a models dir)."""
    spec = md.spec
    if spec.model.scheme is SourceScheme.HF:
        repo, _, file = _hf_parts(spec.model.location)
        return f"{CACHE_MOUNT}/hf/{repo}/{spec.model.revision or 'main'}/{file}"
    if spec.model.scheme is SourceScheme.PVC and spec.ollama is not None and spec.ollama.gguf_file:
        return f"{weights_path(spec)}/{spec.ollama.gguf_file}"
    return None


def models_dir(md: ModelDeployment) -> str:
    """OLLAMA_MODELS: a pvc:// models directory itself, else ``ollama/`` beside the cached files."""
    spec = md.spec
    if spec.model.scheme is SourceScheme.PVC:
        base = weights_path(spec)
        return f"{base}/.ollama" if gguf_path(md) else base
    return MODELS_DIR


def _hf_parts(location: str) -> tuple[str, str, str]:
    """ORG/REPO/PATH/FILE.gguf -> (ORG/REPO, directory of the file or "", PATH/FILE.gguf)."""
    org, repo, file = location.split("/", 2)
    return f"{org}/{repo}", file.rsplit("/", 1)[0] if "/" in file else "", file


class OllamaContext(_Context):
    """The other engines' context, with Ollama's download Job and serving pod."""

    def __init__(self, md: ModelDeployment, plan: Plan, images: Images) -> None:
        super().__init__(md, plan, images)
        self.cpu_plan: OllamaPlan = plan_ollama(md.spec)
        self.digest = spec_hash(md.spec.to_wire(), plan.to_status(), images.ollama, images.vllm)

    def pvc(self) -> Manifest:
        claim = super().pvc()
        if self.spec.cache.size is None:  # the GGUF, and its copy in OLLAMA_MODELS that `ollama create` makes
            size = cache_size_gib(self.plan) * (2 if gguf_path(self.md) else 1)
            claim["spec"]["resources"]["requests"]["storage"] = f"{size}Gi"
        return claim

    def _engine_image(self) -> str:
        return self.spec.image or self.images.ollama

    def _placement(self) -> dict[str, Any]:
        if self.spec.gpu is not None:
            return super()._placement()
        scheduling = self.spec.scheduling
        placement: dict[str, Any] = {}
        if scheduling.node_selector:
            placement["nodeSelector"] = dict(scheduling.node_selector)
        if scheduling.tolerations:
            placement["tolerations"] = [t.to_wire() for t in scheduling.tolerations]
        return placement

    # --- download -------------------------------------------------------------------------------
    def _download_command(self, *_args: Any, **_kwargs: Any) -> dict[str, Any]:
        model = self.spec.model
        env: list[dict[str, Any]] = [{"name": "HOME", "value": "/tmp"}]
        if model.scheme is SourceScheme.OLLAMA:
            return {
                "image": self._engine_image(),
                "command": ["/bin/sh", "-c", PULL_SH],
                "env": [
                    *env,
                    {"name": "OLLAMA_MODELS", "value": MODELS_DIR},
                    {"name": "OLLAMA_HOST", "value": "127.0.0.1:11434"},
                    {"name": "PULLED", "value": model.location},
                ],
            }
        repo, _, file = _hf_parts(model.location)
        return {
            "image": self.images.vllm,
            "command": ["python3", "-c", HF_GGUF_PY],
            "env": [
                *env,
                {"name": "REPO", "value": repo},
                {"name": "FILE", "value": file},
                {"name": "REVISION", "value": model.revision or "main"},
                {"name": "TARGET", "value": f"{CACHE_MOUNT}/hf/{repo}/{model.revision or 'main'}"},
                {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
                *self._secret_env("HF_TOKEN"),
            ],
        }

    # --- serving --------------------------------------------------------------------------------
    def _pod_spec(self) -> dict[str, Any]:
        pod: dict[str, Any] = {
            "serviceAccountName": self.name,
            "automountServiceAccountToken": False,
            "securityContext": pod_security_context(RUN_AS_USER, fs_group=True),
            **self._placement(),
            "imagePullSecrets": self._pull_secrets(),
            "terminationGracePeriodSeconds": 30,
            "containers": [self._engine_container()],
            # the claim is writable: OLLAMA_MODELS (blobs, manifests) is on it
            "volumes": [self._weights_volume(read_only=False), tmp_volume()],
        }
        if self.spec.scheduling.priority_class_name:
            pod["priorityClassName"] = self.spec.scheduling.priority_class_name
        return pod

    def _engine_container(self) -> dict[str, Any]:
        plan = self.cpu_plan
        requests: dict[str, str] = {"cpu": plan.cpu, "memory": plan.memory_request}
        limits: dict[str, str] = {"memory": plan.memory_request}
        if plan.gpu_count:
            requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(plan.gpu_count)
        ready = {
            "exec": {
                "command": [
                    "/bin/sh",
                    "-c",
                    "ollama ps | awk 'NR > 1 {print $1}' | grep -qxF \"$SERVED\"",
                ]
            },
            "timeoutSeconds": 5,
        }
        return {
            "name": "engine",
            "image": self._engine_image(),
            "command": ["/bin/sh", "-c", SERVE_SH],
            "env": self._env(),
            "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
            "resources": {"requests": requests, "limits": limits},
            "startupProbe": {
                **ready,
                "periodSeconds": PROBE_PERIOD,
                "failureThreshold": self._startup_failures(),
            },
            "readinessProbe": {**ready, "periodSeconds": PROBE_PERIOD, "failureThreshold": 3},
            "livenessProbe": http_probe("/api/version", period=30, failures=5),
            "volumeMounts": [{"name": "weights", "mountPath": CACHE_MOUNT}, tmp_mount()],
            "securityContext": restricted_security_context(read_only_root_filesystem=True),
        }

    def _startup_failures(self) -> int:
        """Creating (a copy of the GGUF into OLLAMA_MODELS) and loading the model, at the read rate above."""
        read_mib = 2 * self.cpu_plan.weights_gib * 1024
        return math.ceil((STARTUP_BASE_SECONDS + read_mib / STARTUP_READ_MIB_PER_SECOND) / PROBE_PERIOD)

    def _env(self) -> list[dict[str, Any]]:
        spec, plan = self.spec, self.cpu_plan
        gguf = gguf_path(self.md)
        make = "gguf" if gguf else "pulled" if spec.model.scheme is SourceScheme.OLLAMA else "none"
        env = [
            {"name": "HOME", "value": "/tmp"},
            {"name": "PORT", "value": str(PORT)},
            {"name": "OLLAMA_HOST", "value": LOCAL_HOST},
            {"name": "OLLAMA_MODELS", "value": models_dir(self.md)},
            {"name": "OLLAMA_CONTEXT_LENGTH", "value": str(plan.context_length)},
            {"name": "OLLAMA_NUM_PARALLEL", "value": str(plan.num_parallel)},
            {"name": "OLLAMA_MAX_LOADED_MODELS", "value": "1"},
            {"name": "OLLAMA_KEEP_ALIVE", "value": "-1"},
            {"name": "OLLAMA_NO_CLOUD", "value": "1"},
            {"name": "OLLAMA_NOPRUNE", "value": "1"},
            {"name": "MODEL", "value": spec.model.name},
            {"name": "SERVED", "value": served_tag(spec.model.name)},
            {"name": "MAKE_MODEL", "value": make},
        ]
        if plan.kv_cache_type != KvCacheType.F16.value:
            env += [
                {"name": "OLLAMA_KV_CACHE_TYPE", "value": plan.kv_cache_type},
                {"name": "OLLAMA_FLASH_ATTENTION", "value": "1"},
            ]
        if gguf:
            env.append({"name": "GGUF", "value": gguf})
            if spec.ollama is not None and spec.ollama.modelfile:
                env.append({"name": "MODELFILE", "value": spec.ollama.modelfile})
        if spec.model.scheme is SourceScheme.OLLAMA:
            env.append({"name": "PULLED", "value": spec.model.location})
        return env
