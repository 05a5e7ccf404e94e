"""The cloud credentials a verification handles never reach status, Events, the operator's log (verbose) or
ConfigMaps: the ARM access token Entra ID issued (the Azure fake issues planted values), the federated
assertions (the gateway ServiceAccount tokens the operator minted, read back from what the clouds received)
and the STS session credentials (AccessKeyId, SecretAccessKey, SessionToken, read from the answers of moto's
STS as they passed a recording proxy).

The same test runs with the protection removed (the SDK loggers left at DEBUG, and a debug line logging the
Azure assertion and token) and must then find every kind in the operator's log: the search is not blind.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from modelyard.cloud import azure as azure_cloud
from modelyard.controllers import provider_binding
from tests.controllers.conftest import create, dumps, kubectl
from tests.controllers.test_provider_binding import (
    CLIENT,
    RESOURCE,
    azure_binding,
    bedrock_binding,
    cond_is,
    get_pb,
    private_bedrock,
)
from tests.fakes.aws_faults import AwsFaults
from tests.fakes.azure import PLANTED_TOKEN_PREFIX, AzureFake

pytestmark = pytest.mark.sandbox

TOKEN_PATH = "/oauth2/v2.0/token"


@pytest.fixture
def recorder(moto_url: str, clouds: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsFaults]:
    """A proxy in front of moto (no faults) that records the tokens STS received and the credentials it
    issued."""
    proxy = AwsFaults(moto_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    yield proxy
    proxy.stop()


def unprotect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove the protection: the SDKs' loggers stay at the operator's level (DEBUG with --verbose:
    botocore logs request and response bodies), and the Azure exchange logs what it sent and got."""
    for name in provider_binding.QUIET_LOGGERS:
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "level", logger.level)  # restored afterwards
        logger.setLevel(logging.NOTSET)
    monkeypatch.setattr(provider_binding, "QUIET_LOGGERS", ())
    exchange = azure_cloud.WorkloadIdentityTokens.token

    def logged(self: Any, tenant_id: str, client_id: str, assertion: str, scope: str) -> str:
        token = exchange(self, tenant_id, client_id, assertion, scope)
        logging.getLogger(azure_cloud.__name__).debug("exchanged %s for %s", assertion, token)
        return token

    monkeypatch.setattr(azure_cloud.WorkloadIdentityTokens, "token", logged)


@pytest.mark.parametrize("protected", [True, False], ids=["protected", "protection-removed"])
def test_cloud_credentials_never_leak(
    sandbox: Any,
    k8s: Any,
    custom: Any,
    namespace: str,
    run_operator: Any,
    wait_for: Any,
    moto_url: str,
    clouds: Any,
    azure: AzureFake,
    recorder: AwsFaults,
    monkeypatch: pytest.MonkeyPatch,
    protected: bool,
) -> None:
    endpoint_id, _ = private_bedrock(moto_url, clouds, subnet=40 + protected)
    subject = f"system:serviceaccount:{namespace}:modelyard-gateway"
    azure.state.federated[CLIENT] = subject
    account = f"leak-{namespace[-6:]}"
    azure.add_private_account(
        f"{RESOURCE}/{account}", f"https://{account}.openai.azure.com/", {"gpt-4o-prod"}
    )
    clouds(f"{account}.openai.azure.com", "10.1.0.9")
    issued_before = set(azure.state.issued)
    if not protected:
        unprotect(monkeypatch)
    with run_operator("--verbose") as runner:
        create(custom, namespace, bedrock_binding("bedrock", endpoint_id))
        create(custom, namespace, azure_binding("azure", account))
        for name in ("bedrock", "azure"):
            wait_for(cond_is(custom, namespace, name, "CredentialsVerified", "True"), 60, f"{name} verified")
    sessions = recorder.credentials()
    secrets = {
        "STS AccessKeyId": [c.access_key_id for c in sessions],
        "STS SecretAccessKey": [c.secret_access_key for c in sessions],
        "STS SessionToken": [c.session_token for c in sessions],
        "web identity token (STS)": recorder.tokens(),
        "federated assertion (Entra ID)": [
            r.form["client_assertion"][0]
            for r in azure.requests()
            if r.path.endswith(TOKEN_PATH) and "client_assertion" in r.form
        ],
        "ARM access token": [t for t in azure.state.issued if t not in issued_before],
    }
    assert all(secrets.values()), {kind: len(values) for kind, values in secrets.items()}
    assert all(t.startswith(PLANTED_TOKEN_PREFIX) for t in secrets["ARM access token"])
    core = client.CoreV1Api(k8s)
    places = {
        "status": dumps([get_pb(custom, namespace, n)["status"] for n in ("bedrock", "azure")]),
        "events": dumps([e.to_dict() for e in core.list_namespaced_event(namespace).items]),
        "operator log": runner.output,
        "configmaps": dumps([c.to_dict() for c in core.list_config_map_for_all_namespaces().items]),
        "service account": kubectl(sandbox, "get", "sa", "-n", namespace, "-o", "yaml"),
    }
    assert "ProviderBinding" in places["operator log"]  # the log was captured, verbose
    found = {
        (kind, where)
        for kind, values in secrets.items()
        for where, text in places.items()
        if any(value in text for value in values)
    }
    if protected:
        assert not found, f"found (kind, where): {sorted(found)}"  # names only, never the values
    else:
        assert {kind for kind, where in found if where == "operator log"} == set(secrets), sorted(found)
