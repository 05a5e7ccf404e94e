"""AWS verification pieces without AWS: model access over the Bedrock control plane's wire format (a local
fake) and botocore's Stubber, the VPC endpoint and caller identity verdicts, and how boto3 errors become
verdicts or "ask again later"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from tests.fakes.bedrock import BedrockFake

from modelyard.cloud import CloudUnavailable
from modelyard.cloud.aws import (
    AwsRefused,
    FoundationModelCatalog,
    call,
    dns_hosts,
    endpoint_url,
    evaluate_vpc_endpoint,
    logging_configured,
    same_role,
)

REGION = "eu-central-1"
ROLE = "arn:aws:iam::123456789012:role/llm-gateway"
SERVICE = f"com.amazonaws.{REGION}.bedrock-runtime"
VPCE_DNS = f"vpce-0abc1234def567890-x1y2z3.bedrock-runtime.{REGION}.vpce.amazonaws.com"


def summary(model_id: str, status: str = "ACTIVE") -> dict[str, Any]:
    return {
        "modelArn": f"arn:aws:bedrock:{REGION}::foundation-model/{model_id}",
        "modelId": model_id,
        "modelLifecycle": {"status": status},
    }


@pytest.fixture
def bedrock() -> Any:
    return boto3.client("bedrock", region_name=REGION, aws_access_key_id="k", aws_secret_access_key="s")


@pytest.fixture
def bedrock_fake(tmp_path: Path) -> Iterator[BedrockFake]:
    """The Bedrock control plane's wire format (moto serves neither ListFoundationModels nor
    ListInferenceProfiles)."""
    fake = BedrockFake(tmp_path, region=REGION)
    yield fake
    fake.stop()


def profile(profile_id: str, status: str = "ACTIVE") -> dict[str, Any]:
    return {
        "inferenceProfileId": profile_id,
        "inferenceProfileName": profile_id,
        "inferenceProfileArn": f"arn:aws:bedrock:{REGION}:123456789012:inference-profile/{profile_id}",
        "models": [{"modelArn": f"arn:aws:bedrock:{REGION}::foundation-model/{profile_id.split('.', 1)[1]}"}],
        "status": status,
        "type": "SYSTEM_DEFINED",
    }


def over_the_wire(fake: BedrockFake) -> FoundationModelCatalog:
    client = boto3.client(
        "bedrock",
        region_name=REGION,
        endpoint_url=fake.url,
        verify=str(fake.ca_file),
        aws_access_key_id="k",
        aws_secret_access_key="s",
    )
    return FoundationModelCatalog(lambda service, region, creds: client)


def test_model_access_from_the_account(bedrock_fake: BedrockFake) -> None:
    claude = "anthropic.claude-sonnet-4-5-20250929-v1:0"
    state = bedrock_fake.state
    state.foundation_models = [
        summary("anthropic.claude-3-5-sonnet-20240620-v1:0"),
        summary(claude),
        summary("meta.llama3-1-70b-instruct-v1:0", "LEGACY"),
    ]
    state.unlisted_models = [summary("amazon.titan-text-express-v1")]
    state.inference_profiles = [
        profile("eu.amazon.nova-pro-v1:0"),
        profile("eu.anthropic.claude-3-7-sonnet-20250219-v1:0"),
        profile("eu.meta.llama3-2-1b-instruct-v1:0", "INACTIVE"),
        profile(f"eu.{claude}"),  # on the second page
    ]
    state.page_size = 3
    models = [
        "anthropic.claude-3-5-sonnet-20240620-v1:0",  # listed, active
        f"eu.{claude}",  # a profile the region offers
        f"global.{claude}",  # its model is active, but the region offers no such profile
        "eu.meta.llama3-2-1b-instruct-v1:0",  # an inactive profile
        "meta.llama3-1-70b-instruct-v1:0",  # listed but legacy
        "amazon.titan-text-express-v1",  # not listed, GetFoundationModel finds it
        "acme.no-such-model",  # not listed, GetFoundationModel does not know it
        f"arn:aws:bedrock:{REGION}:123456789012:provisioned-model/abc123",  # the account's own: not judged
    ]
    missing = over_the_wire(bedrock_fake).unavailable(REGION, models)
    assert missing == [
        f"global.{claude}",
        "eu.meta.llama3-2-1b-instruct-v1:0",
        "meta.llama3-1-70b-instruct-v1:0",
        "acme.no-such-model",
    ]
    pages = [r for r in state.control_requests if r.startswith("/inference-profiles")]
    assert len(pages) == 2 and all("type=SYSTEM_DEFINED" in r for r in pages)
    assert "nextToken=3" in pages[1]


def test_profiles_the_operator_may_not_list_count_as_their_model(bedrock_fake: BedrockFake) -> None:
    bedrock_fake.state.foundation_models = [summary("anthropic.claude-sonnet-4-5-20250929-v1:0")]
    bedrock_fake.state.profiles_denied = True
    models = ["eu.anthropic.claude-sonnet-4-5-20250929-v1:0", "eu.anthropic.claude-opus-4-20250514-v1:0"]
    missing = over_the_wire(bedrock_fake).unavailable(REGION, models)
    assert missing == ["eu.anthropic.claude-opus-4-20250514-v1:0"]  # its model is not in the region


def test_model_access_denied_is_a_refusal_not_a_verdict(bedrock: Any) -> None:
    with Stubber(bedrock) as stub:
        stub.add_client_error("list_foundation_models", "AccessDeniedException", "no", 403)
        with pytest.raises(AwsRefused) as info:
            FoundationModelCatalog(lambda *_: bedrock).unavailable(REGION, ["a.b"])
    assert info.value.code == "AccessDeniedException"


def test_throttling_and_server_errors_are_unavailable(bedrock: Any) -> None:
    with Stubber(bedrock) as stub:
        stub.add_client_error("list_foundation_models", "ThrottlingException", "slow down", 400)
        stub.add_client_error("list_foundation_models", "", "boom", 503)
        for _ in range(2):
            with pytest.raises(CloudUnavailable):
                call("bedrock:ListFoundationModels", bedrock.list_foundation_models)


def test_error_messages_lose_tokens_and_credentials(bedrock: Any) -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJl"
    with Stubber(bedrock) as stub:
        stub.add_client_error(
            "list_foundation_models",
            "InvalidIdentityToken",
            f"token {token} rejected for ASIAABCDEFGHIJKLMNOP, see https://s3.amazonaws.com/x?X-Amz-Signature=abc",
            400,
        )
        with pytest.raises(AwsRefused) as info:
            call("sts:AssumeRoleWithWebIdentity", bedrock.list_foundation_models, [token])
    message = str(info.value)
    assert message.startswith("sts:AssumeRoleWithWebIdentity: InvalidIdentityToken: token <redacted>")
    for secret in (token, "ASIAABCDEFGHIJKLMNOP", "X-Amz-Signature"):
        assert secret not in message


def endpoint(**overrides: Any) -> dict[str, Any]:
    return {
        "VpcEndpointId": "vpce-0abc1234def567890",
        "ServiceName": SERVICE,
        "State": "available",
        "PrivateDnsEnabled": True,
        "DnsEntries": [
            {"DnsName": VPCE_DNS.replace("-x1y2z3.", f"-x1y2z3-{REGION}a.")},
            {"DnsName": f"vpce-0abc1234def567890-x1y2z3.bedrock-runtime.{REGION}.vpce.amazonaws.com"},
        ],
        **overrides,
    }


@pytest.mark.parametrize(
    ("found", "reason"),
    [
        (endpoint(), "VpcEndpointAvailable"),
        (endpoint(State="Available"), "VpcEndpointAvailable"),
        (endpoint(State="pending"), "VpcEndpointNotAvailable"),
        (endpoint(State="pendingAcceptance"), "VpcEndpointNotAvailable"),
        (endpoint(PrivateDnsEnabled=False), "PrivateDnsDisabled"),
        (endpoint(ServiceName=f"com.amazonaws.{REGION}.bedrock"), "VpcEndpointWrongService"),
        (endpoint(ServiceName="com.amazonaws.us-east-1.bedrock-runtime"), "VpcEndpointWrongService"),
        (None, "VpcEndpointNotFound"),
    ],
)
def test_vpc_endpoint_verdict(found: dict[str, Any] | None, reason: str) -> None:
    check = evaluate_vpc_endpoint(found, "vpce-0abc1234def567890", REGION)
    assert (check.passed, check.reason) == (reason == "VpcEndpointAvailable", reason)


def test_endpoint_url_is_the_regional_dns_name() -> None:
    url = endpoint_url(endpoint(), REGION)
    assert url == f"https://vpce-0abc1234def567890-x1y2z3.bedrock-runtime.{REGION}.vpce.amazonaws.com"
    assert endpoint_url(None, REGION) == f"https://bedrock-runtime.{REGION}.amazonaws.com"
    assert dns_hosts(url, REGION) == [url.removeprefix("https://"), f"bedrock-runtime.{REGION}.amazonaws.com"]


@pytest.mark.parametrize(
    ("caller", "role", "same"),
    [
        ("arn:aws:sts::123456789012:assumed-role/llm-gateway/modelyard-verify", ROLE, True),
        (
            "arn:aws:sts::123456789012:assumed-role/llm-gateway/s",
            "arn:aws:iam::123456789012:role/team/llm-gateway",
            True,
        ),
        ("arn:aws:sts::123456789012:assumed-role/eks-node-role/i-0abc", ROLE, False),
        ("arn:aws:sts::210987654321:assumed-role/llm-gateway/s", ROLE, False),
        ("arn:aws-cn:sts::123456789012:assumed-role/llm-gateway/s", ROLE, False),
        ("arn:aws:iam::123456789012:user/admin", ROLE, False),
    ],
)
def test_caller_must_be_a_session_of_the_role(caller: str, role: str, same: bool) -> None:
    assert same_role(caller, role) is same


def test_logging_configured_needs_a_destination() -> None:
    assert logging_configured({"loggingConfig": {"s3Config": {"bucketName": "logs"}}})
    assert logging_configured({"loggingConfig": {"cloudWatchConfig": {"logGroupName": "g", "roleArn": ROLE}}})
    assert not logging_configured({"loggingConfig": {}})
    assert not logging_configured({})
