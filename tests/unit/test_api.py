"""The API models: defaults, cross-field rules and the messages a user sees."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import pytest
from pydantic import ValidationError

from modelyard.api import DataClassification, ModelDeployment, ProviderBinding, RoutePolicy
from modelyard.api.common import DNS_1035_LABEL, LABEL_VALUE
from modelyard.api.crd import crd
from modelyard.api.model_deployment import ENDPOINT_URL, Engine
from modelyard.manifests import format_validation_error


def md(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": {"name": "llama", "source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
        "gpu": {"type": "nvidia-h100-80gb"},
    }
    return {
        "apiVersion": "modelyard.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "m"},
        "spec": {**base, **spec},
    }


def bedrock(**over: Any) -> dict[str, Any]:
    block = {
        "region": "eu-central-1",
        "models": ["anthropic.claude-sonnet-4-5"],
        "auth": {"type": "irsa", "roleArn": "arn:aws:iam::123456789012:role/gw"},
        **over,
    }
    return {
        "kind": "ProviderBinding",
        "metadata": {"name": "b"},
        "spec": {"provider": "bedrock", "bedrock": block},
    }


def route(**over: Any) -> dict[str, Any]:
    r = {"model": "chat", "backends": [{"modelDeploymentRef": "llama"}], **over}
    return {"kind": "RoutePolicy", "metadata": {"name": "r"}, "spec": {"routes": [r]}}


def error_of(cls: Any, body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        cls.model_validate(body)
    return format_validation_error(info.value)


def test_model_deployment_defaults() -> None:
    spec = ModelDeployment.model_validate(md()).spec
    assert spec.engine is Engine.VLLM
    assert spec.serving.max_model_len == 8192
    assert spec.serving.gpu_memory_utilization == 0.9
    assert spec.desired_replicas == 1 and spec.max_replicas == 1
    assert spec.data_classification is DataClassification.RESTRICTED


def test_wire_format_is_camel_case_and_round_trips() -> None:
    obj = ModelDeployment.model_validate(md(serving={"maxModelLen": 4096}))
    wire = obj.spec.to_wire()
    assert wire["serving"]["maxModelLen"] == 4096 and "max_model_len" not in wire["serving"]
    assert ModelDeployment.model_validate({**md(), "spec": wire}).spec == obj.spec


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (md(replicas=2, autoscaling={"maxReplicas": 3}), "spec: replicas and autoscaling are exclusive"),
        (
            md(autoscaling={"minReplicas": 4, "maxReplicas": 3}),
            "spec.autoscaling: minReplicas must not exceed",
        ),
        (md(gpu={"type": "nvidia-h100-80gb", "count": 3}), "spec.gpu.count: must be 1, 2, 4 or 8, got 3"),
        (md(engine="nim"), "spec: model.source: NIM serves ngc://"),
        (
            md(model={"name": "x", "source": "ngc://nim/meta/llama-3.1-8b-instruct"}),
            "ngc:// sources need engine",
        ),
        (md(model={"name": "x", "source": "ftp://x"}), "spec.model.source: String should match pattern"),
        (
            md(serving={"gpuMemoryUtilization": 1.5}),
            "spec.serving.gpuMemoryUtilization: Input should be less",
        ),
        (md(sevring={}), "spec.sevring: Extra inputs are not permitted"),
        (
            md(model={"name": "x", "source": "hf://org/x", "endpointURL": "https://minio:9000"}),
            "spec.model: endpointURL and region: only for s3:// sources",
        ),
        (
            md(model={"name": "x", "source": "pvc://claim", "region": "eu-central-1"}),
            "endpointURL and region: only for s3:// sources",
        ),
        (
            md(model={"name": "x", "source": "s3://b/x", "endpointURL": "minio:9000"}),
            "spec.model.endpointURL: String should match pattern",
        ),
        (
            md(model={"name": "x", "source": "s3://b/x", "endpointURL": "https://minio:9000/bucket"}),
            "spec.model.endpointURL: String should match pattern",
        ),
        (
            md(model={"name": "x", "source": "s3://b/x", "endpointURL": "http://minio:70000"}),
            "spec.model.endpointURL: String should match pattern",
        ),
        (
            md(model={"name": "x", "source": "s3://b/x", "endpointURL": "http://[01]:9000"}),
            "spec.model.endpointURL: String should match pattern",
        ),
        (
            md(model={"name": "x", "source": "s3://b/x", "endpointURL": "http://[10.0.0.1]"}),
            "spec.model.endpointURL: String should match pattern",
        ),
    ],
)
def test_model_deployment_errors_name_the_field(body: dict[str, Any], expected: str) -> None:
    assert expected in error_of(ModelDeployment, body)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"kind": "ProviderBinding", "metadata": {"name": "b"}, "spec": {"provider": "bedrock"}},
            "spec: set exactly the block that matches provider",
        ),
        (bedrock(auth={"type": "irsa"}), "spec.bedrock.auth: roleArn: required when type is irsa"),
        (bedrock(auth={"type": "staticSecret"}), "secretRef: required when type is staticSecret"),
        (bedrock(region="Europe"), "spec.bedrock.region: String should match pattern"),
        (bedrock(models=[]), "spec.bedrock.models: List should have at least 1 item"),
    ],
)
def test_provider_binding_errors(body: dict[str, Any], expected: str) -> None:
    assert expected in error_of(ProviderBinding, body)


def test_provider_binding_static_secret_is_flagged() -> None:
    body = bedrock(auth={"type": "staticSecret", "secretRef": {"name": "aws-keys"}})
    assert ProviderBinding.model_validate(body).spec.static_credentials
    assert not ProviderBinding.model_validate(bedrock()).spec.static_credentials


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            route(backends=[{"modelDeploymentRef": "a", "providerBindingRef": "b", "model": "m"}]),
            "set exactly one of modelDeploymentRef and providerBindingRef",
        ),
        (route(backends=[{}]), "set exactly one of modelDeploymentRef and providerBindingRef"),
        (route(backends=[{"providerBindingRef": "b"}]), "model: required with providerBindingRef"),
        (route(backends=[{"modelDeploymentRef": "a", "weight": 5}]), "weights need the weighted strategy"),
        (
            route(strategy="weighted", backends=[{"modelDeploymentRef": "a"}]),
            "the weighted strategy needs a weight",
        ),
        (route(dataClassification="secret"), "spec.routes[0].dataClassification: Input should be 'public'"),
    ],
)
def test_route_policy_errors(body: dict[str, Any], expected: str) -> None:
    assert expected in error_of(RoutePolicy, body)


def test_duplicate_route_models_rejected() -> None:
    body = route()
    body["spec"]["routes"].append(dict(body["spec"]["routes"][0]))
    assert "model 'chat' appears twice" in error_of(RoutePolicy, body)


def test_classification_order() -> None:
    public, internal, confidential, restricted = list(DataClassification)
    assert restricted.allows(confidential) and confidential.allows(confidential)
    assert not internal.allows(confidential) and not public.allows(internal)


# --- found by tests/controllers/test_invalid_objects.py: accepted by the API server, refused by the objects
# the operator then created from them; the CRD (schema or CEL) and the model now refuse them up front.
def crd_metadata_name(kind: Any) -> dict[str, Any]:
    result: dict[str, Any] = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "metadata"
    ]["properties"]["name"]
    return result


@pytest.mark.parametrize(
    ("kind", "body", "longest"),
    [(ModelDeployment, md(), 45), (RoutePolicy, route(), 55)],
)
def test_a_name_the_children_cannot_carry_is_refused(kind: Any, body: dict[str, Any], longest: int) -> None:
    """A ModelDeployment named with 46 characters got ServiceAccountFailed (its owner label value) and a
    download Job NAME-download-<8 hex> over 63; a dotted or digit-first name is no Service name."""
    assert crd_metadata_name(kind) == {"type": "string", "pattern": DNS_1035_LABEL, "maxLength": longest}
    kind.model_validate({**body, "metadata": {"name": "a" * longest}})
    too_long = error_of(kind, {**body, "metadata": {"name": "a" * (longest + 1)}})
    assert f"metadata.name: at most {longest} characters" in too_long
    for name in ("a.b", "0abc", "Upper"):
        assert "metadata.name" in error_of(kind, {**body, "metadata": {"name": name}})
    ProviderBinding.model_validate({**bedrock(), "metadata": {"name": "b.c"}})  # no child named after it


@pytest.mark.parametrize(
    ("toleration", "expected"),
    [
        ({"operator": "Equal", "value": "x"}, "operator: must be Exists when key is empty"),
        ({"value": "x"}, "operator: must be Exists when key is empty"),
        ({"key": "k", "operator": "Exists", "value": "x"}, "value: must be empty when operator is Exists"),
        ({"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}, "only with effect NoExecute"),
        ({"key": "k", "operator": "In"}, "operator: must be one of Exists, Equal"),
        ({"key": "gpu\U0001f600"}, "tolerations[0].key: String should match pattern"),
        ({"key": "k", "value": "v" * 64}, "tolerations[0].value: String should have at most 63"),
    ],
)
def test_a_toleration_kubernetes_refuses_is_refused(toleration: dict[str, Any], expected: str) -> None:
    """Tolerations Kubernetes refuses made the download Job's apply fail (JobFailed), after the object was
    accepted."""
    assert expected in error_of(ModelDeployment, md(scheduling={"tolerations": [toleration]}))


def test_tolerations_kubernetes_accepts_are_accepted() -> None:
    tolerations = [
        {"operator": "Exists"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "value": "llm", "effect": "NoExecute", "tolerationSeconds": 60},
    ]
    ModelDeployment.model_validate(md(scheduling={"tolerations": tolerations}))


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"z\u00fcrich": "a"}, "String should match pattern"),
        ({"zone": "\U0001f600"}, "String should match pattern"),
        ({"zone": "a" * 64}, "String should have at most 63 characters"),
        ({"-zone": "a"}, "String should match pattern"),
        ({f"k{i}": "v" for i in range(65)}, "should have at most 64 items"),
    ],
)
def test_labels_kubernetes_refuses_are_refused(labels: dict[str, str], expected: str) -> None:
    """nodeSelector and the allowFrom selectors become Kubernetes labels and selectors: unicode keys made
    the NetworkPolicy's apply fail (NetworkPolicyFailed). Keys are checked by a CEL rule in the CRD."""
    assert expected in error_of(ModelDeployment, md(scheduling={"nodeSelector": labels}))
    peer = {"podSelector": {"matchLabels": labels}}
    assert expected in error_of(ModelDeployment, md(network={"allowFrom": [peer]}))
    schema = crd(ModelDeployment)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    node_selector = schema["properties"]["scheduling"]["properties"]["nodeSelector"]
    assert node_selector["x-kubernetes-validations"][0]["rule"].startswith("self.all(k, ")
    assert node_selector["additionalProperties"]["pattern"] == LABEL_VALUE
    assert "propertyNames" not in node_selector and "patternProperties" not in node_selector


