"""LoRA adapters and the InferencePool against the sandbox: a real API server (validating against the CRDs,
the InferencePool's from the extension's pinned release), garbage collector, scheduler and kwok GPU nodes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.controllers.conftest import ROOT, condition, create, get_md, kubectl
from tests.controllers.test_model_deployment import hf_secret, phase_is

pytestmark = pytest.mark.sandbox

POOL_CRD = ROOT / "hack" / "sandbox" / "inference-pool" / "inference.networking.k8s.io_inferencepools.yaml"
POOL_CRD_NAME = "inferencepools.inference.networking.k8s.io"
POOL = ("inference.networking.k8s.io", "v1", "inferencepools")


def lora_example() -> tuple[dict[str, Any], dict[str, Any]]:
    md, policy = yaml.safe_load_all((ROOT / "examples" / "vllm-lora-adapters.yaml").read_text())
    return md, policy


def pool_crd_installed(k8s: client.ApiClient) -> bool:
    try:
        client.ApiextensionsV1Api(k8s).read_custom_resource_definition(POOL_CRD_NAME)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def install_pool_crd(sandbox: Any) -> None:
    kubectl(sandbox, "apply", "--server-side", "-f", str(POOL_CRD))
    kubectl(sandbox, "wait", "--for=condition=Established", f"crd/{POOL_CRD_NAME}", "--timeout=60s")


def get_pool(custom: Any, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = custom.get_namespaced_custom_object(*POOL[:2], namespace, POOL[2], name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return result


def test_two_adapters_served_routed_by_name_and_by_classification(
    k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any
) -> None:
    """The example's two adapters become served; one route per adapter compiles to an entry asking the
    model's Service for that adapter; a confidential route refuses the adapter cleared for internal data."""
    hf_secret(k8s, namespace)
    md, policy = lora_example()
    md["spec"]["inferencePool"] = {"enabled": False}
    policy["spec"]["routes"].append(
        {
            "model": "support-confidential",
            "dataClassification": "confidential",
            "backends": [{"modelDeploymentRef": "llama-8b-lora", "adapter": "support-bot"}],
        }
    )
    core = client.CoreV1Api(k8s)
    with run_operator():
        create(custom, namespace, md)
        create(custom, namespace, policy)
        ready = wait_for(phase_is(custom, namespace, "llama-8b-lora", "Ready"), 90, "llama-8b-lora Ready")

        def compiled() -> dict[str, Any] | None:
            try:
                data = core.read_namespaced_config_map("lora-gateway-gateway-config", namespace).data
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            config: dict[str, Any] = yaml.safe_load(data["config.yaml"])
            names = {e["model_name"] for e in config["model_list"]}
            return config if {"contracts", "support"} <= names else None

        config = wait_for(compiled, 60, "both adapter routes in the gateway's config")

        def resolved() -> list[dict[str, Any]] | None:
            """status.routes of the pass that compiled that config (a pass writes the config before its
            status: an earlier status, from before the model was Ready, lists no eligible backend)."""
            status = (
                custom.get_namespaced_custom_object(
                    "modelyard.dev", "v1alpha1", namespace, "routepolicies", "lora-gateway"
                ).get("status")
                or {}
            )
            routes: list[dict[str, Any]] = status.get("routes") or []
            return routes if any(r["model"] == "contracts" and r.get("eligible") for r in routes) else None

        routes = wait_for(resolved, 30, "status.routes with the adapters eligible")
    assert ready["status"]["adapters"] == [
        {
            "name": "legal-summarizer",
            "served": True,
            "reason": "loaded at start (--lora-modules) by 1 ready replica",
        },
        {
            "name": "support-bot",
            "served": True,
            "reason": "loaded at start (--lora-modules) by 1 ready replica",
        },
    ]
    (deployment,) = (
        client.AppsV1Api(k8s)
        .list_namespaced_deployment(namespace, label_selector="modelyard.dev/modeldeployment=llama-8b-lora")
        .items
    )
    args = deployment.spec.template.spec.containers[0].args
    assert args[args.index("--max-lora-rank") + 1] == "32" and args[args.index("--max-loras") + 1] == "2"
    params = {e["model_name"]: e["litellm_params"] for e in config["model_list"]}
    service = f"http://llama-8b-lora.{namespace}.svc:8000/v1"
    assert (
        params["contracts"]["model"] == "openai/legal-summarizer"
        and params["contracts"]["api_base"] == service
    )
    assert params["support"]["model"] == "openai/support-bot" and params["support"]["api_base"] == service
    assert "support-confidential" not in params  # its only backend is refused: the route fails closed
    by_model = {r["model"]: r for r in routes}
    assert by_model["contracts"]["eligible"] == ["ModelDeployment/llama-8b-lora/legal-summarizer"]
    assert by_model["support-confidential"]["rejected"] == [
        {
            "backend": "ModelDeployment/llama-8b-lora/support-bot",
            "reason": "cleared for internal, route carries confidential",
        }
    ]


