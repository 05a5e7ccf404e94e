"""ProviderBindings of public model APIs against the sandbox: the CRD's rules in the real API server, the
operator verifying keys against the local HTTPS fake of the vendors (tests/fakes/public_apis.py, reached
through each binding's baseURL), the conditions and findings it writes, a RoutePolicy's eligibility and
gateway egress, and a planted key that never reaches status, Events, the operator's log, ConfigMaps or the
audit output (with the protection removed, the same search finds it: it is not blind)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from modelyard.cloud import public_api as public_api_cloud
from tests.controllers.conftest import GROUP, VERSION, api_error, condition, create, dumps, kubectl, warning
from tests.controllers.test_cloud_faults import outage_and_recovery
from tests.controllers.test_provider_binding import cond_is, get_pb
from tests.fakes.public_apis import PublicApisFake, base_url

pytestmark = pytest.mark.sandbox

PLANTED_KEY = "sk-PLANTED-public-api-key-9b41f7d2e6"
MODEL = "meta-llama/llama-3.1-8b-instruct"


@pytest.fixture(scope="module")
def vendors() -> Iterator[PublicApisFake]:
    fake = PublicApisFake(Path(tempfile.mkdtemp(prefix="public-apis-")))
    fake.state.models["openrouter"] = [MODEL, "anthropic/claude-sonnet-4.5"]
    fake.state.models["openai"] = ["gpt-4o-mini"]
    fake.state.keys["openrouter"] = PLANTED_KEY
    fake.state.keys["openai"] = "sk-the-right-openai-key"
    yield fake
    fake.stop()


@pytest.fixture
def trusted(vendors: PublicApisFake, monkeypatch: pytest.MonkeyPatch) -> PublicApisFake:
    monkeypatch.setenv("SSL_CERT_FILE", str(vendors.ca_file))  # the operator's httpx trusts the fake
    return vendors


def secret(k8s: Any, namespace: str, name: str, value: str) -> None:
    encoded = base64.b64encode(value.encode()).decode()
    body = client.V1Secret(metadata=client.V1ObjectMeta(name=name), data={"apiKey": encoded})
    client.CoreV1Api(k8s).create_namespaced_secret(namespace, body)


def binding(name: str, vendor: str, url: str, models: list[str], **extra: Any) -> dict[str, Any]:
    public = {
        "vendor": vendor,
        "baseURL": url,
        "apiKeySecretRef": {"name": f"{name}-key", "key": "apiKey"},
        "models": models,
        **extra,
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ProviderBinding",
        "metadata": {"name": name},
        "spec": {"provider": "publicAPI", "publicAPI": public, "dataClassification": "public"},
    }


@pytest.mark.parametrize(
    ("public", "message"),
    [
        ({"vendor": "custom"}, "baseURL: required for vendor custom and cloudflare"),
        ({"vendor": "openai", "baseURL": "http://api.openai.com/v1"}, "should match"),
        ({"vendor": "groq", "providerPreferences": {"dataCollection": "deny"}}, "only for vendor openrouter"),
        (
            {"vendor": "perplexity", "providerPreferences": {"zeroDataRetention": True}},
            "only for vendor openrouter",
        ),
    ],
)
def test_the_api_server_refuses(
    custom: Any, namespace: str, crds: None, public: dict[str, Any], message: str
) -> None:
    body = binding("bad", "openrouter", "https://openrouter.ai/api/v1", [MODEL])
    body["spec"]["publicAPI"] = {
        "apiKeySecretRef": {"name": "k", "key": "apiKey"},
        "models": [MODEL],
        **public,
    }
    error = api_error(lambda: create(custom, namespace, body))
    assert error.status == 422 and message in error.body, error.body


def test_a_public_api_block_under_another_provider_is_refused(
    custom: Any, namespace: str, crds: None
) -> None:
    body = binding("bad", "openrouter", "https://openrouter.ai/api/v1", [MODEL])
    body["spec"]["provider"] = "bedrock"
    error = api_error(lambda: create(custom, namespace, body))
    assert error.status == 422 and "set exactly the block that matches provider" in error.body


def test_a_verified_key_makes_the_binding_ready_and_routes_public_data_only(
    k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any, trusted: PublicApisFake
) -> None:
    secret(k8s, namespace, "openrouter-key", PLANTED_KEY)
    url = base_url(trusted.url, "openrouter")
    prefs = {"dataCollection": "deny", "zeroDataRetention": True}
    route_policy = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RoutePolicy",
        "metadata": {"name": "gw"},
        "spec": {
            "routes": [
                {
                    "model": model,
                    "dataClassification": classification,
                    "backends": [{"providerBindingRef": "openrouter", "model": MODEL}],
                }
                for model, classification in (("prototype", "public"), ("payroll", "confidential"))
            ]
        },
    }
    with run_operator():
        create(
            custom,
            namespace,
            binding("openrouter", "openrouter", url, [MODEL, "no/such-model"], providerPreferences=prefs),
        )
        body = wait_for(cond_is(custom, namespace, "openrouter", "Ready", "True"), 60, "binding Ready")
        create(custom, namespace, route_policy)
        policy = wait_for(lambda: _routes(custom, namespace), 60, "routes resolved")
        netpol = wait_for(lambda: _netpol(k8s, namespace), 30, "gateway NetworkPolicy")
        deployment = client.AppsV1Api(k8s).read_namespaced_deployment("gw-gateway", namespace)
    status = body["status"]
    credentials = condition(body, "CredentialsVerified")
    assert credentials and credentials["reason"] == "KeyAccepted", credentials
    private = condition(body, "PrivateConnectivityVerified")
    assert private and private["status"] == "False" and private["reason"] == "PublicEndpoint"
    assert "public internet" in private["message"]
    assert status["identity"]["mode"] == "static" and status["endpoint"] == url
    codes = {f["code"]: f["severity"] for f in status["findings"]}
    assert codes["PUBLIC_API_BINDING"] == "low" and codes["STATIC_CREDENTIALS"] == "high"
    assert "no/such-model" in next(
        f["message"] for f in status["findings"] if f["code"] == "UNKNOWN_PROVIDER_MODEL"
    )
    routes = {r["model"]: r for r in policy["status"]["routes"]}
    assert routes["prototype"]["eligible"] == [f"ProviderBinding/openrouter/{MODEL}"]
    assert "publicAPIMaxClassification is public" in routes["payroll"]["rejected"][0]["reason"]
    public = [
        r
        for r in netpol.spec.egress
        if r.to and any(p.ip_block and p.ip_block.cidr == "0.0.0.0/0" for p in r.to)
    ]
    assert len(public) == 1 and "169.254.0.0/16" in public[0].to[0].ip_block._except
    env = {e.name: e for e in deployment.spec.template.spec.containers[0].env}
    ref = env["MODELYARD_OPENROUTER_API_KEY"].value_from.secret_key_ref
    assert (ref.name, ref.key) == ("openrouter-key", "apiKey")  # referenced, never copied


def _routes(custom: Any, namespace: str) -> dict[str, Any] | None:
    body: dict[str, Any] = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "routepolicies", "gw"
    )
    return body if len((body.get("status") or {}).get("routes") or []) == 2 else None


def _netpol(k8s: Any, namespace: str) -> Any:
    try:
        return client.NetworkingV1Api(k8s).read_namespaced_network_policy("gw-gateway", namespace)
    except client.ApiException:
        return None


def test_a_refused_key_is_a_verdict(
    k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any, trusted: PublicApisFake
) -> None:
    secret(k8s, namespace, "openai-key", "sk-a-wrong-key")
    with run_operator():
        create(
            custom, namespace, binding("openai", "openai", base_url(trusted.url, "openai"), ["gpt-4o-mini"])
        )
        body = wait_for(cond_is(custom, namespace, "openai", "CredentialsVerified", "False"), 60, "refused")
    assert condition(body, "CredentialsVerified")["reason"] == "CredentialsRejected"  # type: ignore[index]
    assert condition(body, "Ready")["status"] == "False"  # type: ignore[index]


@pytest.mark.parametrize("protected", [True, False], ids=["protected", "protection-removed"])
def test_a_planted_key_never_leaks(
    sandbox: Any,
    k8s: Any,
    custom: Any,
    namespace: str,
    run_operator: Any,
    wait_for: Any,
    trusted: PublicApisFake,
    monkeypatch: pytest.MonkeyPatch,
    protected: bool,
) -> None:
    """The OpenAI fake names the key it refuses in its 401 body, as OpenAI does; the verifier scrubs it."""
    planted = f"sk-PLANTED-refused-key-{protected}-4e8a1b"
    secret(k8s, namespace, "openai-key", planted)
    if not protected:
        monkeypatch.setattr(public_api_cloud, "scrub", lambda text, secrets=(): text)
    with run_operator("--verbose") as runner:
        create(
            custom, namespace, binding("openai", "openai", base_url(trusted.url, "openai"), ["gpt-4o-mini"])
        )
        wait_for(cond_is(custom, namespace, "openai", "CredentialsVerified", "False"), 60, "refused")
        wait_for(warning(k8s, namespace, "openai", "CredentialsRejected"), 30, "the refusal's Warning Event")
    core = client.CoreV1Api(k8s)
    assert any(r.headers.get("authorization") == f"Bearer {planted}" for r in trusted.requests("openai"))
    env = {**os.environ, "KUBECONFIG": str(sandbox.kubeconfig)}
    audit = subprocess.run(
        [sys.executable, "-m", "modelyard.cli.main", "audit", "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert "PUBLIC_API_BINDING" in audit.stdout, audit.stderr
    places = {
        "status": dumps(get_pb(custom, namespace, "openai")["status"]),
        "events": dumps([e.to_dict() for e in core.list_namespaced_event(namespace).items]),
        "operator log": runner.output,
        "configmaps": dumps([c.to_dict() for c in core.list_config_map_for_all_namespaces().items]),
        "audit": audit.stdout + audit.stderr,
    }
    assert "ProviderBinding" in places["operator log"]
    found = {where for where, text in places.items() if planted in text}
    if protected:
        assert not found, f"found in {sorted(found)}"
    else:
        assert {"status", "events"} <= found, sorted(found)


@pytest.mark.parametrize("status", [429, 503])
def test_a_vendor_outage_keeps_the_verdict_and_is_retried(
    k8s: Any,
    custom: Any,
    namespace: str,
    run_operator: Any,
    wait_for: Any,
    trusted: PublicApisFake,
    status: int,
) -> None:
    """OpenRouter throttled or down: the last verdict and every status field stay, VerificationUnavailable
    says why (with the vendor's status), one Warning Event, retried with back-off, verified again once it
    answers (the same checks as the clouds' outages, tests/controllers/test_cloud_faults.py)."""
    secret(k8s, namespace, "openrouter-key", PLANTED_KEY)
    body = binding("openrouter", "openrouter", base_url(trusted.url, "openrouter"), [MODEL])
    body["spec"]["verifyEvery"] = "10m"
    with run_operator():
        create(custom, namespace, body)
        wait_for(cond_is(custom, namespace, "openrouter", "Ready", "True"), 60, "Ready")
    failed_before = len(trusted.requests("openrouter"))
    try:
        outage_and_recovery(
            k8s,
            custom,
            namespace,
            "openrouter",
            run_operator,
            wait_for,
            start=lambda: trusted.state.faults.__setitem__("openrouter", status),
            stop=lambda: trusted.state.faults.pop("openrouter", None),
            requests=lambda: len(trusted.requests("openrouter")) - failed_before,
            per_pass=1,
            verdict={"CredentialsVerified": "KeyAccepted", "PrivateConnectivityVerified": "PublicEndpoint"},
            expect=(f"GET {base_url(trusted.url, 'openrouter')}/key: {status} ", "overloaded"),
        )
    finally:
        trusted.state.faults.pop("openrouter", None)
    assert PLANTED_KEY not in dumps(get_pb(custom, namespace, "openrouter"))


def test_kubectl_explains_the_public_api_fields(sandbox: Any, crds: None, wait_for: Any) -> None:
    def explain(path: str) -> str | None:
        text = kubectl(sandbox, "explain", path, check=False)
        return " ".join(text.split()) or None  # empty until the API server publishes the CRD's OpenAPI

    text = wait_for(lambda: explain("providerbinding.spec.publicAPI"), 60, "kubectl explain")
    for field in ("vendor", "baseURL", "apiKeySecretRef", "models", "providerPreferences"):
        assert field in text, text
    assert "publicAPIMaxClassification" in text
    preferences = explain("providerbinding.spec.publicAPI.providerPreferences.dataCollection")
    assert preferences and "only providers that do not store prompts" in preferences, preferences