def test_label_keys_kubernetes_accepts_are_accepted() -> None:
    labels = {"topology.kubernetes.io/zone": "eu-central-1a", "pool": "", "A_b.c": "X-1_2.3"}
    ModelDeployment.model_validate(md(scheduling={"nodeSelector": labels}))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"scheduling": {"priorityClassName": "High Priority"}}, "spec.scheduling.priorityClassName"),
        ({"cache": {"storageClassName": "fast_ssd"}}, "spec.cache.storageClassName"),
        ({"imagePullSecrets": ["nvcr io"]}, "spec.imagePullSecrets[0]"),
    ],
)
def test_object_names_kubernetes_refuses_are_refused(spec: dict[str, Any], expected: str) -> None:
    assert f"{expected}: String should match pattern" in error_of(ModelDeployment, md(**spec))


def test_an_allow_from_peer_without_a_selector_is_refused() -> None:
    """A peer with neither selector became a NetworkPolicy peer Kubernetes refuses ("must specify a peer"),
    and the model ended NetworkPolicyFailed."""
    error = error_of(ModelDeployment, md(network={"allowFrom": [{"podSelector": {}}, {}]}))
    assert "spec.network.allowFrom[1]: set namespaceSelector, podSelector or both" in error
    ModelDeployment.model_validate(md(network={"allowFrom": [{"podSelector": {}}]}))


