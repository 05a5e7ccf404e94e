"""The API models: defaults, cross-field rules and the messages a user sees."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from modelyard.api import DataClassification, ModelDeployment, ProviderBinding, RoutePolicy
from modelyard.api.model_deployment import Engine
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
            "endpointURL: Port out of range",
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
