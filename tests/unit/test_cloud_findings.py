"""ProviderBinding findings: a pure function of spec, cluster policy and what verification observed."""

from __future__ import annotations

from typing import Any

from modelyard.api.common import DataClassification
from modelyard.api.provider_binding import ProviderBindingSpec
from modelyard.audit.findings import Observed, provider_binding_findings
from modelyard.render.routing import ClusterPolicy

ROLE = "arn:aws:iam::123456789012:role/llm-gateway"
RESOURCE = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/c"
CLIENT = "11111111-2222-3333-4444-555555555555"
TENANT = "66666666-7777-8888-9999-000000000000"
POLICY = ClusterPolicy()


def bedrock(auth: dict[str, Any] | None = None, **extra: Any) -> ProviderBindingSpec:
    block = {"region": "eu-central-1", "models": ["m"], "auth": auth or {"type": "irsa", "roleArn": ROLE}}
    data_class = extra.pop("dataClassification", "confidential")
    block.update(extra)
    return ProviderBindingSpec.model_validate(
        {"provider": "bedrock", "bedrock": block, "dataClassification": data_class}
    )


def azure(auth: dict[str, Any] | None = None) -> ProviderBindingSpec:
    return ProviderBindingSpec.model_validate(
        {
            "provider": "azureOpenAI",
            "azureOpenAI": {
                "endpoint": "https://c.openai.azure.com",
                "resourceId": RESOURCE,
                "deployments": [{"name": "d", "model": "gpt-4o"}],
                "auth": auth or {"type": "workloadIdentity", "clientId": CLIENT, "tenantId": TENANT},
            },
            "dataClassification": "confidential",
        }
    )


def codes(
    spec: ProviderBindingSpec, observed: Observed | None = None, policy: ClusterPolicy = POLICY
) -> list[tuple[str, str]]:
    return [(f.code, f.severity.value) for f in provider_binding_findings(spec, policy, observed)]


PRIVATE = {"vpcEndpoint": {"id": "vpce-0abc1234def567890"}}


def test_a_verified_keyless_private_binding_has_no_findings() -> None:
    seen = Observed(private_connectivity=True, invocation_logging=True)
    assert codes(bedrock(**PRIVATE), seen) == []
    assert (
        codes(
            azure(),
            Observed(private_connectivity=True, public_network_access=False, local_auth_enabled=False),
        )
        == []
    )


def test_static_credentials_are_high_whatever_the_policy() -> None:
    spec = bedrock({"type": "staticSecret", "secretRef": {"name": "keys"}}, **PRIVATE)
    assert codes(spec) == [("STATIC_CREDENTIALS", "high")]
    allowed = provider_binding_findings(spec, ClusterPolicy(allow_static_credentials=True))
    assert [(f.code, f.severity.value) for f in allowed] == [("STATIC_CREDENTIALS", "high")]
    assert "allowed by the cluster policy" in allowed[0].message


def test_public_endpoint_severity_follows_the_data_class() -> None:
    assert codes(bedrock()) == [("PUBLIC_ENDPOINT", "high")]  # confidential >= the policy's threshold
    assert codes(bedrock(dataClassification="internal")) == [("PUBLIC_ENDPOINT", "medium")]
    lenient = ClusterPolicy(require_private_connectivity_from=DataClassification.RESTRICTED)
    assert codes(bedrock(), policy=lenient) == [("PUBLIC_ENDPOINT", "medium")]
    assert codes(azure(), Observed(private_connectivity=False, public_network_access=True)) == [
        ("PUBLIC_ENDPOINT", "high")
    ]


def test_private_link_unverified_only_after_a_verification() -> None:
    assert codes(bedrock(**PRIVATE)) == []  # offline audit: nothing observed
    assert codes(bedrock(**PRIVATE), Observed(private_connectivity=False, invocation_logging=True)) == [
        ("PRIVATE_LINK_UNVERIFIED", "medium")
    ]


def test_invocation_logging() -> None:
    assert codes(bedrock(**PRIVATE, requireInvocationLogging=False)) == [("NO_INVOCATION_LOGGING", "low")]
    seen = Observed(private_connectivity=True, invocation_logging=False)
    assert codes(bedrock(**PRIVATE), seen) == [("NO_INVOCATION_LOGGING", "medium")]
    assert codes(azure(), Observed(private_connectivity=True)) == []  # Bedrock only


def test_local_auth_models_and_order() -> None:
    seen = Observed(
        private_connectivity=False,
        public_network_access=True,
        local_auth_enabled=True,
        unavailable_models=("gpt-5",),
        models_unverified="403",
    )
    assert codes(azure(), seen) == [
        ("PUBLIC_ENDPOINT", "high"),
        ("LOCAL_AUTH_ENABLED", "medium"),
        ("MODEL_UNAVAILABLE", "medium"),
        ("MODEL_ACCESS_UNVERIFIED", "low"),
    ]
    static = azure({"type": "staticSecret", "secretRef": {"name": "k"}})
    assert ("LOCAL_AUTH_ENABLED", "medium") not in codes(static, Observed(local_auth_enabled=True))
