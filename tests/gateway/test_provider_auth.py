"""The gateway really authenticates: the real LiteLLM proxy runs the Bedrock and Azure OpenAI entries the
operator compiles, with credentials obtained the way a gateway pod obtains them, and the providers' local
fakes check every request.

- The pod's environment is what the rendered Deployment sets plus what the EKS Pod Identity webhook and the
  Azure Workload Identity webhook inject for the rendered ServiceAccount's annotations: ``AWS_ROLE_ARN`` and
  ``AWS_WEB_IDENTITY_TOKEN_FILE`` (IRSA), ``AZURE_CLIENT_ID``, ``AZURE_TENANT_ID``,
  ``AZURE_FEDERATED_TOKEN_FILE`` and ``AZURE_AUTHORITY_HOST`` (Workload Identity).
- The token files hold ServiceAccount tokens for the namespace's gateway ServiceAccount. STS
  (``sts.eu-central-1.amazonaws.com``: the trust policy enforced in front of moto's server, which issues the
  credentials) and Entra ID (``login.microsoftonline.com``: the Azure fake) exchange them.
- The config is the compiled one, unchanged; the real host names in it (the VPC endpoint's DNS name, the
  Azure account's endpoint) resolve to the fakes through ``tests/gateway/dns``, as private DNS resolves them
  to private endpoint addresses in a VPC. Nothing else resolves: no request leaves the machine.

Bedrock requests must carry a SigV4 signature that the fake recomputes with the secret key moto's STS issued
for the access key id they name, and that key's session token; Azure requests the Entra token the fake issued
for the Cognitive Services scope. A trust policy that does not name the ServiceAccount stops everything before
a provider is called.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import yaml

from modelyard.api import ProviderBinding, RoutePolicy
from modelyard.api.policy import ClusterPolicy
from modelyard.cloud.aws import STS_AUDIENCE
from modelyard.cloud.azure import TOKEN_AUDIENCE
from modelyard.render.gateway import render_gateway
from modelyard.render.identity import (
    AZURE_CLIENT_ID_ANNOTATION,
    AZURE_TENANT_ID_ANNOTATION,
    IRSA_REGIONAL_STS_ANNOTATION,
    IRSA_ROLE_ANNOTATION,
    identity_wiring,
    merge_wiring,
)
from modelyard.render.litellm import compile_litellm_config
from modelyard.render.routing import resolve_routes
from tests.fakes.azure import COGNITIVE_SERVICES_SCOPE, AzureFake
from tests.fakes.bedrock import BedrockFake, Session
from tests.gateway.proxy import chat, litellm_proxy

NAMESPACE = "ml"
REGION = "eu-central-1"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/gateway-bedrock"
OIDC_ISSUER = "oidc.eks.eu-central-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
SUBJECT = f"system:serviceaccount:{NAMESPACE}:modelyard-gateway"
INTRUDER = f"system:serviceaccount:{NAMESPACE}:intruder"
VPCE_HOST = f"vpce-0abc1234def567890-x1y2z3.bedrock-runtime.{REGION}.vpce.amazonaws.com"
STS_HOST = f"sts.{REGION}.amazonaws.com"
AZURE_HOST = "contoso-llm.openai.azure.com"
ENTRA_HOST = "login.microsoftonline.com"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
TENANT_ID = "66666666-7777-8888-9999-000000000000"
CLAUDE = "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"
LLAMA = "meta.llama3-1-70b-instruct-v1:0"
DEPLOYMENT = "gpt-4o-prod"
DNS_SHIM = Path(__file__).resolve().parent / "dns"

TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{OIDC_ISSUER}"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {f"{OIDC_ISSUER}:sub": SUBJECT, f"{OIDC_ISSUER}:aud": STS_AUDIENCE}
            },
        }
    ],
}
READY = {
    "conditions": [
        {"type": "Ready", "status": "True", "reason": "Verified"},
        {"type": "PrivateConnectivityVerified", "status": "True", "reason": "Verified"},
    ]
}


def binding(name: str, spec: dict[str, Any], status: dict[str, Any]) -> ProviderBinding:
    return ProviderBinding.model_validate(
        {"metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec, "status": status}
    )


BEDROCK = binding(
    "bedrock-eu",
    {
        "provider": "bedrock",
        "bedrock": {
            "region": REGION,
            "models": [CLAUDE, LLAMA],
            "auth": {"type": "irsa", "roleArn": ROLE},
            "vpcEndpoint": {"id": "vpce-0abc1234def567890"},
        },
        "dataClassification": "confidential",
    },
    {**READY, "endpoint": f"https://{VPCE_HOST}"},  # what verification wrote: the endpoint's DNS name
)
AZURE = binding(
    "azure-weu",
    {
        "provider": "azureOpenAI",
        "azureOpenAI": {
            "endpoint": f"https://{AZURE_HOST}",
            "resourceId": "/subscriptions/s/resourceGroups/llm/providers/Microsoft.CognitiveServices"
            "/accounts/contoso-llm",
            "deployments": [{"name": DEPLOYMENT, "model": "gpt-4o"}],
            "auth": {"type": "workloadIdentity", "clientId": CLIENT_ID, "tenantId": TENANT_ID},
        },
        "dataClassification": "confidential",
    },
    {**READY, "region": "westeurope"},
)
POLICY = RoutePolicy.model_validate(
    {
        "metadata": {"name": "gw", "namespace": NAMESPACE},
        "spec": {
            "routes": [
                {
                    "model": route,
                    "dataClassification": "confidential",
                    "retries": 0,
                    "backends": [{"providerBindingRef": ref, "model": model}],
                }
                for route, ref, model in (
                    ("claude", "bedrock-eu", CLAUDE),
                    ("llama", "bedrock-eu", LLAMA),
                    ("gpt", "azure-weu", DEPLOYMENT),
                )
            ]
        },
    }
)


def service_account_token(subject: str, audience: str, issuer: str) -> str:
    """A projected ServiceAccount token's shape (the fakes read its claims; neither checks the signature)."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    now = int(time.time())
    claims = {"iss": issuer, "sub": subject, "aud": [audience], "iat": now, "exp": now + 3600}
    return f"{part({'alg': 'RS256', 'kid': 'test'})}.{part(claims)}.c2lnbmF0dXJl"