def test_inference_pool_created_validated_owned_mirrored_and_removed(
    sandbox: Any, k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any
) -> None:
    """Without the extension's CRD the model serves and says so; with it, the pool is created (the API
    server validates it against the pinned CRD, and refuses a broken one), owned by the ModelDeployment,
    its gateways' verdicts mirrored, and it is deleted with the ModelDeployment."""
    if pool_crd_installed(k8s):  # an earlier run in this session installed it: start without
        kubectl(sandbox, "delete", "crd", POOL_CRD_NAME, "--wait=true")
    hf_secret(k8s, namespace)
    md, _ = lora_example()
    with run_operator():
        create(custom, namespace, md)
        absent = wait_for(
            lambda: (
                (c := condition(get_md(custom, namespace, "llama-8b-lora"), "InferencePool"))
                and c["reason"] == "CRDNotInstalled"
                and c
            ),
            60,
            "InferencePool=False/CRDNotInstalled",
        )
        assert absent["status"] == "False" and "not installed" in absent["message"]
        wait_for(phase_is(custom, namespace, "llama-8b-lora", "Ready"), 90, "Ready without the pool's CRD")

        install_pool_crd(sandbox)
        # any change of the spec reconciles again; the pool now exists
        patch = {
            "spec": {"inferencePool": {"endpointPickerRef": {"name": "llama-8b-lora-epp", "port": 9003}}}
        }
        custom.patch_namespaced_custom_object(
            "modelyard.dev", "v1alpha1", namespace, "modeldeployments", "llama-8b-lora", patch
        )
        pool = wait_for(lambda: get_pool(custom, namespace, "llama-8b-lora"), 60, "the InferencePool")
        owner = get_md(custom, namespace, "llama-8b-lora")
        assert pool["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
        assert pool["spec"]["selector"]["matchLabels"] == {
            "app.kubernetes.io/instance": "llama-8b-lora",
            "app.kubernetes.io/component": "model-server",
            "modelyard.dev/modeldeployment": "llama-8b-lora",
        }
        assert pool["spec"]["targetPorts"] == [{"number": 8000}]
        assert pool["spec"]["endpointPickerRef"]["port"] == {"number": 9003}
        assert pool["spec"]["endpointPickerRef"]["kind"] == "Service"  # the CRD's default, applied
        pods = (
            client.CoreV1Api(k8s)
            .list_namespaced_pod(
                namespace,
                label_selector=",".join(
                    f"{k}={v}" for k, v in pool["spec"]["selector"]["matchLabels"].items()
                ),
            )
            .items
        )
        assert pods and all(p.metadata.labels["app.kubernetes.io/component"] == "model-server" for p in pods)

        # the API server validates pools against the installed CRD
        broken = copy.deepcopy(pool)
        for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
            broken["metadata"].pop(key, None)
        broken["metadata"]["name"] = "broken"
        broken["spec"]["targetPorts"] = [{"number": 0}]
        broken["spec"]["endpointPickerRef"].pop("port")
        with pytest.raises(ApiException) as refused:
            custom.create_namespaced_custom_object(*POOL[:2], namespace, POOL[2], broken)
        assert refused.value.status == 422
        assert "targetPorts[0].number" in refused.value.body and "port is required" in refused.value.body

    # kopf finds resources to watch in the API's discovery when it starts and on each CRD event, so a CRD
    # installed while it runs may be watched only from its next start (README: install the CRD first, or
    # restart the operator); the pool was applied by the first one, its verdicts are watched by the second
    with run_operator():
        # a gateway's verdicts, as it writes them into the pool's status, show in the ModelDeployment's
        status = {
            "parents": [
                {
                    "parentRef": {
                        "group": "gateway.networking.k8s.io",
                        "kind": "Gateway",
                        "name": "inference-gw",
                    },
                    "controllerName": "example.net/gateway-controller",
                    "conditions": [
                        {
                            "type": "Accepted",
                            "status": "True",
                            "reason": "Accepted",
                            "message": "",
                            "observedGeneration": 1,
                            "lastTransitionTime": "2026-01-01T00:00:00Z",
                        },
                        {
                            "type": "ResolvedRefs",
                            "status": "False",
                            "reason": "InvalidExtensionRef",
                            "message": "Service llama-8b-lora-epp not found",
                            "observedGeneration": 1,
                            "lastTransitionTime": "2026-01-01T00:00:00Z",
                        },
                    ],
                }
            ]
        }
        custom.patch_namespaced_custom_object_status(
            *POOL[:2], namespace, POOL[2], "llama-8b-lora", {"status": status}
        )

        def mirrored() -> Any:
            obj = get_md(custom, namespace, "llama-8b-lora")
            accepted, refs = (
                condition(obj, "InferencePoolAccepted"),
                condition(obj, "InferencePoolResolvedRefs"),
            )
            return (
                accepted
                and refs
                and accepted["status"] == "True"
                and refs["status"] == "False"
                and (accepted, refs, obj)
            )

        accepted, refs, obj = wait_for(mirrored, 60, "the gateway's verdicts in the ModelDeployment's status")
        assert refs["reason"] == "InvalidExtensionRef"
        assert refs["message"] == "Gateway inference-gw: Service llama-8b-lora-epp not found"
        assert accepted["message"] == "Accepted by Gateway inference-gw"
        assert condition(obj, "Ready")["status"] == "True"  # the pool never holds the model back

    # deleting the ModelDeployment removes its pool (garbage collection through the owner reference)
    custom.delete_namespaced_custom_object(
        "modelyard.dev", "v1alpha1", namespace, "modeldeployments", "llama-8b-lora"
    )
    wait_for(
        lambda: get_pool(custom, namespace, "llama-8b-lora") is None, 60, "the pool deleted with its owner"
    )
