"""The compiled config running in the real LiteLLM proxy, in front of local OpenAI-compatible servers.

The config is exactly what the operator compiles; only the in-cluster Service names are mapped to the test
servers' loopback addresses, as cluster DNS would map them.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import yaml

from modelyard.api import ModelDeployment, RoutePolicy
from modelyard.api.policy import ClusterPolicy
from modelyard.render.litellm import compile_litellm_config
from modelyard.render.routing import resolve_routes
from tests.gateway.proxy import chat, litellm_proxy

NAMESPACE = "ml"
SLOW_S = 30


class Backend:
    """An OpenAI-compatible server that answers as ``name``, fails with 503, or hangs."""

    def __init__(self, name: str, behaviour: str = "ok") -> None:
        self.name, self.behaviour = name, behaviour
        self.requests = 0
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                backend.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if backend.behaviour == "503":
                    self._send(503, {"error": {"message": "overloaded", "type": "server_error"}})
                    return
                if backend.behaviour == "slow":
                    time.sleep(SLOW_S)
                self._send(200, completion(backend.name))

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
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

    def close(self) -> None:
        self.server.shutdown()


def completion(name: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{name}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": name,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": f"from {name}"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }


def model_deployment(name: str, classification: str = "restricted") -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "model": {"name": name, "source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
                "gpu": {"type": "nvidia-h100-80gb"},
                "dataClassification": classification,
            },
            "status": {
                "phase": "Ready",
                "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}],
            },
        }
    )


POLICY = RoutePolicy.model_validate(
    {
        "metadata": {"name": "gw", "namespace": NAMESPACE},
        "spec": {
            "routes": [
                {
                    "model": "split",
                    "strategy": "weighted",
                    "retries": 0,
                    "backends": [
                        {"modelDeploymentRef": "a", "weight": 80},
                        {"modelDeploymentRef": "b", "weight": 20},
                    ],
                },
                {
                    "model": "unavailable",
                    "retries": 0,
                    "backends": [{"modelDeploymentRef": "down"}, {"modelDeploymentRef": "spare"}],
                },
                {
                    "model": "hanging",
                    "retries": 0,
                    "timeoutSeconds": 2,
                    "backends": [{"modelDeploymentRef": "stuck"}, {"modelDeploymentRef": "spare"}],
                },
                {
                    "model": "secret",
                    "dataClassification": "restricted",
                    "backends": [{"modelDeploymentRef": "internal-only"}],
                },
            ]
        },
    }
)


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, Backend]]:
    servers = {n: Backend(n) for n in ("a", "b", "spare", "internal-only")}
    servers["down"] = Backend("down", "503")
    servers["stuck"] = Backend("stuck", "slow")
    yield servers
    for server in servers.values():
        server.close()


@pytest.fixture(scope="module")
def proxy(backends: dict[str, Backend], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The LiteLLM proxy from `make tools`, running the compiled config."""
    mds = {name: model_deployment(name) for name in backends}
    mds["internal-only"] = model_deployment("internal-only", classification="internal")
    routes, _ = resolve_routes(POLICY, ClusterPolicy(), mds, {}, namespace=NAMESPACE)
    config = compile_litellm_config(POLICY, routes)
    text = yaml.safe_dump(config)
    for name, server in backends.items():  # what cluster DNS does for the Services
        text = text.replace(f"http://{name}.{NAMESPACE}.svc:8000/v1", server.url)
    with litellm_proxy(text, tmp_path_factory.mktemp("litellm")) as url:
        yield url


def answered_by(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    content: str = response.json()["choices"][0]["message"]["content"]
    return content.removeprefix("from ")


def test_weighted_split_within_tolerance(proxy: str) -> None:
    counts = Counter(answered_by(chat(proxy, "split")) for _ in range(300))
    assert set(counts) == {"a", "b"}
    assert 0.72 <= counts["a"] / 300 <= 0.88, counts


def test_fallback_when_the_primary_answers_503(proxy: str, backends: dict[str, Backend]) -> None:
    before = backends["down"].requests
    assert answered_by(chat(proxy, "unavailable")) == "spare"
    assert backends["down"].requests > before  # the primary was tried first


def test_fallback_when_the_primary_times_out(proxy: str, backends: dict[str, Backend]) -> None:
    started = time.monotonic()
    assert answered_by(chat(proxy, "hanging")) == "spare"
    assert backends["stuck"].requests >= 1
    assert time.monotonic() - started < SLOW_S  # the route's 2 s timeout, not the backend's hang


def test_route_with_only_ineligible_backends_never_reaches_them(
    proxy: str, backends: dict[str, Backend]
) -> None:
    for name in ("secret", "openai/internal-only", "secret:ModelDeployment/internal-only"):
        response = chat(proxy, name)
        assert response.status_code >= 400, response.text
    assert backends["internal-only"].requests == 0


def test_requests_without_the_master_key_are_refused(proxy: str, backends: dict[str, Backend]) -> None:
    before = backends["a"].requests
    response = httpx.post(f"{proxy}/v1/chat/completions", json={"model": "split", "messages": []}, timeout=10)
    assert response.status_code >= 400
    assert backends["a"].requests == before
