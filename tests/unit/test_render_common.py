"""render/common: the labels the controllers' watches select on (one definition, carried by every child),
and the children every renderer builds alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate

from modelyard.manifests import load
from modelyard.render.common import (
    COMPONENT_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    cluster_ip_service,
    dns_egress,
    gateway_labels,
    http_probe,
    https_egress,
    label_selector,
    labels,
    metadata,
    network_policy,
    owner_label,
    pod_security_context,
    restricted_security_context,
    selector_labels,
    tcp_egress,
    tmp_mount,
    tmp_volume,
)
from modelyard.render.offline import render_manifests

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_owner_label_is_the_kind_under_the_project_prefix() -> None:
    assert owner_label("ModelDeployment") == "modelyard.dev/modeldeployment"
    assert owner_label("RoutePolicy") == "modelyard.dev/routepolicy"


def test_labels_carry_the_keys_the_watches_select_on() -> None:
    child = labels("ModelDeployment", "llama", "model-server")
    assert child[MANAGED_BY_LABEL] == MANAGED_BY
    assert child[COMPONENT_LABEL] == "model-server"
    assert child[owner_label("ModelDeployment")] == "llama"
    assert selector_labels("ModelDeployment", "llama", "model-server").items() <= child.items()


def test_label_selector() -> None:
    assert label_selector({MANAGED_BY_LABEL: MANAGED_BY, COMPONENT_LABEL: "gateway"}) == (
        "app.kubernetes.io/managed-by=modelyard,app.kubernetes.io/component=gateway"
    )


def test_every_rendered_child_is_seen_by_the_managed_by_watch() -> None:
    """The operator watches its Deployments and Jobs with a managed-by selector: a child without the label
    would never wake its owner."""
    objects = render_manifests(load(EXAMPLES))
    assert {obj["kind"] for obj in objects} >= {"Deployment", "Job", "Service", "ConfigMap", "ServiceAccount"}
    for obj in objects:
        assert obj["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY, obj["kind"]
        assert COMPONENT_LABEL in obj["metadata"]["labels"], obj["kind"]


# --- the children every renderer builds alike -------------------------------------------------------------
K8S_VERSION = "1.35.0"


def meta(name: str = "llama") -> dict[str, Any]:
    return metadata(name, "llm", labels("ModelDeployment", name, "model-server"), "0" * 16)


def pod(security_context: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(),
        "spec": {"securityContext": security_context, "containers": [container], "volumes": [tmp_volume()]},
    }


def test_the_shared_children_validate_against_kubernetes_schemas() -> None:
    selector = selector_labels("ModelDeployment", "llama", "model-server")
    container = {
        "name": "server",
        "image": "x",
        "ports": [{"name": "http", "containerPort": 8000}],
        "readinessProbe": http_probe("/health", period=10, failures=3),
        "securityContext": restricted_security_context(read_only_root_filesystem=True),
        "volumeMounts": [tmp_mount()],
    }
    objects = [
        cluster_ip_service(meta(), selector, 8000),
        network_policy(
            meta(), selector, egress=[dns_egress(), https_egress(["10.0.0.0/24"]), tcp_egress(9000)]
        ),
        pod(pod_security_context(1000, fs_group=True), container),
    ]
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_a_network_policy_without_ingress_rules_refuses_every_connection() -> None:
    """Both policy types, and no ingress key at all: Kubernetes then denies all ingress to the pods."""
    spec = network_policy(meta(), {"a": "b"}, egress=[dns_egress()])["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in spec
    opened = network_policy(meta(), {"a": "b"}, egress=[], ingress=[{"from": [{"podSelector": {}}]}])["spec"]
    assert opened["ingress"] == [{"from": [{"podSelector": {}}]}] and opened["egress"] == []


def test_egress_to_a_port_anywhere_or_to_cidrs_only() -> None:
    assert https_egress() == {"ports": [{"protocol": "TCP", "port": 443}]}
    assert tcp_egress(9000, ["10.0.0.0/24"]) == {
        "to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
        "ports": [{"protocol": "TCP", "port": 9000}],
    }


def test_security_contexts() -> None:
    assert pod_security_context(65534) == {
        "runAsNonRoot": True,
        "runAsUser": 65534,
        "runAsGroup": 65534,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod_security_context(1000, fs_group=True)["fsGroup"] == 1000
    container = restricted_security_context(read_only_root_filesystem=True)
    assert container["capabilities"] == {"drop": ["ALL"]} and container["allowPrivilegeEscalation"] is False
    assert container["readOnlyRootFilesystem"] is True
    assert "readOnlyRootFilesystem" not in restricted_security_context()


def test_every_gateway_pod_carries_what_model_servers_admit() -> None:
    """Model servers admit pods with gateway_labels(); each gateway's pod template must carry them."""
    objects = render_manifests(load(EXAMPLES))
    gateways = [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-gateway")
    ]
    assert gateways
    for deployment in gateways:
        assert gateway_labels().items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
