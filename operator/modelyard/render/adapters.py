"""LoRA adapters of a ModelDeployment: where each lives in the serving pod, the claims pvc:// adapters mount,
and the vLLM flags that serve them. Pure; the download steps are the base model's own
(:mod:`modelyard.render.model_deployment` renders one per adapter with the same script).

Adapters are loaded when the server starts (``--lora-modules``), so adding or removing one changes the pod
template and rolls the replicas. The pinned vLLM can also load adapters at runtime
(``VLLM_ALLOW_RUNTIME_LORA_UPDATING`` opens ``/v1/load_lora_adapter``), but that endpoint takes any path
from any caller that reaches the port, acts on one replica only and is forgotten on restart; docs/engines.md
says why modelyard restarts instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from modelyard.api.adapters import Adapter
from modelyard.api.model_deployment import ModelDeploymentSpec, ModelSpec, SourceScheme

#: Where pvc:// adapters on claims other than the base model's are mounted in the serving pod.
ADAPTERS_MOUNT = "/adapters"
#: The environment variable the download step reads the rank limit (spec.lora.maxRank) from.
RANK_ENV = "MAX_LORA_RANK"


@dataclass(frozen=True, slots=True)
class AdapterClaim:
    """A claim holding pvc:// adapters, mounted read-only into the serving pod."""

    claim: str
    volume: str  #: the pod's volume name
    mount_path: str


def adapter_model(spec: ModelDeploymentSpec, adapter: Adapter) -> ModelSpec:
    """The adapter as a model source: its own source and revision, the base model's credentials, role,
    endpoint and region (the download Job fetches it as it fetches the base)."""
    return spec.model.model_copy(update={"source": adapter.source, "revision": adapter.revision})


def adapter_claims(spec: ModelDeploymentSpec, base_claim: str) -> list[AdapterClaim]:
    """Claims of pvc:// adapters other than ``base_claim`` (the weights claim, mounted already), in order."""
    claims: list[AdapterClaim] = []
    for adapter in spec.adapters:
        claim = adapter.location.split("/", 1)[0]
        if adapter.scheme != SourceScheme.PVC.value or claim == base_claim:
            continue
        if all(c.claim != claim for c in claims):
            index = len(claims)
            claims.append(AdapterClaim(claim, f"adapter-{index}", f"{ADAPTERS_MOUNT}/{index}"))
    return claims


def adapter_path(
    spec: ModelDeploymentSpec, adapter: Adapter, *, base_claim: str, cache_mount: str, cached_path: str
) -> str:
    """Where the serving pod finds ``adapter``: ``cached_path`` (its place on the weights claim, as the
    download Job lays it out) for hf:// and s3://, or its claim's mount for pvc://."""
    if adapter.scheme != SourceScheme.PVC.value:
        return cached_path
    claim, _, sub_path = adapter.location.partition("/")
    root = cache_mount if claim == base_claim else _mount(spec, claim, base_claim)
    return f"{root}/{sub_path}".rstrip("/")


def _mount(spec: ModelDeploymentSpec, claim: str, base_claim: str) -> str:
    return next(c.mount_path for c in adapter_claims(spec, base_claim) if c.claim == claim)


def claim_volumes(claims: list[AdapterClaim]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pod's volumes and the engine container's read-only mounts for ``claims``."""
    volumes = [
        {"name": c.volume, "persistentVolumeClaim": {"claimName": c.claim, "readOnly": True}} for c in claims
    ]
    mounts = [{"name": c.volume, "mountPath": c.mount_path, "readOnly": True} for c in claims]
    return volumes, mounts


def rank_check_py(exit_code: int) -> str:
    """Python appended to an hf:// adapter's download step (``target`` and ``sys`` in scope): a directory
    without a PEFT ``adapter_config.json``, or with a rank ``r`` above ``$MAX_LORA_RANK``, exits ``exit_code``
    with the reason, instead of a server that crash-loops when vLLM refuses to load the adapter."""
    return (
        "import json\n"
        "limit = int(os.environ['" + RANK_ENV + "'])\n"
        "try:\n"
        "    rank = int(json.loads(pathlib.Path(target, 'adapter_config.json').read_text())['r'])\n"
        "except (OSError, ValueError, KeyError, TypeError) as exc:\n"
        "    print(f'not a PEFT LoRA adapter (adapter_config.json with r): {exc}', file=sys.stderr)\n"
        f"    sys.exit({exit_code})\n"
        "if rank > limit:\n"
        "    print(f'adapter rank {rank} exceeds spec.lora.maxRank {limit}', file=sys.stderr)\n"
        f"    sys.exit({exit_code})\n"
    )


def rank_check_sh(exit_code: int) -> str:
    """The same check as a shell step of an s3:// adapter's download (the AWS CLI image has no Python of
    its own on the path): ``r`` read from ``$TARGET/adapter_config.json`` with grep."""
    config = '"$TARGET/adapter_config.json"'
    return (
        f"&& {{ r=$(grep -o '\"r\"[[:space:]]*:[[:space:]]*[0-9][0-9]*' {config} | grep -o '[0-9]*$') "
        f"|| {{ echo 'not a PEFT LoRA adapter (adapter_config.json with r)' >&2; exit {exit_code}; }}; "
        f'[ "$r" -le "${RANK_ENV}" ] '
        f'|| {{ echo "adapter rank $r exceeds spec.lora.maxRank ${RANK_ENV}" >&2; exit {exit_code}; }}; }} '
    )


def lora_args(spec: ModelDeploymentSpec, paths: dict[str, str]) -> list[str]:
    """vLLM's LoRA flags: LoRA on, the rank limit and slots of ``spec.lora``, and every adapter as a
    ``--lora-modules`` entry in vLLM's JSON form (name, path by adapter name in ``paths``, and the base model
    as its parent in /v1/models). All entries follow one ``--lora-modules`` (a second flag would replace the
    first's list). Empty without adapters."""
    if not spec.adapters:
        return []
    lora = spec.lora
    args = [
        "--enable-lora",
        "--max-lora-rank",
        str(lora.max_rank),
        "--max-loras",
        str(lora.slots(spec.adapters)),
    ]
    if lora.max_cpu_loras is not None:
        args += ["--max-cpu-loras", str(lora.max_cpu_loras)]
    modules = [
        json.dumps(
            {"name": a.name, "path": paths[a.name], "base_model_name": spec.model.name}, separators=(",", ":")
        )
        for a in spec.adapters
    ]
    return [*args, "--lora-modules", *modules]
