"""The ProviderBinding controller against the sandbox, with AWS served by moto as a real HTTP server (boto3
pointed at it with AWS_ENDPOINT_URL) and Azure by a local HTTPS fake of Entra ID and Resource Manager.

DNS: the operator's documented MODELYARD_HOSTS_FILE maps the endpoint names to the private addresses a VPC's
private zone would answer with (this machine has no such zone).
"""

from __future__ import annotations

import base64
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from moto.ec2.models import ec2_backends
from moto.sts.models import STSBackend

from tests.conftest import REGION
from tests.controllers.conftest import (
    GROUP,
    PLANTED,
    VERSION,
    condition,
    create,
    dumps,
    kubectl,
    operator_writes,
    warning,
)
from tests.fakes.azure import AzureFake, account, private_endpoint_connection

pytestmark = pytest.mark.sandbox

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/llm-gateway"
CLIENT = "11111111-2222-3333-4444-555555555555"
TENANT = "66666666-7777-8888-9999-000000000000"
RESOURCE = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/llm"
    "/providers/Microsoft.CognitiveServices/accounts"
)
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.")


def aws(moto_url: str, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def private_bedrock(moto_url: str, clouds: Any, subnet: int) -> tuple[str, str]:
    """A bedrock-runtime interface endpoint, its name and bedrock-runtime's resolving to 10.0.SUBNET.x (as
    private DNS does in the VPC): (endpoint id, endpoint DNS name)."""
    endpoint_id, dns = vpc_endpoint(moto_url)
    clouds(dns, f"10.0.{subnet}.10")
    clouds(f"bedrock-runtime.{REGION}.amazonaws.com", f"10.0.{subnet}.11")
    return endpoint_id, dns


def vpc_endpoint(moto_url: str, private_dns: bool = True, state: str = "available") -> tuple[str, str]:
    """A bedrock-runtime interface endpoint in moto: (id, DNS name)."""
    ec2 = aws(moto_url, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    endpoint = ec2.create_vpc_endpoint(
        VpcId=vpc,
        ServiceName=f"com.amazonaws.{REGION}.bedrock-runtime",
        VpcEndpointType="Interface",
        PrivateDnsEnabled=private_dns,
    )["VpcEndpoint"]
    if state != "available":  # moto creates endpoints available; the acceptance workflow is not modelled
        ec2_backends[ACCOUNT][REGION].vpc_end_points[endpoint["VpcEndpointId"]].state = state
    return endpoint["VpcEndpointId"], endpoint["DnsEntries"][0]["DnsName"]


def bedrock_binding(name: str, endpoint_id: str | None, **auth: Any) -> dict[str, Any]:
    bedrock: dict[str, Any] = {
        "region": REGION,
        "models": ["anthropic.claude-3-5-sonnet-20240620-v1:0"],
        "auth": auth or {"type": "irsa", "roleArn": ROLE},
    }
    if endpoint_id:
        bedrock["vpcEndpoint"] = {"id": endpoint_id}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ProviderBinding",
        "metadata": {"name": name},
        "spec": {
            "provider": "bedrock",
            "bedrock": bedrock,
            "dataClassification": "confidential",
            "verifyEvery": "5s",
        },
    }


def azure_binding(name: str, account_name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ProviderBinding",
        "metadata": {"name": name},
        "spec": {
            "provider": "azureOpenAI",
            "azureOpenAI": {
                "endpoint": f"https://{account_name}.openai.azure.com",
                "resourceId": f"{RESOURCE}/{account_name}",
                "deployments": [{"name": "gpt-4o-prod", "model": "gpt-4o"}],
                "auth": {"type": "workloadIdentity", "clientId": CLIENT, "tenantId": TENANT},
            },
            "dataClassification": "confidential",
            "verifyEvery": "5s",
        },
    }


def get_pb(custom: Any, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "providerbindings", name
    )
    return result


def cond_is(
    custom: Any, namespace: str, name: str, type_: str, status: str, reason: str | None = None
) -> Any:
    def check() -> dict[str, Any] | None:
        body = get_pb(custom, namespace, name)
        found = condition(body, type_)
        if found and found["status"] == status and reason in (None, found["reason"]):
            return body
        return None

    return check


def never_ready(custom: Any, namespace: str, names: list[str], seconds: float) -> None:
    """No binding in ``names`` turns Ready for ``seconds``, nor until each has been verified again (its
    ``lastVerifiedTime`` moved, at most 30 s more): the silence covers a re-verification, not just time."""
    since = {name: verified_time(custom, namespace, name) for name in names}
    reverified: set[str] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or (reverified != set(names) and time.monotonic() < deadline + 30):
        for name in names:
            body = get_pb(custom, namespace, name)
            ready = condition(body, "Ready")
            assert ready is None or ready["status"] != "True", f"{name} turned Ready: {ready}"
            if str(body["status"].get("lastVerifiedTime") or "") > since[name]:
                reverified.add(name)
        time.sleep(0.5)
    assert reverified == set(names), f"not verified again: {sorted(set(names) - reverified)}"


def verified_time(custom: Any, namespace: str, name: str) -> str:
    return str((get_pb(custom, namespace, name).get("status") or {}).get("lastVerifiedTime") or "")


def verified_after(custom: Any, namespace: str, name: str, since: str) -> Any:
    def check() -> bool:
        return str(get_pb(custom, namespace, name)["status"].get("lastVerifiedTime") or "") > since

    return check


def test_bedrock_binding_with_private_endpoint_becomes_ready(
    sandbox: Any,
    k8s: Any,
    custom: Any,
    namespace: str,
    run_operator: Any,
    wait_for: Any,
    moto_url: str,
    clouds: Any,
) -> None:
    endpoint_id, dns = private_bedrock(moto_url, clouds, subnet=1)
    aws(moto_url, "bedrock").put_model_invocation_logging_configuration(
        loggingConfig={"cloudWatchConfig": {"logGroupName": "bedrock", "roleArn": ROLE}}
    )
    with run_operator():
        create(custom, namespace, bedrock_binding("bedrock-eu", endpoint_id))
        create(
            custom, namespace, bedrock_binding("pod-identity", endpoint_id, type="podIdentity", roleArn=ROLE)
        )
        wait_for(cond_is(custom, namespace, "bedrock-eu", "Ready", "True"), 60, "bedrock-eu Ready")
        pod_identity = wait_for(
            cond_is(custom, namespace, "pod-identity", "Ready", "True"), 30, "pod-identity"
        )
        mark = (sandbox.logs / "audit.log").stat().st_size
        first = get_pb(custom, namespace, "bedrock-eu")["status"]["lastVerifiedTime"]
        wait_for(verified_after(custom, namespace, "bedrock-eu", first), 20, "a re-verification")
    # A re-verification that finds nothing new writes its status (lastVerifiedTime), not the ServiceAccount.

    def reverified() -> list[str] | None:  # the audit log may trail the status by a moment
        writes = operator_writes(sandbox, mark, namespace)
        return writes if "patch providerbindings/bedrock-eu" in writes else None

    writes = wait_for(reverified, 10, "the re-verification's status write in the audit log")
    assert not [w for w in writes if w.startswith("patch serviceaccounts")]  # (tokens are minted: create)
    status = get_pb(custom, namespace, "bedrock-eu")["status"]
    reasons = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert reasons == {
        "IdentityConfigured": ("True", "ServiceAccountConfigured"),
        "CredentialsVerified": ("True", "RoleAssumed"),
        "PrivateConnectivityVerified": ("True", "VpcEndpointAvailable"),
        "Ready": ("True", "Ready"),
    }
    subject = f"system:serviceaccount:{namespace}:modelyard-gateway"
    assert status["identity"] == {"mode": "keyless", "principal": ROLE, "subject": subject}
    assert status["endpoint"] == f"https://{dns}" and status["region"] == REGION
    assert "assumed-role/llm-gateway/" in condition({"status": status}, "CredentialsVerified")["message"]
    assert not [f for f in status["findings"] if f["severity"] != "low"]
    account = client.CoreV1Api(k8s).read_namespaced_service_account("modelyard-gateway", namespace)
    assert account.metadata.annotations["eks.amazonaws.com/role-arn"] == ROLE
    assert {(o.kind, o.controller) for o in account.metadata.owner_references} == {("ProviderBinding", False)}
    row = kubectl(sandbox, "get", "pb", "-n", namespace).splitlines()[1].split()
    assert row[:6] == ["bedrock-eu", "bedrock", REGION, "keyless", "True", "True"]
    assert not get_pb(custom, namespace, "bedrock-eu")["metadata"].get("finalizers")
    # EKS Pod Identity: the operator cannot assume the association's role; the rest is verified
    assert condition(pod_identity, "CredentialsVerified")["reason"] == "AssociationCheckedByGateway"
    assert condition(pod_identity, "PrivateConnectivityVerified")["reason"] == "VpcEndpointAvailable"
    assert pod_identity["status"]["identity"]["principal"] == ROLE
    assert {o.name for o in account.metadata.owner_references} == {"bedrock-eu", "pod-identity"}


def test_pending_endpoint_or_private_dns_off_is_never_ready(
    custom: Any, namespace: str, run_operator: Any, wait_for: Any, moto_url: str, clouds: Any
) -> None:
    pending, pending_dns = vpc_endpoint(moto_url, state="pending")
    public_dns, public_dns_name = vpc_endpoint(moto_url, private_dns=False)
    for host in (pending_dns, public_dns_name, f"bedrock-runtime.{REGION}.amazonaws.com"):
        clouds(host, "10.0.2.10")
    with run_operator():
        create(custom, namespace, bedrock_binding("pending", pending))
        create(custom, namespace, bedrock_binding("no-private-dns", public_dns))
        for name, reason in (
            ("pending", "VpcEndpointNotAvailable"),
            ("no-private-dns", "PrivateDnsDisabled"),
        ):
            body = wait_for(
                cond_is(custom, namespace, name, "PrivateConnectivityVerified", "False", reason),
                60,
                f"{name} {reason}",
            )
            ready = condition(body, "Ready")
            assert ready["status"] == "False" and ready["reason"] == reason
            assert condition(body, "CredentialsVerified")["status"] == "True"
            assert "PRIVATE_LINK_UNVERIFIED" in {f["code"] for f in body["status"]["findings"]}
        assert "is pending" in condition(get_pb(custom, namespace, "pending"), "Ready")["message"]
        never_ready(custom, namespace, ["pending", "no-private-dns"], 8)  # a re-verification or more


def test_required_invocation_logging_missing_keeps_it_not_ready(
    custom: Any, namespace: str, run_operator: Any, wait_for: Any, moto_url: str, clouds: Any
) -> None:
    endpoint_id, _ = private_bedrock(moto_url, clouds, subnet=5)
    bedrock = aws(moto_url, "bedrock")
    bedrock.delete_model_invocation_logging_configuration()
    try:
        with run_operator():
            create(custom, namespace, bedrock_binding("unlogged", endpoint_id))
            body = wait_for(
                cond_is(custom, namespace, "unlogged", "Ready", "False", "InvocationLoggingNotConfigured"),
                60,
                "InvocationLoggingNotConfigured",
            )
    finally:
        bedrock.put_model_invocation_logging_configuration(
            loggingConfig={"cloudWatchConfig": {"logGroupName": "bedrock", "roleArn": ROLE}}
        )
    assert [condition(body, t)["status"] for t in ("CredentialsVerified", "PrivateConnectivityVerified")] == [
        "True",
        "True",
    ]
    assert {"code": "NO_INVOCATION_LOGGING", "severity": "medium"}.items() <= body["status"]["findings"][
        0
    ].items()


def test_caller_other_than_the_role_is_refused(
    custom: Any,
    namespace: str,
    run_operator: Any,
    wait_for: Any,
    moto_url: str,
    clouds: Any,
    monkeypatch: Any,
) -> None:
    endpoint_id, _ = private_bedrock(moto_url, clouds, subnet=3)
    node_role = f"arn:aws:sts::{ACCOUNT}:assumed-role/eks-node-role/i-0abc123"
    # STS answers for another identity, as when credentials silently come from the node role.
    monkeypatch.setattr(
        STSBackend, "get_caller_identity", lambda self, key, region: ("AROAX", node_role, ACCOUNT)
    )
    with run_operator():
        create(custom, namespace, bedrock_binding("wrong-caller", endpoint_id))
        body = wait_for(
            cond_is(
                custom, namespace, "wrong-caller", "CredentialsVerified", "False", "CallerIdentityMismatch"
            ),
            60,
            "CallerIdentityMismatch",
        )
        never_ready(custom, namespace, ["wrong-caller"], 6)
    assert node_role in condition(body, "CredentialsVerified")["message"]
    assert condition(body, "Ready")["reason"] == "CallerIdentityMismatch"
    assert body["status"]["identity"].get("principal") is None


def claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    result: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return result


def test_azure_turns_ready_when_public_access_and_pending_endpoint_are_fixed(
    k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any, azure: AzureFake, clouds: Any
) -> None:
    subject = f"system:serviceaccount:{namespace}:modelyard-gateway"
    azure.state.federated[CLIENT] = subject
    public, pending = f"pub-{namespace[-6:]}", f"pend-{namespace[-6:]}"
    for name, access, link in ((public, "Enabled", "Approved"), (pending, "Disabled", "Pending")):
        rid = f"{RESOURCE}/{name}"
        azure.state.accounts[rid] = account(
            rid,
            "westeurope",
            f"https://{name}.openai.azure.com/",
            publicNetworkAccess=access,
            disableLocalAuth=True,
            privateEndpointConnections=[private_endpoint_connection(rid, link)],
        )
        azure.state.deployments[rid] = {"gpt-4o-prod"}
        clouds(f"{name}.openai.azure.com", "10.1.0.5")
    start = len(azure.requests())
    with run_operator():
        create(custom, namespace, azure_binding("public", public))
        create(custom, namespace, azure_binding("pending", pending))
        for name, reason in (
            ("public", "PublicNetworkAccessEnabled"),
            ("pending", "PrivateEndpointNotApproved"),
        ):
            body = wait_for(
                cond_is(custom, namespace, name, "PrivateConnectivityVerified", "False", reason), 60, reason
            )
            assert condition(body, "Ready")["status"] == "False"
            assert condition(body, "CredentialsVerified")["reason"] == "TokenIssued"
        assert "Pending" in condition(get_pb(custom, namespace, "pending"), "Ready")["message"]
        never_ready(custom, namespace, ["public", "pending"], 6)
        azure.state.accounts[f"{RESOURCE}/{public}"]["properties"]["publicNetworkAccess"] = "Disabled"
        azure.state.accounts[f"{RESOURCE}/{pending}"]["properties"]["privateEndpointConnections"] = [
            private_endpoint_connection(f"{RESOURCE}/{pending}", "Approved")
        ]
        for name in ("public", "pending"):
            body = wait_for(
                cond_is(custom, namespace, name, "Ready", "True"), 45, f"{name} Ready after the fix"
            )
    status = body["status"]
    assert status["identity"] == {"mode": "keyless", "principal": CLIENT, "subject": subject}
    assert status["region"] == "westeurope" and status["endpoint"] == f"https://{pending}.openai.azure.com"

    requests = azure.requests()[start:]
    tokens = [r for r in requests if r.method == "POST"]
    assert {r.path for r in tokens} == {f"/{TENANT}/oauth2/v2.0/token"}
    for request in tokens:
        form = {k: v[0] for k, v in request.form.items()}
        assert form["client_id"] == CLIENT and form["scope"] == "https://management.azure.com/.default"
        assert form["grant_type"] == "client_credentials"
        assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        minted = claims(form["client_assertion"])
        assert minted["sub"] == subject and minted["aud"] == ["api://AzureADTokenExchange"]
    # the assertion is a real token of the gateway ServiceAccount, as the API server confirms
    review = client.AuthenticationV1Api(k8s).create_token_review(
        client.V1TokenReview(
            spec=client.V1TokenReviewSpec(
                token=tokens[-1].form["client_assertion"][0], audiences=["api://AzureADTokenExchange"]
            )
        )
    )
    assert review.status.authenticated and review.status.user.username == subject
    arm = {(r.path, r.query["api-version"][0]) for r in requests if r.method == "GET"}
    assert arm == {
        (f"{RESOURCE}/{name}{suffix}", "2024-10-01")
        for name in (public, pending)
        for suffix in ("", "/deployments/gpt-4o-prod")
    }
    issued = set(azure.state.issued)
    assert all(
        r.headers["Authorization"].removeprefix("Bearer ") in issued for r in requests if r.method == "GET"
    )
    assert not list(Path(tempfile.gettempdir()).glob("modelyard-token-*"))  # the token file is gone


def test_deleting_a_binding_removes_its_wiring(
    k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any, clouds: Any
) -> None:
    core = client.CoreV1Api(k8s)

    def annotations() -> dict[str, str]:
        try:
            account = core.read_namespaced_service_account("modelyard-gateway", namespace)
        except ApiException as exc:
            if exc.status == 404:
                return {}
            raise
        return dict(account.metadata.annotations or {})

    with run_operator():
        create(custom, namespace, bedrock_binding("bedrock", None))
        remaining = azure_binding("azure", "anywhere")
        remaining["spec"]["verifyEvery"] = "10m"  # no re-verification re-applies the ServiceAccount meanwhile
        create(custom, namespace, remaining)
        wait_for(lambda: len(annotations()) == 4, 30, "both bindings' annotations")
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "providerbindings", "bedrock")
        wait_for(lambda: "eks.amazonaws.com/role-arn" not in annotations(), 10, "the IRSA annotation removed")
    assert annotations()["azure.workload.identity/client-id"] == CLIENT
    refs = core.read_namespaced_service_account("modelyard-gateway", namespace).metadata.owner_references
    assert [o.name for o in refs] == ["azure"]