def test_endpoint_url_ports_and_ipv6_hosts_the_crd_accepted_are_refused() -> None:
    """The CRD's pattern let ports up to 99999 and any bracketed host ([01]) through, which pydantic then
    refused: the API server accepted objects the operator could only call InvalidSpec (found by generated
    objects). The pattern (the CRD's too) now stops at 65535 and takes only IPv6 addresses in brackets,
    exactly those Python's ipaddress takes."""
    pattern = re.compile(ENDPOINT_URL)
    for port in ("0", "80", "9000", "65535"):
        assert pattern.match(f"https://minio:{port}")
    for port in ("65536", "70000", "99999"):
        assert not pattern.match(f"https://minio:{port}")
    hosts = ["::", "::1", "fd00::1", "1:2:3:4:5:6:7:8", "::ffff:10.0.0.1", "1::", "1:2::7:8", "01"]
    hosts += ["10.0.0.1", "1:2:3:4:5:6:7:8:9", ":::", "1::2::3", "::1.2.3.04", "12345::", "g::1"]
    for host in hosts:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            assert not pattern.match(f"http://[{host}]:9000"), host
        else:
            assert pattern.match(f"http://[{host}]:9000"), host
            ModelDeployment.model_validate(
                md(model={"name": "x", "source": "s3://b/x", "endpointURL": f"http://[{host}]:9000"})
            )
    spec = crd(ModelDeployment)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["model"]["properties"]["endpointURL"]["pattern"] == ENDPOINT_URL


