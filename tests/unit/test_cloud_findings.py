"""ProviderBinding findings: a pure function of spec, cluster policy and what verification observed."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.api.common import DataClassification
from modelyard.api.policy import ClusterPolicy
from modelyard.api.provider_binding import ProviderBindingSpec
from modelyard.audit.findings import Observed, provider_binding_findings

ROLE = "arn:aws:iam::123456789012:role/llm-gateway"
RESOURCE = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/c"
CLIENT = "11111111-2222-3333-4444-555555555555"
TENANT = "66666666-7777-8888-9999-000000000000"
POLICY = ClusterPolicy()
CLAUDE = "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"


def bedrock(auth: dict[str, Any] | None = None, **extra: Any) -> ProviderBindingSpec:
    block = {"region": "eu-central-1", "models": [CLAUDE], "auth": auth or {"type": "irsa", "roleArn": ROLE}}
    data_class = extra.pop("dataClassification", "confidential")
    block.update(extra)
    return ProviderBindingSpec.model_validate(
        {"provider": "bedrock", "bedrock": block, "dataClassification": data_class}
    )


def azure(auth: dict[str, Any] | None = None, model: str = "gpt-4o") -> ProviderBindingSpec:
    return ProviderBindingSpec.model_validate(
        {
            "provider": "azureOpenAI",
            "azureOpenAI": {
                "endpoint": "https://c.openai.azure.com",
                "resourceId": RESOURCE,
                "deployments": [{"name": "d", "model": model}],
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


@pytest.mark.parametrize(
    "models,region,unknown",
    [
        ([CLAUDE, "meta.llama3-1-70b-instruct-v1:0"], "eu-central-1", []),
        (["global.anthropic.claude-sonnet-4-5-20250929-v1:0"], "eu-central-1", []),
        (["us.anthropic.claude-sonnet-4-5-20250929-v1:0"], "us-west-2", []),
        (
            ["arn:aws:bedrock:eu-central-1:123456789012:application-inference-profile/a1b2c3"],
            "eu-central-1",
            [],
        ),
        (
            ["arn:aws:bedrock:eu-central-1:123456789012:default-prompt-router/anthropic.claude:1"],
            "eu-central-1",
            [],
        ),
        (["arn:aws:sagemaker:eu-central-1:123456789012:endpoint/marketplace-model"], "eu-central-1", []),
        # the id the examples used: no such Bedrock model (ids are dated and versioned)
        (
            ["anthropic.claude-sonnet-4-5"],
            "eu-central-1",
            [
                "anthropic.claude-sonnet-4-5 is not a Bedrock model id (did you mean "
                "anthropic.claude-sonnet-4-5-20250929-v1:0?)"
            ],
        ),
        # a well-formed profile for another geography: Bedrock in eu-central-1 refuses it
        (
            ["us.anthropic.claude-sonnet-4-5-20250929-v1:0"],
            "eu-central-1",
            [
                "us.anthropic.claude-sonnet-4-5-20250929-v1:0 is an inference profile for the us geography, "
                "not callable from eu-central-1"
            ],
        ),
        (["xx.anthropic.claude-sonnet-4-5-20250929-v1:0"], "eu-central-1", ["xx.anthropic"]),
        (["arn:aws:bedrock:us-east-1::foundation-model/" + CLAUDE[3:]], "eu-central-1", ["is in us-east-1"]),
    ],
)
def test_unknown_provider_model_ids(models: list[str], region: str, unknown: list[str]) -> None:
    spec = bedrock(**PRIVATE, region=region, models=models)
    found = [f for f in provider_binding_findings(spec, POLICY) if f.code == "UNKNOWN_PROVIDER_MODEL"]
    if not unknown:
        assert found == []
        return
    (finding,) = found
    assert finding.severity.value == "medium"
    assert all(part in finding.message for part in unknown), finding.message


def test_unknown_azure_model_names_the_deployment() -> None:
    assert codes(azure(model="gpt-4.1-mini"), Observed(private_connectivity=True)) == []
    (finding,) = provider_binding_findings(azure(model="gpt4o"), POLICY, Observed(private_connectivity=True))
    assert (finding.code, finding.severity.value) == ("UNKNOWN_PROVIDER_MODEL", "medium")
    assert "deployment d: gpt4o is not an Azure OpenAI model name" in finding.message


def test_the_binding_status_reports_unknown_ids_before_any_verification() -> None:
    """status.findings as the controller writes them, also while the cloud has not answered yet."""
    from modelyard.controllers.provider_binding import _findings  # noqa: PLC0415 - kopf only here

    spec = bedrock(**PRIVATE, models=["anthropic.claude-sonnet-4-5"])
    written = _findings(spec, POLICY, spec.region)
    assert [(f.code, f.severity.value) for f in written] == [("UNKNOWN_PROVIDER_MODEL", "medium")]