def test_a_route_policy_lets_go_of_a_deleted_bindings_wiring(
    k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any, clouds: Any
) -> None:
    """The bindings and each RoutePolicy apply the gateway ServiceAccount, each as its own field manager, with
    one rule (gateway_account.py): apply again when the last apply is not what is wanted now. A policy routing
    to a deleted binding applies it again without that binding's wiring, so no manager keeps its annotation
    (a policy used to apply once, when its owner reference was missing, and then held the annotation)."""
    core = client.CoreV1Api(k8s)

    def account() -> Any:
        try:
            return core.read_namespaced_service_account("modelyard-gateway", namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def annotations() -> dict[str, str]:
        found = account()
        return dict(found.metadata.annotations or {}) if found is not None else {}

    def managers() -> set[str]:
        found = account()
        return {m.manager for m in found.metadata.managed_fields or []} if found is not None else set()

    policy = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RoutePolicy",
        "metadata": {"name": "gw"},
        "spec": {
            "routes": [
                {
                    "model": "chat",
                    "dataClassification": "public",
                    "backends": [
                        {
                            "providerBindingRef": "bedrock",
                            "model": "anthropic.claude-3-5-sonnet-20240620-v1:0",
                        },
                        {"providerBindingRef": "azure", "model": "gpt-4o-prod"},
                    ],
                }
            ]
        },
    }
    with run_operator():
        for binding in (bedrock_binding("bedrock", None), azure_binding("azure", "anywhere")):
            binding["spec"]["verifyEvery"] = "10m"
            create(custom, namespace, binding)
        wait_for(lambda: len(annotations()) == 4, 30, "both bindings' annotations")
        create(custom, namespace, policy)
        wait_for(
            lambda: "modelyard-routepolicy-gw" in managers(), 30, "the policy applied the ServiceAccount"
        )
        assert len(annotations()) == 4
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "providerbindings", "bedrock")
        wait_for(lambda: "eks.amazonaws.com/role-arn" not in annotations(), 20, "the IRSA annotation removed")
    assert annotations()["azure.workload.identity/client-id"] == CLIENT
    refs = account().metadata.owner_references
    assert sorted((o.kind, o.name) for o in refs) == [("ProviderBinding", "azure"), ("RoutePolicy", "gw")]


