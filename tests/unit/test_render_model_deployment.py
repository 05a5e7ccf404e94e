"""The ModelDeployment renderer: what the operator would create, checked without a cluster."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from modelyard.api import ModelDeployment
from modelyard.planning.spec import plan_deployment
from modelyard.render.common import SPEC_HASH_ANNOTATION, stamp_content_hashes, to_yaml
from modelyard.render.model_deployment import ModelDeploymentChildren, render_model_deployment

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
K8S_VERSION = "1.35.0"
PLANTED = "hf_PLANTED_TOKEN_VALUE_42"


def md(name: str = "llama", **spec: Any) -> ModelDeployment:
    body: dict[str, Any] = {
        "model": {
            "name": "llama-3.1-8b-instruct",
            "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
            "revision": "0e9e39f",
            "credentialsSecretRef": {"name": "hf-token", "key": "token"},
        },
        "gpu": {"type": "nvidia-h100-80gb"},
        **spec,
    }
    return ModelDeployment.model_validate({"metadata": {"name": name, "namespace": "ml"}, "spec": body})


def render(obj: ModelDeployment) -> ModelDeploymentChildren:
    return render_model_deployment(obj, plan_deployment(obj.spec))


def by_kind(children: ModelDeploymentChildren) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for obj in children.all():
        out.setdefault(obj["kind"], []).append(obj)
    return out


def engine_container(children: ModelDeploymentChildren) -> dict[str, Any]:
    (deployment,) = by_kind(children)["Deployment"]
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def arg(container: dict[str, Any], flag: str) -> str:
    args: list[str] = container["args"]
    return args[args.index(flag) + 1]


VARIANTS = {
    "vllm": md(),
    "vllm-autoscaled": md(autoscaling={"minReplicas": 2, "maxReplicas": 4}),
    "nim": md(
        engine="nim",
        model={
            "name": "meta/llama-3.1-70b-instruct",
            "source": "ngc://nim/meta/llama-3.1-70b-instruct:1.8.3",
            "credentialsSecretRef": {"name": "ngc", "key": "key"},
        },
    ),
    "s3": md(
        model={
            "name": "llama-3.1-8b-instruct",
            "source": "s3://weights/llama-3.1-8b",
            "roleArn": "arn:aws:iam::123456789012:role/weights",
        },
        replicas=3,
    ),
    "pvc": md(model={"name": "llama-3.1-8b-instruct", "source": "pvc://airgap-models/llama-3.1-8b"}),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_child_validates_against_kubernetes_schemas(variant: str) -> None:
    for obj in render(VARIANTS[variant]).all():
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_vllm_engine_args_come_from_the_plan() -> None:
    obj = md(serving={"maxModelLen": 16384, "gpuMemoryUtilization": 0.85})
    container = engine_container(render(obj))
    assert container["image"].startswith("vllm/vllm-openai:v")
    assert arg(container, "--tensor-parallel-size") == "1"
    assert arg(container, "--max-model-len") == "16384"
    assert arg(container, "--gpu-memory-utilization") == "0.85"
    assert arg(container, "--served-model-name") == "llama-3.1-8b-instruct"
    assert arg(container, "--model") == "/models/hf/meta-llama/Llama-3.1-8B-Instruct/0e9e39f"
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in container["env"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"


def test_seventy_b_spans_gpus_and_sizes_shared_memory() -> None:
    obj = md(model={"name": "llama-70b", "source": "hf://meta-llama/Llama-3.1-70B-Instruct"})
    children = render(obj)
    container = engine_container(children)
    pod = by_kind(children)["Deployment"][0]["spec"]["template"]["spec"]
    assert arg(container, "--tensor-parallel-size") == "2"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "2"
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "4Gi"}
    # the startup probe allows longer for the bigger model
    small = engine_container(render(md()))["startupProbe"]["failureThreshold"]
    assert container["startupProbe"]["failureThreshold"] > small


def test_gpu_placement_and_pod_security() -> None:
    pod = by_kind(render(md()))["Deployment"][0]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    security = pod["containers"][0]["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}


def test_nim_uses_its_image_key_cache_and_health() -> None:
    children = render(VARIANTS["nim"])
    container = engine_container(children)
    assert container["image"] == "nvcr.io/nim/meta/llama-3.1-70b-instruct:1.8.3"
    env = {e["name"]: e for e in container["env"]}
    assert env["NGC_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "ngc", "key": "key"}}
    assert env["NIM_CACHE_PATH"]["value"] == "/models"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/health/ready"
    (job,) = by_kind(children)["Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["download-to-cache"]


def test_download_job_per_source() -> None:
    hf_job = by_kind(render(md()))["Job"][0]["spec"]["template"]["spec"]
    env = {e["name"]: e for e in hf_job["containers"][0]["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token"}
    assert env["REVISION"]["value"] == "0e9e39f"
    s3 = by_kind(render(VARIANTS["s3"]))
    assert s3["ServiceAccount"][0]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(
        "role/weights"
    )
    assert s3["Job"][0]["spec"]["template"]["spec"]["containers"][0]["image"].startswith("amazon/aws-cli:")
    assert s3["PersistentVolumeClaim"][0]["spec"]["accessModes"] == ["ReadWriteMany"]


def test_pvc_source_skips_the_download() -> None:
    children = render(VARIANTS["pvc"])
    assert children.cache == []
    kinds = by_kind(children)
    assert "Job" not in kinds and "PersistentVolumeClaim" not in kinds
    pod = kinds["Deployment"][0]["spec"]["template"]["spec"]
    claim = next(v for v in pod["volumes"] if v["name"] == "weights")["persistentVolumeClaim"]
    assert claim["claimName"] == "airgap-models"
    assert arg(pod["containers"][0], "--model") == "/models/llama-3.1-8b"


def test_single_replica_has_no_pdb_or_hpa_and_rwo_cache() -> None:
    kinds = by_kind(render(md()))
    assert "PodDisruptionBudget" not in kinds and "HorizontalPodAutoscaler" not in kinds
    assert kinds["PersistentVolumeClaim"][0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert kinds["Deployment"][0]["spec"]["replicas"] == 1


def test_autoscaling_adds_hpa_and_pdb_and_leaves_replicas_to_the_hpa() -> None:
    kinds = by_kind(render(VARIANTS["vllm-autoscaled"]))
    (hpa,) = kinds["HorizontalPodAutoscaler"]
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 4
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "vllm:num_requests_running"
    assert "replicas" not in kinds["Deployment"][0]["spec"]
    assert kinds["PodDisruptionBudget"][0]["spec"]["maxUnavailable"] == 1


def test_network_policies() -> None:
    obj = md(network={"allowFrom": [{"namespaceSelector": {"matchLabels": {"team": "search"}}}]})
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(render(obj))["NetworkPolicy"]}
    server = policies["llama"]
    peers = server["ingress"][0]["from"]
    assert peers[0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
    assert {"namespaceSelector": {"matchLabels": {"team": "search"}}} in peers
    assert server["egress"][0]["ports"][0]["port"] == 53 and len(server["egress"]) == 1
    download = policies["llama-download"]
    assert download["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in download
    assert {"ports": [{"protocol": "TCP", "port": 443}]} in download["egress"]


def test_deterministic_and_hash_tracks_the_spec() -> None:
    first, second = to_yaml(render(md()).all()), to_yaml(render(md()).all())
    assert first == second
    def hashes(model: ModelDeployment) -> dict[str, str]:
        return {
            f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
            for o in render(model).all()
        }

    before, after = hashes(md()), hashes(md(serving={"maxModelLen": 4096}))
    assert len(set(before.values())) == len(before)  # each child's own content
    # A new context length changes the serving Deployment only: nothing else is applied again.
    assert {key for key in before if before[key] != after[key]} == {"Deployment/llama"}


def test_no_secret_value_is_ever_rendered() -> None:
    # The renderer only ever sees references; a value planted where a careless implementation might copy it
    # from must not appear anywhere.
    obj = md(
        model={
            "name": "llama-3.1-8b-instruct",
            "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
            "credentialsSecretRef": {"name": "hf-token", "key": "token"},
        }
    )
    text = to_yaml(render(obj).all())
    assert PLANTED not in text
    assert "secretKeyRef" in text


def test_examples_render() -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        assert path.read_text().strip()
    obj = ModelDeployment.model_validate(
        __import__("yaml").safe_load((EXAMPLES / "vllm-llama-8b.yaml").read_text())
    )
    kinds = by_kind(render(obj))
    assert kinds["Deployment"][0]["spec"]["replicas"] == 2


def test_spec_hash_depends_on_content_not_on_object_identity() -> None:
    """The hash is compared with what an earlier operator process wrote: equal content, equal hash."""
    first = render(md()).all()
    rebuilt = copy.deepcopy(first)
    for obj in rebuilt:  # strings built at run time, never interned, and shared objects unshared
        obj["metadata"]["name"] = "".join(list(obj["metadata"]["name"]))
    restamped = stamp_content_hashes(rebuilt)
    assert [o["metadata"]["annotations"][SPEC_HASH_ANNOTATION] for o in restamped] == [
        o["metadata"]["annotations"][SPEC_HASH_ANNOTATION] for o in first
    ]