@pytest.mark.parametrize("size", ["0", "0Gi", "00", "0.0Ti", "-1Gi", "1.Gi", "200 Gi"])
def test_a_cache_size_no_claim_can_have_is_refused(size: str) -> None:
    """cache.size 0 was accepted, and the claim it became was refused (must be greater than zero): the
    model ended PersistentVolumeClaimFailed. Found by generated objects."""
    error = error_of(ModelDeployment, md(cache={"size": size}))
    assert "spec.cache.size: String should match pattern" in error


@pytest.mark.parametrize("size", ["1", "200Gi", "0.5Ti", "1.0Gi", "10k", "1500M"])
def test_cache_sizes_above_zero_are_accepted(size: str) -> None:
    assert ModelDeployment.model_validate(md(cache={"size": size})).spec.cache.size == size


def test_a_role_arn_with_a_non_ascii_letter_is_refused_offline_too() -> None:
    """The API server refused arn:aws:iam::123456789012:role/r\u00f4le (its RE2 \\w is ASCII) while the model,
    whose \\w is any letter, accepted it: `modelyard render` passed a manifest the cluster refuses."""
    role = "arn:aws:iam::123456789012:role/r\u00f4le"
    model = {"name": "x", "source": "s3://b/x", "roleArn": role}
    assert "spec.model.roleArn: String should match pattern" in error_of(ModelDeployment, md(model=model))
    binding = bedrock(auth={"type": "irsa", "roleArn": role})
    assert "spec.bedrock.auth.roleArn: String should match pattern" in error_of(ProviderBinding, binding)
    ascii_role = "arn:aws:iam::123456789012:role/a_b+=,.@-c"
    ModelDeployment.model_validate(md(model={**model, "roleArn": ascii_role}))