def static_binding(k8s: Any, namespace: str) -> dict[str, Any]:
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name="bedrock-keys"),
        string_data={"AWS_ACCESS_KEY_ID": "AKIAPLANTEDPLANTED00", "AWS_SECRET_ACCESS_KEY": PLANTED},
    )
    client.CoreV1Api(k8s).create_namespaced_secret(namespace, body)
    return bedrock_binding("static", None, type="staticSecret", secretRef={"name": "bedrock-keys"})


def test_static_credentials_refused_under_the_default_policy(
    k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any, clouds: Any
) -> None:
    with run_operator():
        create(custom, namespace, static_binding(k8s, namespace))
        body = wait_for(
            cond_is(custom, namespace, "static", "Ready", "False", "StaticCredentialsNotAllowed"),
            30,
            "refusal",
        )
        wait_for(warning(k8s, namespace, "static", "StaticCredentialsNotAllowed"), 30, "the Warning Event")
    status = body["status"]
    assert condition(body, "IdentityConfigured")["reason"] == "StaticCredentialsNotAllowed"
    assert condition(body, "CredentialsVerified")["status"] == "Unknown"
    assert status["identity"]["mode"] == "static"
    high = {f["code"] for f in status["findings"] if f["severity"] == "high"}
    assert high == {"STATIC_CREDENTIALS", "PUBLIC_ENDPOINT"}  # keys, and no vpcEndpoint for confidential data


