"""Azure verification pieces: the account verdict from its documented JSON, and the federated token exchange
through azure-identity against the local HTTPS fake of Entra ID."""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.fakes.azure import AzureFake, account, private_endpoint_connection

from modelyard.cloud.azure import AzureRefused, WorkloadIdentityTokens, evaluate_account

RID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/contoso"
ENDPOINT = "https://contoso.openai.azure.com"
SUBJECT = "system:serviceaccount:team:modelyard-gateway"


def contoso(**properties: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "publicNetworkAccess": "Disabled",
        "disableLocalAuth": True,
        "privateEndpointConnections": [private_endpoint_connection(RID, "Approved")],
    }
    return account(RID, "westeurope", f"{ENDPOINT}/", **{**defaults, **properties})


@pytest.mark.parametrize(
    ("properties", "reason"),
    [
        ({}, "PrivateEndpointApproved"),
        ({"publicNetworkAccess": "Enabled"}, "PublicNetworkAccessEnabled"),
        ({"publicNetworkAccess": None}, "PublicNetworkAccessEnabled"),  # unset means Enabled
        (
            {"privateEndpointConnections": [private_endpoint_connection(RID, "Pending")]},
            "PrivateEndpointNotApproved",
        ),
        ({"privateEndpointConnections": []}, "PrivateEndpointNotApproved"),
        (
            {
                "privateEndpointConnections": [
                    private_endpoint_connection(RID, "Rejected"),
                    private_endpoint_connection(RID, "Approved"),
                ]
            },
            "PrivateEndpointApproved",
        ),
    ],
)
def test_account_verdict(properties: dict[str, Any], reason: str) -> None:
    check = evaluate_account(contoso(**properties), ENDPOINT)
    assert (check.passed, check.reason) == (reason == "PrivateEndpointApproved", reason)


def test_pending_connection_is_named() -> None:
    check = evaluate_account(
        contoso(privateEndpointConnections=[private_endpoint_connection(RID, "Pending")]), ENDPOINT
    )
    assert "found: Pending" in check.message


def test_endpoint_of_another_account_fails() -> None:
    check = evaluate_account(contoso(), "https://elsewhere.openai.azure.com")
    assert (check.passed, check.reason) == (False, "EndpointNotOfAccount")


@pytest.fixture
def entra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[AzureFake]:
    fake = AzureFake(tmp_path)
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", fake.url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(fake.ca_file))
    yield fake
    fake.stop()


def assertion(subject: str) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part({'sub': subject, 'aud': ['api://AzureADTokenExchange']})}.c2lnbmF0dXJl"


def test_token_exchange_sends_the_assertion_and_removes_its_file(entra: AzureFake) -> None:
    entra.state.federated["cid"] = SUBJECT
    jwt = assertion(SUBJECT)
    token = WorkloadIdentityTokens().token("tid", "cid", jwt, "https://management.azure.com/.default")
    assert entra.state.issued[token] == "cid"
    (request,) = entra.requests()
    assert request.path == "/tid/oauth2/v2.0/token"
    assert request.form["client_assertion"] == [jwt] and request.form["scope"] == [
        "https://management.azure.com/.default"
    ]
    assert not list(Path(tempfile.gettempdir()).glob("modelyard-token-*"))


def test_untrusted_subject_is_refused_without_echoing_the_assertion(entra: AzureFake) -> None:
    entra.state.federated["cid"] = "system:serviceaccount:other:modelyard-gateway"
    jwt = assertion(SUBJECT)
    with pytest.raises(AzureRefused) as info:
        WorkloadIdentityTokens().token("tid", "cid", jwt, "https://management.azure.com/.default")
    assert info.value.code == "TokenExchangeFailed"
    assert "AADSTS700213" in str(info.value) and jwt not in str(info.value)
