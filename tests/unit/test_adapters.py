"""LoRA adapters: the API's rules, the memory vLLM preallocates for them, the planner's charge."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from modelyard.api.adapters import InferencePoolSpec
from modelyard.api.common import DataClassification
from modelyard.api.model_deployment import ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus
from modelyard.api.policy import ClusterPolicy
from modelyard.api.route_policy import RoutePolicy
from modelyard.audit.model_deployment import model_deployment_findings
from modelyard.cli.main import main
from modelyard.errors import UserError
from modelyard.planning.catalog import MODELS
from modelyard.planning.lora import LoraLimits, lora_bytes_per_gpu, lora_elements_per_slot_per_gpu
from modelyard.planning.spec import plan_deployment
from modelyard.render.adapters import rank_check_py, rank_check_sh
from modelyard.render.gateway import render_gateway
from modelyard.render.identity import IdentityWiring
from modelyard.render.inference_pool import inference_gateway_egress, pool_conditions, render_inference_pool
from modelyard.render.litellm import compile_litellm_config
from modelyard.render.model_deployment import PERMANENT_FAILURE, PORT, SERVER, render_model_deployment
from modelyard.render.routing import resolve_routes

L8B = MODELS["meta-llama/Llama-3.1-8B-Instruct"]


def spec(**extra: Any) -> ModelDeploymentSpec:
    body: dict[str, Any] = {
        "model": {
            "name": "llama-8b",
            "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
            "revision": "0e9e39f249a16976918f6564b8830bc894c89659",
        },
        "gpu": {"type": "nvidia-l4"},
        "dataClassification": "confidential",
        "adapters": [
            {"name": "support", "source": "hf://acme/llama-8b-support", "revision": "1a2b3c"},
            {"name": "legal", "source": "s3://acme-adapters/legal/", "dataClassification": "internal"},
        ],
        **extra,
    }
    return ModelDeploymentSpec.model_validate(body)


# --- API ------------------------------------------------------------------------------------------


def test_adapter_classification_defaults_to_the_base() -> None:
    s = spec()
    assert [a.cleared_for(s.data_classification) for a in s.adapters] == ["confidential", "internal"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"engine": "nim", "model": {"name": "m", "source": "ngc://nim/meta/llama-3.1-8b-instruct:1.8"}},
            "engine vllm only",
        ),
        (
            {"adapters": [{"name": "a", "source": "hf://x/a", "dataClassification": "restricted"}]},
            "may not exceed",
        ),
        (
            {"adapters": [{"name": "a", "source": "hf://x/a"}, {"name": "a", "source": "hf://x/b"}]},
            "duplicate name",
        ),
        ({"adapters": [{"name": "llama-8b", "source": "hf://x/a"}]}, "must differ from model.name"),
        ({"adapters": [{"name": "a=b", "source": "hf://x/a"}]}, "pattern"),
        ({"adapters": [{"name": "a", "source": "ngc://nim/x:1"}]}, "pattern"),
        ({"lora": {"maxRank": 7}}, "must be one of 1, 8, 16"),
        ({"lora": {"maxLoras": 4, "maxCpuLoras": 2}}, "maxCpuLoras must be at least maxLoras"),
        ({"inferencePool": {"enabled": True}}, "endpointPickerRef: required"),
    ],
)
def test_adapter_rules(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(**change)


# --- memory ---------------------------------------------------------------------------------------


def test_lora_memory_of_llama_8b_by_hand() -> None:
    """Llama-3.1-8B (hidden 4096, 32 query and 8 KV heads of 128, MLP 14336, vocabulary 128256, 32 layers)
    at TP 2 and rank 16, summed module by module as vLLM's create_lora_weights allocates them."""
    r, h, q, kv, mlp, vocab = 16, 4096, 4096, 1024, 14336, 128256
    qkv = 3 * r * h + r * (q // 2 + kv // 2 + kv // 2)  # column parallel: 3 A slices whole, B sharded
    o_proj = r * (q // 2) + h * r  # row parallel: A sharded, B whole
    gate_up = 2 * r * h + 2 * (mlp // 2) * r
    down = r * (mlp // 2) + h * r
    embeddings = vocab * r + h * r
    lm_head = r * h + vocab * r
    per_slot = 32 * (qkv + o_proj + gate_up + down) + embeddings + lm_head
    assert per_slot == 32_546_816
    assert lora_elements_per_slot_per_gpu(L8B, 2, 16) == per_slot
    assert lora_bytes_per_gpu(L8B, 2, LoraLimits(slots=4, max_rank=16), "bfloat16") == 4 * per_slot * 2


def test_lora_memory_grows_with_slots_and_rank_and_shrinks_with_tp() -> None:
    base = lora_bytes_per_gpu(L8B, 1, LoraLimits(1, 16), "bfloat16")
    assert lora_bytes_per_gpu(L8B, 1, LoraLimits(3, 16), "bfloat16") == 3 * base
    assert lora_bytes_per_gpu(L8B, 1, LoraLimits(1, 64), "bfloat16") == 4 * base
    assert lora_bytes_per_gpu(L8B, 4, LoraLimits(1, 16), "bfloat16") < base


def test_mixture_of_experts_adapters_are_refused() -> None:
    with pytest.raises(UserError, match="mixture-of-experts"):
        lora_bytes_per_gpu(MODELS["openai/gpt-oss-20b"], 1, LoraLimits(1, 16), "bfloat16")


def test_quantized_checkpoint_has_its_base_shape() -> None:
    awq = MODELS["hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4"]
    assert lora_elements_per_slot_per_gpu(awq, 1, 16) == lora_elements_per_slot_per_gpu(L8B, 1, 16)


# --- rendered objects -----------------------------------------------------------------------------


def _render(s: ModelDeploymentSpec) -> Any:
    md = ModelDeployment.model_validate(
        {"metadata": {"name": "llama", "namespace": "ml"}, "spec": s.to_wire()}
    )
    return render_model_deployment(md, plan_deployment(md.spec))


def _kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


def test_download_job_fetches_each_adapter_beside_the_weights_with_the_same_script() -> None:
    children = _render(
        spec(
            model={
                "name": "llama-8b",
                "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
                "revision": "0e9e39f249a16976918f6564b8830bc894c89659",
                "credentialsSecretRef": {"name": "hf", "key": "t"},
                "roleArn": "arn:aws:iam::123456789012:role/adapters",
            }
        )
    )
    job = _kind(children.cache, "Job")
    base, hf, s3 = job["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in (base, hf, s3)] == ["download", "adapter-0", "adapter-1"]
    env = {
        c["name"]: {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}
        for c in job["spec"]["template"]["spec"]["containers"]
    }
    # the base model's hf:// download, for the adapter's repository, then the adapter's rank check
    assert hf["command"][2].startswith(base["command"][2].rsplit("pathlib.Path(target", 1)[0])
    assert env["adapter-0"]["REPO"] == "acme/llama-8b-support" and env["adapter-0"]["REVISION"] == "1a2b3c"
    assert env["adapter-0"]["TARGET"] == "/models/hf/acme/llama-8b-support/1a2b3c"
    assert env["adapter-0"]["HF_TOKEN"] == env["download"]["HF_TOKEN"]  # the base model's token
    assert s3["image"].startswith("amazon/aws-cli")
    assert env["adapter-1"]["SOURCE"] == "s3://acme-adapters/legal/"
    assert env["adapter-1"]["TARGET"] == "/models/s3/acme-adapters/legal"
    assert env["adapter-1"]["AWS_ROLE_ARN"] == "arn:aws:iam::123456789012:role/adapters"
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert [r["onExitCodes"]["containerName"] for r in rules] == ["download", "adapter-0", "adapter-1"]
    volumes = [v["name"] for v in job["spec"]["template"]["spec"]["volumes"]]
    assert "aws-iam-token" in volumes or any("token" in v for v in volumes)


def test_adding_an_adapter_is_a_new_download_job_and_rolls_the_server() -> None:
    one = _render(spec(adapters=[{"name": "support", "source": "hf://acme/support", "revision": "1"}]))
    two = _render(spec())
    assert _kind(one.cache, "Job")["metadata"]["name"] != _kind(two.cache, "Job")["metadata"]["name"]
    template = [_kind(c.serving, "Deployment")["spec"]["template"] for c in (one, two)]
    assert template[0] != template[1]
    none = _render(spec(adapters=[]))
    base_only = _kind(none.cache, "Job")
    assert [c["name"] for c in base_only["spec"]["template"]["spec"]["containers"]] == ["download"]
    args = _kind(none.serving, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not any("lora" in a for a in args)


def test_pvc_adapters_are_mounted_read_only_and_a_pvc_model_takes_only_pvc_adapters() -> None:
    s = spec(
        adapters=[
            {"name": "a", "source": "pvc://adapters/a"},
            {"name": "b", "source": "pvc://adapters/b"},
            {"name": "c", "source": "pvc://llama-weights/c"},
        ]
    )
    pod = _kind(_render(s).serving, "Deployment")["spec"]["template"]["spec"]
    assert {"name": "adapter-0", "persistentVolumeClaim": {"claimName": "adapters", "readOnly": True}} in pod[
        "volumes"
    ]
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "adapter-0", "mountPath": "/adapters/0", "readOnly": True} in mounts
    args = pod["containers"][0]["args"]
    modules = args[args.index("--lora-modules") + 1 :]
    assert [m.split('"path":"')[1].split('"')[0] for m in modules] == [
        "/adapters/0/a",
        "/adapters/0/b",
        "/models/c",
    ]  # llama-weights is the model's own cache claim
    with pytest.raises(ValidationError, match="pvc:// model has no download Job"):
        spec(
            model={"name": "m", "source": "pvc://weights/llama"},
            adapters=[{"name": "a", "source": "hf://x/a"}],
        )


def test_download_egress_opens_https_for_an_hf_adapter_of_an_s3_compatible_model() -> None:
    s = spec(
        model={
            "name": "m",
            "source": "s3://weights/llama-3.1-8b-instruct",
            "endpointURL": "http://minio:9000",
            "architecture": None,
        },
        adapters=[{"name": "a", "source": "hf://x/a", "revision": "1"}],
    )
    s = s.model_copy(update={"model": s.model.model_copy(update={"name": "llama-3.1-8b-instruct"})})
    policies = [o for o in _render(s).base if o["kind"] == "NetworkPolicy"]
    policy = next(o for o in policies if "download" in o["metadata"]["name"])
    ports = [rule["ports"][0]["port"] for rule in policy["spec"]["egress"][1:]]
    assert ports == [443, 9000]


# --- routing --------------------------------------------------------------------------------------


def _ready_md() -> ModelDeployment:
    md = ModelDeployment.model_validate(
        {"metadata": {"name": "llama", "namespace": "ml", "generation": 1}, "spec": spec().to_wire()}
    )
    ready = {"type": "Ready", "status": "True", "reason": "Ready", "observedGeneration": 1}
    return md.model_copy(update={"status": ModelDeploymentStatus.model_validate({"conditions": [ready]})})


def _policy(*routes: dict[str, Any]) -> RoutePolicy:
    return RoutePolicy.model_validate(
        {"metadata": {"name": "gw", "namespace": "ml"}, "spec": {"routes": routes}}
    )


def test_each_adapter_route_requests_the_adapter_from_the_same_service() -> None:
    policy = _policy(
        {"model": "support", "backends": [{"modelDeploymentRef": "llama", "adapter": "support"}]},
        {"model": "legal", "backends": [{"modelDeploymentRef": "llama", "adapter": "legal"}]},
        {"model": "base", "backends": [{"modelDeploymentRef": "llama"}]},
    )
    resolved, statuses = resolve_routes(policy, ClusterPolicy(), {"llama": _ready_md()}, {}, namespace="ml")
    assert [s.eligible for s in statuses] == [
        ["ModelDeployment/llama/support"],
        ["ModelDeployment/llama/legal"],
        ["ModelDeployment/llama"],
    ]
    entries = compile_litellm_config(policy, resolved)["model_list"]
    params = {e["model_name"]: e["litellm_params"] for e in entries}
    assert params["support"]["model"] == "openai/support"
    assert params["legal"]["model"] == "openai/legal"
    assert params["base"]["model"] == "openai/llama-8b"
    assert {p["api_base"] for p in params.values()} == {"http://llama.ml.svc:8000/v1"}


@pytest.mark.parametrize(
    ("adapter", "data", "reason"),
    [
        ("legal", "confidential", "cleared for internal, route carries confidential"),  # its own class
        ("legal", "internal", None),
        ("support", "confidential", None),  # the base's class
        ("support", "restricted", "cleared for confidential, route carries restricted"),
        ("missing", "public", "not found"),
    ],
)
def test_an_adapters_classification_decides_eligibility(adapter: str, data: str, reason: str | None) -> None:
    policy = _policy(
        {
            "model": "chat",
            "dataClassification": data,
            "backends": [{"modelDeploymentRef": "llama", "adapter": adapter}],
        }
    )
    resolved, statuses = resolve_routes(policy, ClusterPolicy(), {"llama": _ready_md()}, {}, namespace="ml")
    rejected = {r.backend: r.reason for r in statuses[0].rejected}
    assert rejected == ({} if reason is None else {f"ModelDeployment/llama/{adapter}": reason})
    assert bool(resolved[0].backends) is (reason is None)  # a refused adapter never reaches the gateway


def test_adapter_needs_a_model_deployment() -> None:
    with pytest.raises(ValidationError, match="adapter: only with modelDeploymentRef"):
        _policy({"model": "x", "backends": [{"providerBindingRef": "b", "model": "m", "adapter": "a"}]})


# --- audit ----------------------------------------------------------------------------------------


def test_audit_flags_unpinned_adapters_and_one_cleared_above_its_base() -> None:
    s = spec()  # support: "1a2b3c" (a short hash), legal: s3:// (the owner's storage, versioned by path)
    found = [(f.code, f.severity) for f in model_deployment_findings(s)]
    assert found == [("UNPINNED_ADAPTER_REVISION", "medium")]
    # the API refuses an adapter above its base; one stored before that rule is still reported
    s.adapters[1].data_classification = DataClassification.RESTRICTED
    found = [(f.code, f.severity) for f in model_deployment_findings(s)]
    assert found == [("ADAPTER_CLASSIFICATION_ABOVE_BASE", "high"), ("UNPINNED_ADAPTER_REVISION", "medium")]
    pinned = spec(
        adapters=[{"name": "a", "source": "hf://x/a", "revision": "0123456789abcdef0123456789abcdef01234567"}]
    )
    assert model_deployment_findings(pinned) == []


def test_audit_of_a_file_fails_on_an_unpinned_adapter(tmp_path: Any, capsys: Any) -> None:
    body = {
        "apiVersion": "modelyard.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "m"},
        "spec": spec(adapters=[{"name": "a", "source": "hf://x/a", "revision": "main"}]).to_wire(),
    }
    (tmp_path / "md.yaml").write_text(yaml.safe_dump(body))
    assert main(["audit", "-f", str(tmp_path / "md.yaml"), "--fail-on", "medium", "-o", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    (finding,) = report["objects"][0]["findings"]
    assert finding["code"] == "UNPINNED_ADAPTER_REVISION" and "revision 'main'" in finding["message"]


# --- InferencePool and the inference Gateway ------------------------------------------------------


def _pooled_md(enabled: bool = True) -> ModelDeployment:
    md = _ready_md()
    pool = {"enabled": enabled, "endpointPickerRef": {"name": "llama-epp"}} if enabled else {"enabled": False}
    return md.model_copy(
        update={"spec": md.spec.model_copy(update={"inference_pool": InferencePoolSpec(**pool)})}
    )


def test_inference_pool_selects_the_serving_pods_on_the_engine_port() -> None:
    md = _pooled_md()
    pool = render_inference_pool(md, owner_kind="ModelDeployment", component=SERVER, port=PORT)
    deployment = _kind(render_model_deployment(md, plan_deployment(md.spec)).serving, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pool["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pool["spec"]["targetPorts"] == [{"number": PORT}]
    assert pool["spec"]["endpointPickerRef"] == {"name": "llama-epp", "port": {"number": 9002}}


@pytest.mark.parametrize(
    ("parents", "accepted", "resolved"),
    [
        ([], ("Unknown", "NoParent"), ("Unknown", "NoParent")),
        ([("gw-a", "True", "True")], ("True", "Accepted"), ("True", "ResolvedRefs")),
        (
            [("gw-a", "True", "True"), ("gw-b", "False", "True")],
            ("False", "NotSupportedByParent"),
            ("True", "ResolvedRefs"),
        ),
    ],
)
def test_pool_conditions_fold_every_gateways_verdict(
    parents: list[tuple[str, str, str]], accepted: tuple[str, str], resolved: tuple[str, str]
) -> None:
    reasons = {
        "Accepted": {"True": "Accepted", "False": "NotSupportedByParent"},
        "ResolvedRefs": {"True": "ResolvedRefs", "False": "InvalidExtensionRef"},
    }
    status = {
        "parents": [
            {
                "parentRef": {"name": name},
                "conditions": [
                    {"type": kind, "status": value, "reason": reasons[kind][value], "message": ""}
                    for kind, value in (("Accepted", acc), ("ResolvedRefs", ref))
                ],
            }
            for name, acc, ref in parents
        ]
    }
    conds = {c.type: (c.status, c.reason) for c in pool_conditions({"status": status})}
    assert conds == {"InferencePoolAccepted": accepted, "InferencePoolResolvedRefs": resolved}


def test_routes_to_a_pooled_model_go_through_the_clusters_inference_gateway() -> None:
    policy = _policy(
        {"model": "support", "backends": [{"modelDeploymentRef": "llama", "adapter": "support"}]}
    )
    cluster = ClusterPolicy(inference_gateway_url="http://inference-gw.gateway-system.svc:8080")
    for md, api_base in (
        (_pooled_md(), "http://inference-gw.gateway-system.svc:8080/v1"),
        (_pooled_md(enabled=False), "http://llama.ml.svc:8000/v1"),
    ):
        routes, _ = resolve_routes(policy, cluster, {"llama": md}, {}, namespace="ml")
        (entry,) = compile_litellm_config(policy, routes)["model_list"]
        assert entry["litellm_params"]["api_base"] == api_base
        assert entry["litellm_params"]["model"] == "openai/support"
    routes, _ = resolve_routes(policy, cluster, {"llama": _pooled_md()}, {}, namespace="ml")
    netpol = next(
        o
        for o in render_gateway(policy, routes, IdentityWiring(), namespace="ml")
        if o["kind"] == "NetworkPolicy"
    )
    assert {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway-system"}}}],
        "ports": [{"protocol": "TCP", "port": 8080}],
    } in netpol["spec"]["egress"]
    assert not any("podSelector" in str(rule) and "llama" in str(rule) for rule in netpol["spec"]["egress"])
    # without a Gateway in the cluster policy the pool changes nothing about routing
    routes, _ = resolve_routes(policy, ClusterPolicy(), {"llama": _pooled_md()}, {}, namespace="ml")
    assert routes[0].backends[0].target.api_base == "http://llama.ml.svc:8000/v1"


@pytest.mark.parametrize(
    ("url", "to"),
    [
        ("http://10.0.0.7:80", [{"ipBlock": {"cidr": "10.0.0.7/32"}}]),
        ("https://gw.example.com", None),
    ],
)
def test_inference_gateway_egress_by_address(url: str, to: Any) -> None:
    rule = inference_gateway_egress(url)
    assert rule.get("to") == to and rule["ports"][0]["port"] == (443 if url.startswith("https") else 80)


# --- the adapter's rank, checked where it is downloaded -------------------------------------------


def _run_check(kind: str, tmp_path: Any, config: dict[str, Any] | None, limit: int) -> Any:
    if config is not None:
        (tmp_path / "adapter_config.json").write_text(json.dumps(config, indent=2))
    env = {"TARGET": str(tmp_path), "MAX_LORA_RANK": str(limit), "PATH": "/usr/bin:/bin"}
    if kind == "hf":
        code = "import os, pathlib, sys\ntarget = os.environ['TARGET']\n" + rank_check_py(PERMANENT_FAILURE)
        argv = [sys.executable, "-c", code]
    else:
        argv = ["/bin/sh", "-c", "true " + rank_check_sh(PERMANENT_FAILURE) + "&& echo checked"]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("kind", ["hf", "s3"])
@pytest.mark.parametrize(
    ("config", "limit", "error"),
    [
        ({"r": 16, "lora_alpha": 32, "peft_type": "LORA"}, 16, None),
        ({"peft_type": "LORA", "r": 8}, 64, None),
        ({"r": 64, "lora_alpha": 16}, 16, "adapter rank 64 exceeds spec.lora.maxRank 16"),
        (None, 16, "not a PEFT LoRA adapter"),
        ({"lora_alpha": 16}, 16, "not a PEFT LoRA adapter"),
    ],
)
def test_download_refuses_an_adapter_above_the_rank_limit(
    kind: str, tmp_path: Any, config: dict[str, Any] | None, limit: int, error: str | None
) -> None:
    """The rendered check, run as the download container runs it: a rank vLLM would refuse to load fails
    the Job at once (exit 42) with the reason, instead of a server that crash-loops."""
    done = _run_check(kind, tmp_path, config, limit)
    if error is None:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == PERMANENT_FAILURE and error in done.stderr


def test_each_adapter_download_checks_the_rank_before_marking_it_complete() -> None:
    job = _kind(_render(spec(lora={"maxRank": 64})).cache, "Job")
    base, hf, s3 = job["spec"]["template"]["spec"]["containers"]
    script = hf["command"][2]
    assert rank_check_py(PERMANENT_FAILURE) in script
    assert script.index("adapter_config.json") < script.index(".modelyard-complete")
    assert rank_check_sh(PERMANENT_FAILURE) in s3["command"][2]
    assert {"name": "MAX_LORA_RANK", "value": "64"} in hf["env"] and {
        "name": "MAX_LORA_RANK",
        "value": "64",
    } in s3["env"]
    assert "adapter_config.json" not in base["command"][2] and "MAX_LORA_RANK" not in str(base["env"])