@dataclass
class Gateway:
    url: str
    bedrock_token: str
    azure_token: str


@pytest.fixture(scope="module")
def compiled() -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """The compiled config (YAML), the rendered ServiceAccount and the Deployment's env."""
    bindings = {b.metadata.name: b for b in (BEDROCK, AZURE)}
    routes, _ = resolve_routes(POLICY, ClusterPolicy(), {}, bindings, namespace=NAMESPACE)
    assert all(r.backends for r in routes), routes
    wiring = merge_wiring(identity_wiring(b) for b in bindings.values())
    manifests = {m["kind"]: m for m in render_gateway(POLICY, routes, wiring, namespace=NAMESPACE)}
    config = manifests["ConfigMap"]["data"]["config.yaml"]
    assert yaml.safe_load(config) == compile_litellm_config(POLICY, routes)
    env = manifests["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    return config, manifests["ServiceAccount"], env


@pytest.fixture(scope="module")
def clouds(
    moto_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BedrockFake, AzureFake]]:
    iam = boto3.client(
        "iam", endpoint_url=moto_url, region_name=REGION, aws_access_key_id="k", aws_secret_access_key="s"
    )
    iam.create_role(RoleName="gateway-bedrock", AssumeRolePolicyDocument=json.dumps(TRUST_POLICY))

    def trust_policy(role_arn: str) -> dict[str, Any] | None:
        try:
            role = iam.get_role(RoleName=role_arn.rsplit("/", 1)[-1])["Role"]
        except iam.exceptions.NoSuchEntityException:
            return None
        document = role["AssumeRolePolicyDocument"]
        return json.loads(document) if isinstance(document, str) else dict(document)

    directory = tmp_path_factory.mktemp("clouds")
    bedrock = BedrockFake(
        directory,
        region=REGION,
        hosts=(VPCE_HOST, STS_HOST, f"bedrock-runtime.{REGION}.amazonaws.com"),
        sts_upstream=moto_url,
        trust_policy=trust_policy,
        credentials=moto_session,
    )
    azure = AzureFake(directory, hosts=(AZURE_HOST, ENTRA_HOST))
    azure.state.federated[CLIENT_ID] = SUBJECT
    azure.state.chat_deployments.add(DEPLOYMENT)
    yield bedrock, azure
    bedrock.stop()
    azure.stop()


