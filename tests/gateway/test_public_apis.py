"""Public model APIs through the real LiteLLM proxy: the config the operator compiles for a ProviderBinding
of every vendor, run with the key env vars the rendered Deployment fills from Secrets, in front of the HTTPS
fake of the vendors (tests/fakes/public_apis.py), which checks each vendor's path and auth header.

The vendors' real host names (openrouter.ai, api.groq.com, ...) resolve to the fake through tests/gateway/dns,
whose certificate holds them; nothing else resolves, so no request leaves the machine. One proxy serves every
test: each vendor's route, OpenRouter's provider preferences in the body, Groq's refused parameters dropped, a
confidential route that fails closed, and fallback from a failing self-hosted model to OpenRouter.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modelyard.api import ModelDeployment, ProviderBinding, RoutePolicy
from modelyard.api.policy import ClusterPolicy
from modelyard.render.gateway import render_gateway
from modelyard.render.identity import identity_wiring, merge_wiring
from modelyard.render.routing import resolve_routes
from tests.fakes.public_apis import CLOUDFLARE_ACCOUNT, HOSTS, VENDORS, PublicApisFake
from tests.gateway.proxy import MASTER_KEY, litellm_proxy

NAMESPACE = "ml"
DNS_SHIM = Path(__file__).resolve().parent / "dns"
#: a model id per vendor, as each names its models
MODELS = {
    "openrouter": "meta-llama/llama-3.1-8b-instruct",
    "together": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
    "groq": "llama-3.1-8b-instant",
    "perplexity": "sonar",
    "cloudflare": "@cf/meta/llama-3.1-8b-instruct",
    "fireworks": "accounts/fireworks/models/llama-v3p1-8b-instruct",
    "deepseek": "deepseek-chat",
    "mistral": "mistral-small-latest",
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-5",
    "gemini": "gemini-2.0-flash",
    "custom": "my-model",
}
BASE_URLS = {
    "cloudflare": f"https://api.cloudflare.com/client/v4/accounts/{CLOUDFLARE_ACCOUNT}/ai/v1",
    "custom": "https://llm.example.com/v1",
}
#: the path and the header (name, how the key is written) each vendor documents for chat
CHAT = {
    **{v: (f"{VENDORS[v].base}/chat/completions", "authorization", "Bearer {key}") for v in VENDORS},
    "anthropic": ("/v1/messages", "x-api-key", "{key}"),
    "gemini": (f"/v1beta/models/{MODELS['gemini']}:generateContent", "x-goog-api-key", "{key}"),
}
PREFERENCES = {
    "dataCollection": "deny",
    "zeroDataRetention": True,
    "order": ["deepinfra", "together"],
    "only": ["deepinfra", "together", "fireworks"],
    "ignore": ["azure"],
    "allowFallbacks": False,
}
READY = {"conditions": [{"type": "Ready", "status": "True", "reason": "Verified"}]}


def key(vendor: str) -> str:
    return f"planted-{vendor}-key-3c9e51"


def binding(vendor: str) -> ProviderBinding:
    public: dict[str, Any] = {
        "vendor": vendor,
        "apiKeySecretRef": {"name": f"{vendor}-key", "key": "apiKey"},
        "models": [MODELS[vendor]],
    }
    if vendor in BASE_URLS:
        public["baseURL"] = BASE_URLS[vendor]
    if vendor == "openrouter":
        public["providerPreferences"] = PREFERENCES
    return ProviderBinding.model_validate(
        {
            "metadata": {"name": vendor, "namespace": NAMESPACE},
            "spec": {"provider": "publicAPI", "publicAPI": public, "dataClassification": "public"},
            "status": READY,
        }
    )


SELF_HOSTED = ModelDeployment.model_validate(
    {
        "metadata": {"name": "local", "namespace": NAMESPACE},
        "spec": {
            "model": {"name": "local", "source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
            "gpu": {"type": "nvidia-h100-80gb"},
            "dataClassification": "restricted",
        },
        "status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}]},
    }
)
POLICY = RoutePolicy.model_validate(
    {
        "metadata": {"name": "gw", "namespace": NAMESPACE},
        "spec": {
            "routes": [
                *(
                    {
                        "model": f"via-{vendor}",
                        "dataClassification": "public",
                        "retries": 0,
                        "backends": [{"providerBindingRef": vendor, "model": MODELS[vendor]}],
                    }
                    for vendor in VENDORS
                ),
                {
                    "model": "secret",
                    "dataClassification": "confidential",
                    "retries": 0,
                    "backends": [{"providerBindingRef": "openrouter", "model": MODELS["openrouter"]}],
                },
                {
                    "model": "prototype",
                    "dataClassification": "public",
                    "retries": 0,
                    "backends": [
                        {"modelDeploymentRef": "local"},
                        {"providerBindingRef": "openrouter", "model": MODELS["openrouter"]},
                    ],
                },
            ]
        },
    }
)


class Failing:
    """A self-hosted model server (OpenAI-compatible) that answers every request with 500."""

    def __init__(self) -> None:
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                data = json.dumps({"error": {"message": "CUDA error", "type": "server_error"}}).encode()
                self.send_response(500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@dataclass
class Gateway:
    url: str
    config: dict[str, Any]
    fake: PublicApisFake
    failing: Failing


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    directory = tmp_path_factory.mktemp("public-apis")
    fake = PublicApisFake(directory)
    for vendor in VENDORS:
        fake.state.keys[vendor] = key(vendor)
    failing = Failing()
    bindings = {vendor: binding(vendor) for vendor in VENDORS}
    routes, _ = resolve_routes(POLICY, ClusterPolicy(), {"local": SELF_HOSTED}, bindings, namespace=NAMESPACE)
    wiring = merge_wiring(identity_wiring(b) for b in bindings.values())
    manifests = {m["kind"]: m for m in render_gateway(POLICY, routes, wiring, namespace=NAMESPACE)}
    config_text = manifests["ConfigMap"]["data"]["config.yaml"]
    config_text = config_text.replace(f"http://local.{NAMESPACE}.svc:8000/v1", failing.url)  # cluster DNS
    env = manifests["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    secrets = {f"{vendor}-key": {"apiKey": key(vendor)} for vendor in VENDORS}
    from_secrets = {  # what the kubelet fills in from the Secrets the env references
        e["name"]: secrets[e["valueFrom"]["secretKeyRef"]["name"]][e["valueFrom"]["secretKeyRef"]["key"]]
        for e in env
        if "secretKeyRef" in e.get("valueFrom", {}) and e["valueFrom"]["secretKeyRef"]["name"] in secrets
    }
    assert len(from_secrets) == len(VENDORS)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "MODELYARD_"))}
    full = {
        **inherited,
        **from_secrets,
        "PYTHONPATH": str(DNS_SHIM),
        "MODELYARD_TEST_HOSTS": ",".join(f"{host}=127.0.0.1:{fake.port}" for host in HOSTS),
        "SSL_CERT_FILE": str(fake.ca_file),  # the fake's certificate takes the place of the public CAs
        "REQUESTS_CA_BUNDLE": str(fake.ca_file),
    }
    with litellm_proxy(config_text, directory, full, inherit=False) as url:
        yield Gateway(url, yaml.safe_load(config_text), fake, failing)
    fake.stop()
    failing.server.shutdown()


def post(gateway: Gateway, model: str, **extra: Any) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], **extra},
        timeout=60,
    )


def answer(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    content: str = response.json()["choices"][0]["message"]["content"]
    return content


@pytest.mark.parametrize("vendor", list(VENDORS))
def test_each_vendor_is_called_at_its_path_with_its_auth_header(gateway: Gateway, vendor: str) -> None:
    before = len(gateway.fake.requests(vendor))
    assert answer(post(gateway, f"via-{vendor}")) == f"from {vendor} {MODELS[vendor]}"
    calls = gateway.fake.requests(vendor)[before:]
    assert len(calls) == 1, calls
    call = calls[0]
    path, header, value = CHAT[vendor]
    assert call.method == "POST" and call.path == path
    assert call.headers.get(header) == value.format(key=key(vendor))
    if vendor == "anthropic":
        assert call.headers.get("anthropic-version")
    others = [k for v, k in ((v, key(v)) for v in VENDORS) if v != vendor]
    assert not any(k in json.dumps(call.headers) for k in others)  # each vendor gets its own key only


def test_openrouter_gets_the_provider_preferences_in_the_body(gateway: Gateway) -> None:
    before = len(gateway.fake.requests("openrouter"))
    answer(post(gateway, "via-openrouter"))
    body = gateway.fake.requests("openrouter")[before:][0].body
    assert body["provider"] == {
        "data_collection": "deny",
        "zdr": True,
        "order": ["deepinfra", "together"],
        "only": ["deepinfra", "together", "fireworks"],
        "ignore": ["azure"],
        "allow_fallbacks": False,
    }


def test_groq_gets_no_parameter_it_refuses(gateway: Gateway) -> None:
    """Groq answers logprobs, top_logprobs, logit_bias and n > 1 with 400 (the fake as Groq documents it): the
    gateway drops them and the request succeeds."""
    before = len(gateway.fake.requests("groq"))
    response = post(gateway, "via-groq", logprobs=True, top_logprobs=2, n=2, logit_bias={"50256": -100})
    assert answer(response) == f"from groq {MODELS['groq']}"
    body = gateway.fake.requests("groq")[before:][0].body
    assert not {"logprobs", "top_logprobs", "n", "logit_bias"} & set(body), body


def test_a_confidential_route_never_reaches_a_public_api(gateway: Gateway) -> None:
    assert "secret" not in {entry["model_name"] for entry in gateway.config["model_list"]}
    before = len(gateway.fake.requests())
    response = post(gateway, "secret")
    assert 400 <= response.status_code < 500, response.text
    assert "secret" in response.text  # the proxy names the model it does not serve
    assert len(gateway.fake.requests()) == before


def test_a_failing_self_hosted_model_falls_back_to_openrouter(gateway: Gateway) -> None:
    before_local, before = gateway.failing.requests, len(gateway.fake.requests("openrouter"))
    started = time.monotonic()
    assert answer(post(gateway, "prototype")) == f"from openrouter {MODELS['openrouter']}"
    assert gateway.failing.requests > before_local  # tried first
    assert len(gateway.fake.requests("openrouter")) == before + 1
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("vendor", ["anthropic", "perplexity", "mistral"])
def test_a_parameter_litellm_knows_the_vendor_lacks_is_dropped(gateway: Gateway, vendor: str) -> None:
    """drop_params: LiteLLM refuses logprobs for these (UnsupportedParamsError) unless told to drop it."""
    before = len(gateway.fake.requests(vendor))
    assert answer(post(gateway, f"via-{vendor}", logprobs=True)) == f"from {vendor} {MODELS[vendor]}"
    assert "logprobs" not in gateway.fake.requests(vendor)[before:][0].body
