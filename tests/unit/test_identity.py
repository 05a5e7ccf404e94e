"""ProviderBinding -> gateway identity wiring, and merging several bindings onto one ServiceAccount."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.api.provider_binding import ProviderBinding
from modelyard.render.identity import (
    AZURE_USE_LABEL,
    POD_IDENTITY_AGENT_CIDRS,
    IdentityWiring,
    identity_wiring,
    merge_wiring,
    static_env_name,
)

ROLE = "arn:aws:iam::123456789012:role/llm-gateway"
RESOURCE_ID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/c"
CLIENT = "11111111-2222-3333-4444-555555555555"
TENANT = "66666666-7777-8888-9999-000000000000"
HTTPS_ANYWHERE = {"ports": [{"protocol": "TCP", "port": 443}]}


def bedrock(name: str = "bedrock-eu", region: str = "eu-central-1", **auth: Any) -> ProviderBinding:
    spec = {
        "provider": "bedrock",
        "bedrock": {"region": region, "models": ["anthropic.claude-sonnet-4-5"], "auth": auth},
    }
    return ProviderBinding.model_validate({"metadata": {"name": name}, "spec": spec})


def azure(name: str = "azure-weu", **auth: Any) -> ProviderBinding:
    spec = {
        "provider": "azureOpenAI",
        "azureOpenAI": {
            "endpoint": "https://contoso-llm.openai.azure.com",
            "resourceId": RESOURCE_ID,
            "deployments": [{"name": "gpt-4o-prod", "model": "gpt-4o"}],
            "auth": auth,
        },
    }
    return ProviderBinding.model_validate({"metadata": {"name": name}, "spec": spec})


def irsa(name: str = "bedrock-eu", role: str = ROLE, **kw: Any) -> ProviderBinding:
    return bedrock(name, type="irsa", roleArn=role, **kw)


def workload_identity(name: str = "azure-weu", client: str = CLIENT) -> ProviderBinding:
    return azure(name, type="workloadIdentity", clientId=client, tenantId=TENANT)


def test_irsa_annotates_the_service_account() -> None:
    wiring = identity_wiring(irsa())
    assert wiring.service_account == "modelyard-gateway"
    assert wiring.sa_annotations == {
        "eks.amazonaws.com/role-arn": ROLE,
        "eks.amazonaws.com/sts-regional-endpoints": "true",
    }
    assert wiring.pod_labels == {}
    assert wiring.env == ({"name": "AWS_REGION", "value": "eu-central-1"},)
    assert wiring.egress == (HTTPS_ANYWHERE,)
    assert wiring.sources == ("bedrock-eu",)


def test_pod_identity_needs_no_annotation_but_the_agent() -> None:
    wiring = identity_wiring(bedrock(type="podIdentity", roleArn=ROLE))
    assert wiring.sa_annotations == {}
    assert wiring.env == ({"name": "AWS_REGION", "value": "eu-central-1"},)
    (agent,) = wiring.egress
    assert [peer["ipBlock"]["cidr"] for peer in agent["to"]] == list(POD_IDENTITY_AGENT_CIDRS)
    assert agent["ports"] == [{"protocol": "TCP", "port": 80}]


def test_azure_workload_identity() -> None:
    wiring = identity_wiring(workload_identity())
    assert wiring.sa_annotations == {
        "azure.workload.identity/client-id": CLIENT,
        "azure.workload.identity/tenant-id": TENANT,
    }
    assert wiring.pod_labels == {AZURE_USE_LABEL: "true"}
    assert wiring.env == ()


def test_static_secrets_are_references_never_values() -> None:
    aws = identity_wiring(bedrock(type="staticSecret", secretRef={"name": "aws-keys"}))
    assert aws.sa_annotations == {}
    assert aws.env[1:] == (
        {
            "name": "MODELYARD_BEDROCK_EU_AWS_ACCESS_KEY_ID",
            "valueFrom": {"secretKeyRef": {"name": "aws-keys", "key": "AWS_ACCESS_KEY_ID"}},
        },
        {
            "name": "MODELYARD_BEDROCK_EU_AWS_SECRET_ACCESS_KEY",
            "valueFrom": {"secretKeyRef": {"name": "aws-keys", "key": "AWS_SECRET_ACCESS_KEY"}},
        },
    )
    az = identity_wiring(azure(type="staticSecret", secretRef={"name": "azure-key"}))
    assert az.env == (
        {
            "name": "MODELYARD_AZURE_WEU_AZURE_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "azure-key", "key": "AZURE_API_KEY"}},
        },
    )
    assert all("value" not in var for var in az.env)


def test_static_env_name() -> None:
    assert static_env_name("bedrock.eu-1", "AZURE_API_KEY") == "MODELYARD_BEDROCK_EU_1_AZURE_API_KEY"


def test_custom_service_account() -> None:
    binding = irsa()
    binding.spec.service_account_name = "llm-gw"
    assert identity_wiring(binding).service_account == "llm-gw"


def test_merge_aws_and_azure_onto_one_service_account() -> None:
    merged = merge_wiring([identity_wiring(workload_identity()), identity_wiring(irsa())])
    assert merged.service_account == "modelyard-gateway"
    assert merged.sa_annotations == {
        "azure.workload.identity/client-id": CLIENT,
        "azure.workload.identity/tenant-id": TENANT,
        "eks.amazonaws.com/role-arn": ROLE,
        "eks.amazonaws.com/sts-regional-endpoints": "true",
    }
    assert merged.pod_labels == {AZURE_USE_LABEL: "true"}
    assert merged.egress == (HTTPS_ANYWHERE,)
    assert merged.sources == ("azure-weu", "bedrock-eu")


def test_merge_is_order_independent() -> None:
    wirings = [
        identity_wiring(b) for b in (irsa(), workload_identity(), irsa("bedrock-us", region="us-east-1"))
    ]
    assert merge_wiring(wirings) == merge_wiring(reversed(wirings))


def test_same_role_in_two_bindings_merges() -> None:
    merged = merge_wiring([identity_wiring(irsa("a")), identity_wiring(irsa("b"))])
    assert merged.sa_annotations["eks.amazonaws.com/role-arn"] == ROLE
    assert merged.sources == ("a", "b")


def test_conflicting_irsa_roles_name_both_bindings() -> None:
    other = "arn:aws:iam::123456789012:role/other"
    with pytest.raises(ValueError, match="one ServiceAccount") as err:
        merge_wiring([identity_wiring(irsa("b-second", role=other)), identity_wiring(irsa("a-first"))])
    message = str(err.value)
    assert "eks.amazonaws.com/role-arn" in message
    assert "ProviderBinding a-first" in message and "ProviderBinding b-second" in message
    assert ROLE in message and other in message


def test_conflicting_azure_client_ids() -> None:
    other = "99999999-2222-3333-4444-555555555555"
    with pytest.raises(ValueError, match=r"azure.workload.identity/client-id.*ProviderBinding az-1.*az-2"):
        merge_wiring(
            [identity_wiring(workload_identity("az-1")), identity_wiring(workload_identity("az-2", other))]
        )


def test_conflicting_service_account_names() -> None:
    binding = irsa("b")
    binding.spec.service_account_name = "llm-gw"
    with pytest.raises(ValueError, match="serviceAccountName: ProviderBinding a sets 'modelyard-gateway'"):
        merge_wiring([identity_wiring(irsa("a")), identity_wiring(binding)])


def test_regions_that_disagree_leave_aws_region_unset() -> None:
    merged = merge_wiring([identity_wiring(irsa("a")), identity_wiring(irsa("b", region="eu-west-1"))])
    assert merged.env == ()


def test_static_env_names_that_collide_are_refused() -> None:
    first = bedrock("keys.eu", type="staticSecret", secretRef={"name": "one"})
    second = bedrock("keys-eu", type="staticSecret", secretRef={"name": "two"})
    with pytest.raises(ValueError, match="MODELYARD_KEYS_EU_AWS_ACCESS_KEY_ID"):
        merge_wiring([identity_wiring(first), identity_wiring(second)])


def test_merge_of_nothing_is_the_default_service_account() -> None:
    assert merge_wiring([]) == IdentityWiring()
