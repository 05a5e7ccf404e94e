"""The ModelDeployment renderer: what the operator would create, checked without a cluster."""

from __future__ import annotations

import copy
import math
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from modelyard.api import ModelDeployment
from modelyard.errors import UserError
from modelyard.planning.capacity import GIB
from modelyard.planning.catalog import TIKTOKEN_ENCODINGS
from modelyard.planning.spec import plan_deployment
from modelyard.render.common import SPEC_HASH_ANNOTATION, stamp_content_hashes, to_yaml
from modelyard.render.model_deployment import (
    STARTUP_BASE_SECONDS,
    STARTUP_COMPILE_SECONDS,
    STARTUP_READ_MIB_PER_SECOND,
    VLLM_VERSION,
    ModelDeploymentChildren,
    render_model_deployment,
)

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


def test_download_job_follows_the_serving_placement_without_a_gpu() -> None:
    obj = md(
        scheduling={
            "nodeSelector": {"topology.kubernetes.io/zone": "eu-central-1a"},
            "tolerations": [{"key": "pool", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}],
        }
    )
    kinds = by_kind(render(obj))
    serving = kinds["Deployment"][0]["spec"]["template"]["spec"]
    job = kinds["Job"][0]["spec"]["template"]["spec"]
    assert (
        job["nodeSelector"]
        == serving["nodeSelector"]
        == {"topology.kubernetes.io/zone": "eu-central-1a", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    )
    assert job["tolerations"] == serving["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in job["tolerations"]
    assert {"key": "pool", "operator": "Equal", "value": "llm", "effect": "NoSchedule"} in job["tolerations"]
    assert "nvidia.com/gpu" not in str(job["containers"][0]["resources"])


def test_startup_budget_is_every_workers_read_plus_compile() -> None:
    """70B bf16 at TP 2: two workers each read the 131.4 GiB checkpoint from the claim."""
    obj = md(model={"name": "llama-70b", "source": "hf://meta-llama/Llama-3.1-70B-Instruct"})
    plan = plan_deployment(obj.spec)
    read_seconds = plan.weights_gib * 2 * 1024 / STARTUP_READ_MIB_PER_SECOND
    assert read_seconds == pytest.approx(1076.5, abs=0.1)
    budget = STARTUP_BASE_SECONDS + STARTUP_COMPILE_SECONDS + read_seconds
    probe = engine_container(render(obj))["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= budget
    assert probe["failureThreshold"] == math.ceil(math.ceil(budget) / 10) == 198
    # the old budget (10 min + 1 min per 10 GiB per GPU) gave this replica 17 minutes for 33 minutes of work
    assert (10 + math.ceil(plan.weights_gib_per_gpu / 10)) * 60 < budget
    big = md(model={"name": "llama-405b", "source": "hf://RedHatAI/Meta-Llama-3.1-405B-Instruct-FP8"})
    probe = engine_container(render(big))["startupProbe"]
    assert probe["failureThreshold"] * 10 >= 381.89 * GIB * 8 / (1 << 20) / STARTUP_READ_MIB_PER_SECOND


def test_compile_cache_is_on_the_weights_claim() -> None:
    sub_path = f".compile-cache/vllm-{VLLM_VERSION}"
    for obj in (md(), VARIANTS["s3"]):
        pod = by_kind(render(obj))["Deployment"][0]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts["/models"]["readOnly"] is True  # the weights stay read-only for the engine
        assert mounts["/compile-cache"] == {
            "name": "weights",
            "mountPath": "/compile-cache",
            "subPath": sub_path,
        }
        # created as the engine's user before the engine starts (kubelet would create it owned by root)
        (init,) = pod["initContainers"]
        assert init["command"] == ["mkdir", "-p", f"/models/{sub_path}"]
        assert init["volumeMounts"] == [{"name": "weights", "mountPath": "/models"}]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["VLLM_CACHE_ROOT"] == "/compile-cache"
        assert env["TORCHINDUCTOR_CACHE_DIR"].startswith("/compile-cache/")
        assert env["TRITON_CACHE_DIR"].startswith("/compile-cache/")


def test_a_pvc_source_is_never_written_and_compiles_into_an_empty_dir() -> None:
    pod = by_kind(render(VARIANTS["pvc"]))["Deployment"][0]["spec"]["template"]["spec"]
    weights = next(v for v in pod["volumes"] if v["name"] == "weights")
    assert weights["persistentVolumeClaim"]["readOnly"] is True
    assert {"name": "compile-cache", "emptyDir": {}} in pod["volumes"]
    assert "initContainers" not in pod


@pytest.mark.parametrize("variant", ["hf", "s3"])
def test_gpt_oss_caches_its_tokenizer_encoding_and_starts_offline(variant: str) -> None:
    """openai-harmony loads o200k_base.tiktoken at start, from TIKTOKEN_ENCODINGS_BASE when set, otherwise
    from the internet, which the serving NetworkPolicy (DNS only) refuses."""
    source = {"hf": "hf://openai/gpt-oss-120b", "s3": "s3://weights/gpt-oss-120b"}[variant]
    obj = md(
        model={"name": "gpt-oss-120b", "source": source, "roleArn": "arn:aws:iam::123456789012:role/weights"}
    )
    children = by_kind(render(obj))
    env = {e["name"]: e.get("value") for e in engine_container_of(children)["env"]}
    weights = arg(engine_container_of(children), "--model")
    assert env["TIKTOKEN_ENCODINGS_BASE"] == f"{weights}/tiktoken"
    download = children["Job"][0]["spec"]["template"]["spec"]["containers"][0]
    encoding = TIKTOKEN_ENCODINGS["o200k_base"]
    script = download["command"][-1]
    assert encoding.sha256 in str(download["env"]) + script
    assert "tiktoken" in script
    server_policy = next(p for p in children["NetworkPolicy"] if p["metadata"]["name"] == "llama")
    assert len(server_policy["spec"]["egress"]) == 1  # still DNS only


def test_models_without_encodings_fetch_none() -> None:
    children = render(md())
    assert "TIKTOKEN_ENCODINGS_BASE" not in str(engine_container(children)["env"])
    assert "ENCODINGS" not in str(by_kind(children)["Job"][0])


def test_quantization_flags_follow_the_pinned_release() -> None:
    on_load = md(
        model={"name": "llama-405b", "source": "hf://meta-llama/Llama-3.1-405B-Instruct"},
        serving={"quantization": "fp8"},
    )
    assert arg(engine_container(render(on_load)), "--quantization") == "fp8_per_tensor"
    awq = md(
        model={"name": "llama-70b-awq", "source": "hf://hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4"}
    )
    container = engine_container(render(awq))
    assert "--quantization" not in container["args"]  # vLLM reads the checkpoint's quant_method
    assert arg(container, "--tensor-parallel-size") == "1"
    assert arg(container, "--dtype") == "bfloat16"


def engine_container_of(kinds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    container: dict[str, Any] = kinds["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
    return container


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
    download = job["spec"]["template"]["spec"]["containers"][0]
    # the Job caches exactly the profile the server runs: the plan's precision and tensor-parallel size
    assert download["args"] == ["download-to-cache", "--profiles", "vllm-bf16-tp2-pp1"]
    assert env["NIM_MODEL_PROFILE"]["value"] == "vllm-bf16-tp2-pp1"
    assert {"name": "NIM_CACHE_PATH", "value": "/models"} in download["env"]


def test_nim_profile_follows_spec_precision_and_size() -> None:
    base = VARIANTS["nim"].model_dump(by_alias=True, exclude_none=True)["spec"]
    fp8 = md(**{**base, "gpu": {"type": "nvidia-h100-80gb", "count": 4}, "serving": {"quantization": "fp8"}})
    env = {e["name"]: e.get("value") for e in engine_container(render(fp8))["env"]}
    assert env["NIM_MODEL_PROFILE"] == "vllm-fp8-tp4-pp1"
    profile_id = "a93a1a6b72643f2b2ee5e80ef25904f4d3f942a87f8d32da9e617eeccfaae04c"  # list-model-profiles
    pinned = md(**{**base, "nim": {"profile": profile_id}})
    children = render(pinned)
    env = {e["name"]: e.get("value") for e in engine_container(children)["env"]}
    job = by_kind(children)["Job"][0]["spec"]["template"]["spec"]["containers"][0]
    assert job["args"][2] == env["NIM_MODEL_PROFILE"] == pinned.spec.nim.profile


@pytest.mark.parametrize(
    ("source", "cache_path"),
    [
        ("s3://weights/nim/llama-3.1-70b", "/models/s3/weights/nim/llama-3.1-70b"),
        ("pvc://airgap/nim-cache/llama-70b", "/models/nim-cache/llama-70b"),
    ],
)
def test_nim_cache_path_honours_the_source_sub_path(source: str, cache_path: str) -> None:
    obj = md(
        engine="nim",
        image="nvcr.io/nim/meta/llama-3.1-70b-instruct:1.8.3",
        model={"name": "meta/llama-3.1-70b-instruct", "source": source},
        gpu={"type": "nvidia-h100-80gb", "count": 2},
    )
    container = engine_container(render(obj))
    assert {"name": "NIM_CACHE_PATH", "value": cache_path} in container["env"]


@pytest.mark.parametrize(
    "source", ["ngc://nim/meta/llama-3.1-70b-instruct", "ngc://nim/meta/llama-3.1-70b-instruct:latest"]
)
def test_nim_release_must_be_pinned(source: str) -> None:
    obj = md(engine="nim", model={"name": "llama", "source": source})
    with pytest.raises(UserError, match="pin the NIM release"):
        render(obj)


def test_vllm_image_is_the_pinned_release() -> None:
    assert engine_container(render(md()))["image"] == f"vllm/vllm-openai:v{VLLM_VERSION}"


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


# --- s3:// downloads: web identity without the EKS webhook, S3-compatible endpoints ---------------------

ROLE = "arn:aws:iam::123456789012:role/weights"


def s3_download(**model: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The s3:// download pod's spec, its container's env by name, and the download NetworkPolicy's spec."""
    body = {"name": "llama-3.1-8b-instruct", "source": "s3://weights/llama-3.1-8b", **model}
    kinds = by_kind(render(md(model=body)))
    pod = kinds["Job"][0]["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    (policy,) = [p["spec"] for p in kinds["NetworkPolicy"] if p["metadata"]["name"] == "llama-download"]
    return pod, env, policy


def test_s3_download_assumes_the_role_with_a_projected_token_as_the_eks_webhook_would() -> None:
    pod, env, _ = s3_download(roleArn=ROLE, region="eu-central-1")
    (container,) = pod["containers"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "aws-iam-token"]
    (token,) = volume["projected"]["sources"]
    assert token["serviceAccountToken"] == {
        "audience": "sts.amazonaws.com",
        "expirationSeconds": 3600,
        "path": "token",
    }
    mount = {
        "name": "aws-iam-token",
        "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount",
        "readOnly": True,
    }
    assert mount in container["volumeMounts"]
    assert env["AWS_ROLE_ARN"] == ROLE
    assert env["AWS_WEB_IDENTITY_TOKEN_FILE"] == "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
    assert env["AWS_STS_REGIONAL_ENDPOINTS"] == "regional"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-central-1"
    # only the projected token: the API credentials stay unmounted
    assert pod["automountServiceAccountToken"] is False
    assert "AWS_ENDPOINT_URL" not in env


def test_s3_download_without_a_role_mounts_no_token() -> None:
    pod, env, _ = s3_download()
    assert "AWS_ROLE_ARN" not in env and "AWS_REGION" not in env
    assert all(v["name"] != "aws-iam-token" for v in pod["volumes"])
    assert all(m["name"] != "aws-iam-token" for m in pod["containers"][0]["volumeMounts"])


def test_hf_download_gets_no_aws_identity_even_with_a_role() -> None:
    obj = md(
        model={
            "name": "llama-3.1-8b-instruct",
            "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
            "revision": "0e9e39f",
            "roleArn": ROLE,
        }
    )
    pod = by_kind(render(obj))["Job"][0]["spec"]["template"]["spec"]
    assert all(v["name"] != "aws-iam-token" for v in pod["volumes"])
    assert not any(e["name"].startswith("AWS_") for e in pod["containers"][0]["env"])


@pytest.mark.parametrize(
    ("endpoint", "port"),
    [
        ("https://minio.storage.svc:9000", 9000),
        ("http://10.250.0.1:5000/", 5000),
        ("https://s3.internal.example", 443),
        ("http://ceph-rgw.storage", 80),
        ("http://[fd00::5]:7480", 7480),
    ],
)
def test_s3_compatible_endpoint_is_the_only_port_the_download_may_reach(endpoint: str, port: int) -> None:
    _, env, policy = s3_download(roleArn=ROLE, endpointURL=endpoint, region="us-east-1")
    assert env["AWS_ENDPOINT_URL"] == endpoint  # the CLI sends S3 and STS calls there
    dns, source = policy["egress"]
    assert dns["ports"][0]["port"] == 53
    assert source == {"ports": [{"protocol": "TCP", "port": port}]}


def test_s3_endpoint_variants_validate_against_kubernetes_schemas() -> None:
    obj = md(
        model={
            "name": "llama-3.1-8b-instruct",
            "source": "s3://weights/m",
            "roleArn": ROLE,
            "endpointURL": "http://10.250.0.1:5000",
            "region": "eu-central-1",
        }
    )
    for child in render(obj).all():
        kubernetes_validate.validate(child, K8S_VERSION, strict=True)


def test_s3_download_fails_at_once_on_errors_no_retry_fixes(tmp_path: Path) -> None:
    """The CLI's "An error occurred (AccessDenied) ..." exits PERMANENT_FAILURE, which the Job's
    podFailurePolicy turns into a failed Job at once; other errors keep the CLI's status (retried). The
    rendered script runs in /bin/sh with a stand-in ``aws`` that prints the CLI's message and fails."""
    pod, _, _ = s3_download(roleArn=ROLE)
    script = pod["containers"][0]["command"][-1].replace("/tmp/", f"{tmp_path}/")
    fake_aws = 'aws() { echo "$AWS_OUTPUT" >&2; return 1; }\n'
    outputs = {
        "AccessDenied": "An error occurred (AccessDenied) when calling the ListObjectsV2 operation: Denied",
        "InvalidIdentityToken": "An error occurred (InvalidIdentityToken) when calling the "
        "AssumeRoleWithWebIdentity operation: Incorrect token audience",
        "NoSuchBucket": "An error occurred (NoSuchBucket) when calling the ListObjectsV2 operation",
        "SlowDown": "An error occurred (SlowDown) when calling the GetObject operation: Reduce your rate",
        "connect": 'Could not connect to the endpoint URL: "http://10.250.0.1:5000/weights"',
    }
    codes = {}
    for name, output in outputs.items():
        env = {"AWS_OUTPUT": output, "PATH": "/usr/bin:/bin", "SOURCE": "s3://w/m", "TARGET": "/nonexistent"}
        result = subprocess.run(
            ["/bin/sh", "-c", fake_aws + script], env=env, capture_output=True, text=True, check=False
        )
        assert output in result.stderr  # the CLI's message reaches the pod's log
        codes[name] = result.returncode
    assert codes == {
        "AccessDenied": 42,
        "InvalidIdentityToken": 42,
        "NoSuchBucket": 42,
        "SlowDown": 1,
        "connect": 1,
    }
    job = by_kind(render(md(model={"name": "llama-3.1-8b-instruct", "source": "s3://weights/m"})))["Job"][0]
    rule = job["spec"]["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [42]
