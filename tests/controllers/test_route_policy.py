"""The RoutePolicy controller against the sandbox: resolution, the gateway it runs, fail-closed routes."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.controllers.conftest import condition, create, kubectl
from tests.controllers.test_provider_binding import CLIENT as AZURE_CLIENT
from tests.controllers.test_provider_binding import RESOURCE as AZURE_ACCOUNTS
from tests.controllers.test_provider_binding import azure_binding
from tests.fakes.azure import AzureFake

pytestmark = pytest.mark.sandbox

GROUP, VERSION = "modelyard.dev", "v1alpha1"


def model(name: str, classification: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelyard.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "llama-3.1-8b-instruct", "source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
            "gpu": {"type": "nvidia-h100-80gb"},
            "dataClassification": classification,
        },
    }


POLICY = {
    "apiVersion": "modelyard.dev/v1alpha1",
    "kind": "RoutePolicy",
    "metadata": {"name": "gw"},
    "spec": {
        "routes": [
            {
                "model": "chat",
                "dataClassification": "confidential",
                "backends": [{"modelDeploymentRef": "secure"}, {"modelDeploymentRef": "missing"}],
            },
            {
                "model": "secret",
                "dataClassification": "restricted",
                "backends": [{"modelDeploymentRef": "basic"}],
            },
        ],
        "gateway": {"replicas": 2},
    },
}


def policy(custom: client.CustomObjectsApi, namespace: str) -> dict[str, Any]:
    result: dict[str, Any] = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "routepolicies", "gw"
    )
    return result


def test_route_policy_runs_a_fail_closed_gateway(
    sandbox: Any, k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any
) -> None:
    with run_operator():
        create(custom, namespace, model("secure", "restricted"))
        create(custom, namespace, model("basic", "internal"))
        create(custom, namespace, POLICY)

        def gateway_ready() -> dict[str, Any] | None:
            obj = policy(custom, namespace)
            ready = condition(obj, "GatewayReady")
            eligible = [r["eligible"] for r in obj.get("status", {}).get("routes", [])]
            return (
                obj
                if ready and ready["status"] == "True" and eligible == [["ModelDeployment/secure"], []]
                else None
            )

        obj = wait_for(gateway_ready, 90, "the gateway Ready with the secure model eligible")
    status = obj["status"]
    assert status["endpoint"] == f"http://gw-gateway.{namespace}.svc:4000/v1"
    chat, secret = status["routes"]
    assert chat["rejected"] == [{"backend": "ModelDeployment/missing", "reason": "not found"}]
    assert "cleared for internal" in secret["rejected"][0]["reason"]
    assert condition(obj, "BackendsResolved")["reason"] == "BackendNotFound"
    compliant = condition(obj, "Compliant")
    assert compliant["status"] == "False" and "secret" in compliant["message"]
    assert condition(obj, "Ready")["status"] == "False"

    core, apps, net = client.CoreV1Api(k8s), client.AppsV1Api(k8s), client.NetworkingV1Api(k8s)
    config = yaml.safe_load(
        core.read_namespaced_config_map("gw-gateway-config", namespace).data["config.yaml"]
    )
    served = {entry["model_name"] for entry in config["model_list"]}
    assert served == {"chat"}  # the route with no eligible backend is left out: fail closed
    assert config["model_list"][0]["litellm_params"]["api_base"] == f"http://secure.{namespace}.svc:8000/v1"
    assert config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"

    deployment = apps.read_namespaced_deployment("gw-gateway", namespace)
    assert deployment.status.ready_replicas == 2
    env = {e.name: e for e in deployment.spec.template.spec.containers[0].env}
    assert env["LITELLM_MASTER_KEY"].value_from.secret_key_ref.name == "gw-gateway-master-key"
    key = core.read_namespaced_secret("gw-gateway-master-key", namespace)
    assert key.metadata.owner_references[0].kind == "RoutePolicy"

    egress = net.read_namespaced_network_policy("gw-gateway", namespace).spec.egress
    ports = sorted(p.port for rule in egress for p in rule.ports or [])
    assert ports == [53, 53, 8000]  # DNS and the eligible model server only: no way out to the internet
    to_servers = next(rule for rule in egress if rule.ports[0].port == 8000)
    assert to_servers.to[0].pod_selector.match_labels["modelyard.dev/modeldeployment"] == "secure"

    table = kubectl(sandbox, "get", "routepolicies", "-n", namespace).splitlines()
    assert table[0].split()[:4] == ["NAME", "SERVED", "ENDPOINT", "READY"]
    assert table[1].split()[:4] == [
        "gw",
        "chat",
        f"http://gw-gateway.{namespace}.svc:4000/v1",
        "False",
    ]


def test_backend_becoming_eligible_joins_the_gateway(
    k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any
) -> None:
    with run_operator():
        create(custom, namespace, model("basic", "internal"))
        create(custom, namespace, POLICY)
        wait_for(lambda: condition(policy(custom, namespace), "Compliant"), 60, "Compliant condition")
        # raise the model's clearance: the restricted route may now use it
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "modeldeployments",
            "basic",
            {"spec": {"dataClassification": "restricted"}},
        )

        def secret_served() -> bool:
            routes = policy(custom, namespace).get("status", {}).get("routes", [])
            return any(r["model"] == "secret" and r["eligible"] == ["ModelDeployment/basic"] for r in routes)

        wait_for(secret_served, 60, "the secret route to use the re-cleared model")
    core = client.CoreV1Api(k8s)
    config = yaml.safe_load(
        core.read_namespaced_config_map("gw-gateway-config", namespace).data["config.yaml"]
    )
    assert "secret" in {entry["model_name"] for entry in config["model_list"]}


def test_binding_losing_private_connectivity_leaves_confidential_routes_and_comes_back(
    k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any, azure: AzureFake, clouds: Any
) -> None:
    account_name = f"flip-{namespace[-6:]}"
    resource = f"{AZURE_ACCOUNTS}/{account_name}"
    azure.state.federated[AZURE_CLIENT] = f"system:serviceaccount:{namespace}:modelyard-gateway"
    azure.add_private_account(resource, f"https://{account_name}.openai.azure.com/", {"gpt-4o-prod"})
    clouds(f"{account_name}.openai.azure.com", "10.1.0.7")
    both = ["ModelDeployment/secure", "ProviderBinding/azure/gpt-4o-prod"]
    with run_operator():
        create(custom, namespace, model("secure", "restricted"))
        create(custom, namespace, azure_binding("azure", account_name))
        create(
            custom,
            namespace,
            {
                **POLICY,
                "spec": {
                    "routes": [
                        {
                            "model": "chat",
                            "dataClassification": "confidential",
                            "backends": [
                                {"modelDeploymentRef": "secure"},
                                {"providerBindingRef": "azure", "model": "gpt-4o-prod"},
                            ],
                        }
                    ]
                },
            },
        )
        wait_for(lambda: eligible(custom, namespace) == both, 60, "both backends eligible")
        assert "azure/gpt-4o-prod" in served_models(k8s, namespace)

        azure.state.accounts[resource]["properties"]["publicNetworkAccess"] = "Enabled"  # someone opens it
        wait_for(lambda: eligible(custom, namespace) == both[:1], 45, "the binding dropped from the route")
        rejected = policy(custom, namespace)["status"]["routes"][0]["rejected"]
        assert (
            rejected[0]["backend"] == both[1] and "private connectivity not verified" in rejected[0]["reason"]
        )
        assert "azure/gpt-4o-prod" not in served_models(k8s, namespace)

        azure.state.accounts[resource]["properties"]["publicNetworkAccess"] = "Disabled"  # closed again
        wait_for(lambda: eligible(custom, namespace) == both, 45, "the binding restored to the route")
        assert "azure/gpt-4o-prod" in served_models(k8s, namespace)


def eligible(custom: Any, namespace: str) -> list[str]:
    routes = policy(custom, namespace).get("status", {}).get("routes", [])
    return list(routes[0]["eligible"]) if routes else []


def served_models(k8s: Any, namespace: str) -> set[str]:
    data = (
        client.CoreV1Api(k8s).read_namespaced_config_map("gw-gateway-config", namespace).data["config.yaml"]
    )
    return {entry["litellm_params"]["model"] for entry in yaml.safe_load(data)["model_list"]}


def test_policies_in_one_namespace_share_the_gateway_service_account(
    k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any
) -> None:
    """Each policy adds only its own owner reference to the namespace's gateway ServiceAccount: deleting one
    policy leaves the ServiceAccount to the others (garbage collection drops the deleted owner)."""
    core = client.CoreV1Api(k8s)

    def owners() -> list[str]:
        try:
            account = core.read_namespaced_service_account("modelyard-gateway", namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return []
            raise
        return sorted(ref.name for ref in account.metadata.owner_references or [])

    with run_operator():
        for name in ("first", "second"):
            create(custom, namespace, {**POLICY, "metadata": {"name": name}})
        wait_for(lambda: owners() == ["first", "second"], 60, "both policies own the ServiceAccount")
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "routepolicies", "first")
        wait_for(lambda: owners() == ["second"], 60, "the deleted policy's reference dropped")
        labels = core.read_namespaced_service_account("modelyard-gateway", namespace).metadata.labels
        assert "modelyard.dev/routepolicy" not in labels  # no policy's mark on what all of them share