def test_secret_values_and_tokens_never_leak(
    sandbox: Any,
    k8s: Any,
    custom: Any,
    namespace: str,
    run_operator: Any,
    wait_for: Any,
    moto_url: str,
    clouds: Any,
    monkeypatch: Any,
) -> None:
    monkeypatch.setenv("MODELYARD_ALLOW_STATIC_CREDENTIALS", "true")
    endpoint_id, _ = private_bedrock(moto_url, clouds, subnet=4)
    static = static_binding(k8s, namespace)
    static["spec"]["bedrock"]["vpcEndpoint"] = {"id": endpoint_id}
    with run_operator("--verbose") as runner:
        create(custom, namespace, static)
        create(custom, namespace, bedrock_binding("keyless", endpoint_id))  # mints web identity tokens
        wait_for(
            cond_is(custom, namespace, "static", "CredentialsVerified", "True", "StaticSecretPresent"),
            60,
            "static",
        )
        wait_for(cond_is(custom, namespace, "keyless", "CredentialsVerified", "True"), 60, "keyless verified")
    static_status = get_pb(custom, namespace, "static")["status"]
    assert static_status["identity"]["mode"] == "static"
    assert "STATIC_CREDENTIALS" in {f["code"] for f in static_status["findings"] if f["severity"] == "high"}
    core = client.CoreV1Api(k8s)
    places = {
        "status": dumps([get_pb(custom, namespace, n)["status"] for n in ("static", "keyless")]),
        "events": dumps([e.to_dict() for e in core.list_namespaced_event(namespace).items]),
        "operator log": runner.output,
        "configmaps": dumps([c.to_dict() for c in core.list_config_map_for_all_namespaces().items]),
        "service account": kubectl(sandbox, "get", "sa", "-n", namespace, "-o", "yaml"),
    }
    assert "AssumeRoleWithWebIdentity" in places["operator log"] or "keyless" in places["operator log"]
    for where, text in places.items():
        assert PLANTED not in text, f"secret value found in {where}"
        assert "AKIAPLANTEDPLANTED00" not in text, f"access key id found in {where}"
        assert not JWT.search(text), f"a token found in {where}"


def test_a_binding_outside_the_allowed_regions_says_so(
    custom: Any,
    namespace: str,
    run_operator: Any,
    wait_for: Any,
    moto_url: str,
    clouds: Any,
    monkeypatch: Any,
) -> None:
    """Routes refuse a provider outside allowedRegions; the binding's own status tells its owner why."""
    monkeypatch.setenv("MODELYARD_ALLOWED_REGIONS", "us-east-1,us-west-2")
    endpoint_id, _ = private_bedrock(moto_url, clouds, subnet=6)
    with run_operator():
        create(custom, namespace, bedrock_binding("eu", endpoint_id))
        body = wait_for(cond_is(custom, namespace, "eu", "CredentialsVerified", "True"), 60, "eu verified")
    (finding,) = [f for f in body["status"]["findings"] if f["code"] == "REGION_NOT_ALLOWED"]
    assert finding["severity"] == "high"
    assert REGION in finding["message"] and "us-east-1, us-west-2" in finding["message"]
    assert body["status"]["findings"][0] == finding  # high severity first