def moto_session(access_key_id: str) -> Session | None:
    """The credentials moto's STS issued under ``access_key_id`` (moto's server runs in this process)."""
    from moto.sts.models import sts_backends  # noqa: PLC0415 - moto's state, only where a fake needs it

    role = sts_backends[ACCOUNT]["aws"].get_assumed_role_from_access_key(access_key_id)
    if role is None:
        return None
    return Session(role.secret_access_key, role.session_token, role.role_arn)


def pod_env(
    service_account: dict[str, Any], env: list[dict[str, Any]], tokens: Path, subject: str
) -> dict[str, str]:
    """The gateway container's environment: the Deployment's plain values, and what the two identity
    webhooks inject for the ServiceAccount's annotations (with the token files they project)."""
    annotations = service_account["metadata"]["annotations"]
    aws_token, azure_token = tokens / "eks.amazonaws.com-token", tokens / "azure-identity-token"
    aws_token.write_text(service_account_token(subject, STS_AUDIENCE, f"https://{OIDC_ISSUER}"))
    azure_token.write_text(service_account_token(subject, TOKEN_AUDIENCE, "https://oidc.example/issuer"))
    plain = {e["name"]: e["value"] for e in env if "value" in e}
    injected = {
        "AWS_ROLE_ARN": annotations[IRSA_ROLE_ANNOTATION],
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(aws_token),
        "AWS_DEFAULT_REGION": plain["AWS_REGION"],
        "AZURE_CLIENT_ID": annotations[AZURE_CLIENT_ID_ANNOTATION],
        "AZURE_TENANT_ID": annotations[AZURE_TENANT_ID_ANNOTATION],
        "AZURE_FEDERATED_TOKEN_FILE": str(azure_token),
        "AZURE_AUTHORITY_HOST": f"https://{ENTRA_HOST}/",
    }
    if annotations.get(IRSA_REGIONAL_STS_ANNOTATION) == "true":
        injected["AWS_STS_REGIONAL_ENDPOINTS"] = "regional"
    return {**plain, **injected}


@contextmanager
def start_gateway(
    compiled: tuple[str, dict[str, Any], list[dict[str, Any]]],
    clouds: tuple[BedrockFake, AzureFake],
    directory: Path,
    subject: str,
) -> Iterator[Gateway]:
    config, service_account, env = compiled
    bedrock, azure = clouds
    trust = directory / "ca.pem"
    trust.write_text(bedrock.ca_file.read_text() + azure.ca_file.read_text())
    azure_port = urlsplit(azure.url).port
    hosts = {VPCE_HOST: bedrock.port, STS_HOST: bedrock.port, AZURE_HOST: azure_port, ENTRA_HOST: azure_port}
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_", "LITELLM_"))}
    full = {
        **inherited,
        **pod_env(service_account, env, directory, subject),
        "PYTHONPATH": str(DNS_SHIM),
        "MODELYARD_TEST_HOSTS": ",".join(f"{h}=127.0.0.1:{p}" for h, p in hosts.items()),
        "SSL_CERT_FILE": str(trust),  # the fakes' certificates take the place of the public CAs
        "REQUESTS_CA_BUNDLE": str(trust),
        "AWS_CA_BUNDLE": str(trust),
    }
    with litellm_proxy(config, directory, full, inherit=False) as url:
        yield Gateway(
            url,
            (directory / "eks.amazonaws.com-token").read_text(),
            (directory / "azure-identity-token").read_text(),
        )


