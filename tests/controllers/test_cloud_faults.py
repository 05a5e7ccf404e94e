"""The clouds failing on purpose: AWS STS answering 429 and 500 (a fault-injecting proxy in front of moto's
server, STS's ErrorResponse XML), the Entra ID token endpoint answering 429 and 500 (the Azure fake's fault
mode, AADSTS JSON bodies), Resource Manager answering 503. Each test proves recovery: the binding keeps its
last verdict and status fields, says why it could not be verified now (reason, status code, message), posts
one Event, is retried with back-off long before ``verifyEvery`` (10 minutes here), and is verified again once
the cloud answers, with no change to the object. A refusal (a trust policy that does not name the gateway's
ServiceAccount) is a verdict, not retried.

The SDKs' own retries count: boto3 makes 3 attempts per call (cloud/aws.py client_config: standard mode,
max_attempts 3) and azure-identity 3 per token (retry_total 2); a fault until cleared outlasts both, and the
tests assert that the operator itself came back more than once (more requests than one pass's retries).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from modelyard.controllers.errors import BACKOFF_FIRST_S
from tests.controllers.conftest import GROUP, VERSION, condition, create
from tests.controllers.test_provider_binding import (
    CLIENT,
    RESOURCE,
    ROLE,
    aws,
    azure_binding,
    bedrock_binding,
    get_pb,
    private_bedrock,
)
from tests.fakes.aws_faults import AwsFaults, Fault
from tests.fakes.azure import AzureFake, TokenFault
from tests.fakes.bedrock import claims

pytestmark = pytest.mark.sandbox

UNAVAILABLE = "VerificationUnavailable"
REJECTED = "TrustPolicyRejected"
#: requests per verification pass the SDKs make on their own before giving up (see the module docstring)
BOTO3_ATTEMPTS = AZURE_ATTEMPTS = 3
#: a verified binding's verdicts
BEDROCK_VERDICT = {
    "CredentialsVerified": "RoleAssumed",
    "PrivateConnectivityVerified": "VpcEndpointAvailable",
}
AZURE_VERDICT = {
    "CredentialsVerified": "TokenIssued",
    "PrivateConnectivityVerified": "PrivateEndpointApproved",
}
#: after the cloud answers again, the binding is verified within this (back-off is 2, 4, 8 ... s)
RECOVERY_S = 30


@pytest.fixture
def sts(moto_url: str, clouds: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsFaults]:
    """The fault proxy in front of moto, as the operator's AWS endpoint."""
    proxy = AwsFaults(moto_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    yield proxy
    proxy.stop()


def when(custom: Any, namespace: str, name: str, predicate: Any) -> Any:
    """A check for wait_for: the binding's body once ``predicate(body)`` holds."""

    def check() -> dict[str, Any] | None:
        body = get_pb(custom, namespace, name)
        return body if predicate(body) else None

    return check


def quiet(body: dict[str, Any]) -> dict[str, Any]:
    """A binding's status without kopf's own bookkeeping (retries are counted there)."""
    return {k: v for k, v in body["status"].items() if k != "kopf"}


def verdicts(body: dict[str, Any]) -> dict[str, str | None]:
    types = ("CredentialsVerified", "PrivateConnectivityVerified")
    return {t: (condition(body, t) or {}).get("reason") for t in types}


def verified_since(body: dict[str, Any], before: dict[str, Any]) -> bool:
    return bool(body["status"].get("lastVerifiedTime") != before["status"].get("lastVerifiedTime"))


def current(body: dict[str, Any]) -> bool:
    return bool(body.get("status", {}).get("observedGeneration") == body["metadata"]["generation"])


def cond(body: dict[str, Any], type_: str) -> dict[str, Any]:
    found = condition(body, type_)
    assert found is not None, f"no {type_} condition: {body.get('status')}"
    return found


def warnings(k8s: Any, namespace: str, name: str, reason: str) -> list[Any]:
    events = client.CoreV1Api(k8s).list_namespaced_event(namespace).items
    return [e for e in events if e.involved_object.name == name and e.reason == reason]


def outage_and_recovery(
    k8s: Any,
    custom: Any,
    namespace: str,
    name: str,
    run_operator: Any,
    wait_for: Any,
    *,
    start: Any,
    stop: Any,
    requests: Any,
    per_pass: int,
    verdict: dict[str, str],
    expect: tuple[str, ...],
) -> None:
    """``name`` is verified; the cloud fails (``start()``) and the operator restarts, so its resume handler
    verifies again at once: the verdict is kept and the pass retried with back-off; ``stop()``: verified
    again within RECOVERY_S, the object unchanged. ``requests()`` counts the cloud requests that failed."""
    before = get_pb(custom, namespace, name)
    assert verdicts(before) == verdict and cond(before, "Ready")["status"] == "True"
    start()
    with run_operator():
        body = wait_for(
            when(custom, namespace, name, lambda b: verdicts(b)["CredentialsVerified"] == UNAVAILABLE),
            60,
            "the outage noticed",
        )
        # retried by the operator, not only by the SDK: more than one pass's requests, well before verifyEvery
        wait_for(lambda: requests() > 2 * per_pass, 30, "two passes retried with back-off")
        during = get_pb(custom, namespace, name)
        stop()
        stopped = time.monotonic()
        after = wait_for(
            when(custom, namespace, name, lambda b: verdicts(b) == verdict and verified_since(b, before)),
            RECOVERY_S + 30,
            "verified again after the outage",
        )
        recovered_s = time.monotonic() - stopped
    assert recovered_s < RECOVERY_S, f"verified again {recovered_s:.0f} s after the cloud answered"
    # the last verdict, kept: status and every field as they were, only the reason and message changed
    for kept in (body, during):
        for type_ in ("CredentialsVerified", "PrivateConnectivityVerified", "Ready"):
            was, now = cond(before, type_), cond(kept, type_)
            assert (now["status"], now["lastTransitionTime"]) == (was["status"], was["lastTransitionTime"])
        assert cond(kept, "PrivateConnectivityVerified")["reason"] == UNAVAILABLE
        assert fields(kept) == fields(before)
        message = cond(kept, "CredentialsVerified")["message"]
        assert all(part in message for part in expect), message
        assert before["status"]["lastVerifiedTime"] in message and message.endswith("; retrying")
    assert cond(after, "Ready")["status"] == "True"
    assert cond(after, "Ready")["lastTransitionTime"] == cond(before, "Ready")["lastTransitionTime"]
    # no change to the object was needed
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"]
    # one Warning Event for the episode, however many retries
    (event,) = warnings(k8s, namespace, name, UNAVAILABLE)
    assert event.type == "Warning" and event.count in (None, 1)
    assert all(part in event.message for part in expect), event.message


def fields(body: dict[str, Any]) -> dict[str, Any]:
    """Status fields besides the conditions (and kopf's own bookkeeping, where retries are counted)."""
    skip = ("conditions", "observedGeneration", "kopf")
    return {k: v for k, v in body["status"].items() if k not in skip}


@pytest.mark.parametrize(
    ("status", "code", "text"),
    [(429, "Throttling", "Rate exceeded"), (500, "ServiceUnavailable", "Service is unavailable")],
)
def test_sts_faults_keep_the_verdict_and_are_retried(
    k8s: Any,
    custom: Any,
    namespace: str,
    run_operator: Any,
    wait_for: Any,
    moto_url: str,
    clouds: Any,
    sts: AwsFaults,
    status: int,
    code: str,
    text: str,
) -> None:
    endpoint_id, _ = private_bedrock(moto_url, clouds, subnet=20 + status % 7)
    aws(moto_url, "bedrock").put_model_invocation_logging_configuration(
        loggingConfig={"cloudWatchConfig": {"logGroupName": "bedrock", "roleArn": ROLE}}
    )
    binding = bedrock_binding("bedrock", endpoint_id)
    binding["spec"]["verifyEvery"] = "10m"  # every verification below is a retry, not the schedule
    with run_operator():
        create(custom, namespace, binding)
        wait_for(when(custom, namespace, "bedrock", ready), 60, "Ready")
    faults: list[Fault] = []
    outage_and_recovery(
        k8s,
        custom,
        namespace,
        "bedrock",
        run_operator,
        wait_for,
        start=lambda: faults.append(sts.fail("AssumeRoleWithWebIdentity", status, code, text)),
        stop=sts.clear,
        requests=lambda: sum(f.served for f in faults),
        per_pass=BOTO3_ATTEMPTS,
        verdict=BEDROCK_VERDICT,
        expect=(f"sts:AssumeRoleWithWebIdentity: {status} {code}: {text}",),
    )


def ready(body: dict[str, Any]) -> bool:
    return (condition(body, "Ready") or {}).get("status") == "True"


def azure_account(azure: AzureFake, clouds: Any, namespace: str, prefix: str, address: str) -> str:
    """A compliant account the gateway ServiceAccount of ``namespace`` may read: its resource id."""
    azure.state.federated[CLIENT] = f"system:serviceaccount:{namespace}:modelyard-gateway"
    name = f"{prefix}-{namespace[-6:]}"
    azure.add_private_account(f"{RESOURCE}/{name}", f"https://{name}.openai.azure.com/", {"gpt-4o-prod"})
    clouds(f"{name}.openai.azure.com", address)
    return name


@pytest.mark.parametrize(("status", "aadsts"), [(429, "AADSTS90055"), (500, "AADSTS90033")])
def test_token_endpoint_faults_keep_the_verdict_and_are_retried(
    k8s: Any,
    custom: Any,
    namespace: str,
    run_operator: Any,
    wait_for: Any,
    azure: AzureFake,
    clouds: Any,
    status: int,
    aadsts: str,
) -> None:
    binding = azure_binding("azure", azure_account(azure, clouds, namespace, f"tf{status}", "10.1.0.7"))
    binding["spec"]["verifyEvery"] = "10m"
    with run_operator():
        create(custom, namespace, binding)
        wait_for(when(custom, namespace, "azure", ready), 60, "Ready")
    fault = TokenFault(status)
    try:
        outage_and_recovery(
            k8s,
            custom,
            namespace,
            "azure",
            run_operator,
            wait_for,
            start=lambda: setattr(azure.state, "token_fault", fault),
            stop=lambda: setattr(azure.state, "token_fault", None),
            requests=lambda: fault.served,
            per_pass=AZURE_ATTEMPTS,
            verdict=AZURE_VERDICT,
            expect=(f"token exchange for client {CLIENT}: {status} ", aadsts),
        )
    finally:
        azure.state.token_fault = None


def test_resource_manager_outage_keeps_the_verdict_and_is_retried(
    k8s: Any,
    custom: Any,
    namespace: str,
    run_operator: Any,
    wait_for: Any,
    azure: AzureFake,
    clouds: Any,
) -> None:
    name = azure_account(azure, clouds, namespace, "arm", "10.1.0.8")
    binding = azure_binding("azure", name)
    binding["spec"]["verifyEvery"] = "10m"
    with run_operator():
        create(custom, namespace, binding)
        wait_for(when(custom, namespace, "azure", ready), 60, "Ready")
    rid = f"{RESOURCE}/{name}"

    def arm_reads() -> int:
        return sum(1 for r in azure.requests() if r.method == "GET" and r.path == rid)

    first = arm_reads()
    try:
        outage_and_recovery(
            k8s,
            custom,
            namespace,
            "azure",
            run_operator,
            wait_for,
            start=lambda: setattr(azure.state, "arm_outage", 503),
            stop=lambda: setattr(azure.state, "arm_outage", None),
            requests=lambda: arm_reads() - first,
            per_pass=1,  # the operator's own GET, no SDK retry
            verdict=AZURE_VERDICT,
            expect=(f"GET {rid}: 503 ServiceUnavailable: try again later",),
        )
    finally:
        azure.state.arm_outage = None


def test_a_trust_policy_refusal_is_a_verdict_not_retried(
    k8s: Any,
    custom: Any,
    namespace: str,
    run_operator: Any,
    wait_for: Any,
    moto_url: str,
    clouds: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The counter-check: STS refusing the token (AccessDenied: the role's trust policy names another
    ServiceAccount, evaluated by the proxy as AWS does) is CredentialsVerified=False/TrustPolicyRejected at
    once, a verdict with its time, and no VerificationUnavailable retry loop."""
    endpoint_id, _ = private_bedrock(moto_url, clouds, subnet=30)
    issuer = cluster_issuer(k8s, namespace)
    policy = trust_only(issuer, f"system:serviceaccount:{namespace}:someone-else")
    proxy = AwsFaults(moto_url, trust_policy=lambda role: policy if role == ROLE else None)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    binding = bedrock_binding("refused", endpoint_id)
    binding["spec"]["verifyEvery"] = "10m"
    try:
        with run_operator():
            create(custom, namespace, binding)
            body = wait_for(
                when(custom, namespace, "refused", lambda b: verdicts(b)["CredentialsVerified"] == REJECTED),
                60,
                "TrustPolicyRejected",
            )
            refused_at = time.monotonic()
            # a spec change asks STS once more (the update handler): the same refusal, and proof that the
            # operator was asking; a retry of the first refusal would have come 2 s after it
            time.sleep(max(0.0, refused_at + 2 * BACKOFF_FIRST_S - time.monotonic()))
            patch = {"spec": {"verifyEvery": "11m"}}
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, "providerbindings", "refused", patch
            )
            again = wait_for(
                when(custom, namespace, "refused", lambda b: current(b) and verified_since(b, body)),
                30,
                "the update verified",
            )
    finally:
        proxy.stop()
    for seen in (body, again):
        credentials = cond(seen, "CredentialsVerified")
        assert (credentials["status"], credentials["reason"]) == ("False", REJECTED)
        assert "AccessDenied" in credentials["message"]
        assert cond(seen, "Ready")["status"] == "False"
    # each pass asked STS once (boto3 does not retry a 403 either), and no pass was retried
    assert proxy.count("AssumeRoleWithWebIdentity") == 2
    assert not warnings(k8s, namespace, "refused", UNAVAILABLE)
    subject = f"system:serviceaccount:{namespace}:modelyard-gateway"
    assert proxy.state.refusals == [f"no statement trusts subject {subject} of {issuer}"] * 2


def cluster_issuer(k8s: Any, namespace: str) -> str:
    """The issuer (without https://) of the cluster's ServiceAccount tokens, from a token of its own."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=["sts.amazonaws.com"])
    )
    token = client.CoreV1Api(k8s).create_namespaced_service_account_token("default", namespace, request)
    return str(claims(token.status.token)["iss"]).removeprefix("https://")


def trust_only(issuer: str, subject: str) -> dict[str, Any]:
    """An IRSA trust policy: the cluster's OIDC provider, for one ServiceAccount subject."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": f"arn:aws:iam::123456789012:oidc-provider/{issuer}"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {f"{issuer}:sub": subject, f"{issuer}:aud": "sts.amazonaws.com"}
                },
            }
        ],
    }