@pytest.fixture(scope="module")
def gateway(
    compiled: tuple[str, dict[str, Any], list[dict[str, Any]]],
    clouds: tuple[BedrockFake, AzureFake],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    with start_gateway(compiled, clouds, tmp_path_factory.mktemp("gateway"), SUBJECT) as started:
        yield started


def answer(response: Any) -> str:
    assert response.status_code == 200, response.text
    content: str = response.json()["choices"][0]["message"]["content"]
    return content


@pytest.mark.parametrize("route,model_id", [("claude", CLAUDE), ("llama", LLAMA)])
def test_bedrock_requests_are_signed_with_the_role_sts_issued(
    gateway: Gateway, clouds: tuple[BedrockFake, AzureFake], route: str, model_id: str
) -> None:
    bedrock, _ = clouds
    before = len(bedrock.runtime_calls())
    assert answer(chat(gateway.url, route)) == f"from bedrock {model_id}"
    calls = bedrock.runtime_calls()[before:]
    assert len(calls) == 1, calls
    call = calls[0]
    assert call.signature_error is None  # SigV4 recomputed with the assumed role's secret key
    assert call.host == VPCE_HOST  # the VPC endpoint modelyard compiled, under its own name
    assert call.model_id == model_id and call.api in ("converse", "invoke")
    assert call.role_arn == ROLE  # the access key is one moto's STS issued for the binding's role
    exchanges = [c for c in bedrock.sts_calls() if c.token == gateway.bedrock_token]
    assert exchanges and all(c.refused is None and c.role_arn == ROLE for c in exchanges)
    assert exchanges[0].subject == SUBJECT


def test_azure_requests_carry_the_entra_token_of_the_federated_identity(
    gateway: Gateway, clouds: tuple[BedrockFake, AzureFake]
) -> None:
    _, azure = clouds
    before = len(azure.requests())
    assert answer(chat(gateway.url, "gpt")) == f"from azure {DEPLOYMENT}"
    requests = azure.requests()[before:]
    data_plane = [r for r in requests if r.path.startswith("/openai/")]
    assert len(data_plane) == 1, requests
    request = data_plane[0]
    headers = {name.lower(): value for name, value in request.headers.items()}
    assert headers["host"] == AZURE_HOST  # the account's endpoint, under its own name
    assert request.path == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    assert request.query["api-version"] == [AZURE.spec.azure_open_ai.api_version]  # type: ignore[union-attr]
    assert "api-key" not in headers
    token = headers["authorization"].removeprefix("Bearer ")
    assert azure.state.issued[token] == CLIENT_ID
    assert azure.state.scopes[token] == COGNITIVE_SERVICES_SCOPE
    exchanges = [
        r for r in azure.requests() if r.path == f"/{TENANT_ID}/oauth2/v2.0/token" and r.form.get("client_id")
    ]
    assert exchanges and exchanges[-1].form["client_assertion"] == [gateway.azure_token]
    assert {k.lower(): v for k, v in exchanges[-1].headers.items()}["host"] == ENTRA_HOST


def test_a_trust_policy_that_does_not_name_the_service_account_stops_every_request(
    compiled: tuple[str, dict[str, Any], list[dict[str, Any]]],
    clouds: tuple[BedrockFake, AzureFake],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    bedrock, azure = clouds
    directory = tmp_path_factory.mktemp("intruder")
    with start_gateway(compiled, clouds, directory, INTRUDER) as intruder:
        runtime_before = len(bedrock.runtime_calls())
        azure_before = len(azure.requests())
        for route in ("claude", "gpt"):
            response = chat(intruder.url, route)
            assert response.status_code >= 400, response.text
        assert bedrock.runtime_calls()[runtime_before:] == []  # nothing reached Bedrock
        refused = [c for c in bedrock.sts_calls() if c.token == intruder.bedrock_token]
        assert refused and all(c.refused for c in refused)
        after = azure.requests()[azure_before:]
        assert [r for r in after if r.path.startswith("/openai/")] == []  # nothing reached Azure OpenAI
        assert any(r.form.get("client_assertion") == [intruder.azure_token] for r in after)
