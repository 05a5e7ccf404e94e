"""Routes to LoRA adapters in the real LiteLLM proxy: the compiled config, in front of one local
OpenAI-compatible server standing in for the vLLM Service that serves the base model and its adapters. vLLM
picks the adapter by the request's ``model``; the server records it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml

from modelyard.api import ModelDeployment, RoutePolicy
from modelyard.api.policy import ClusterPolicy
from modelyard.render.litellm import compile_litellm_config
from modelyard.render.model_deployment import endpoint
from modelyard.render.routing import resolve_routes
from tests.gateway.proxy import chat, litellm_proxy

NAMESPACE = "ml"
MD = ModelDeployment.model_validate(
    {
        "metadata": {"name": "llama-8b-lora", "namespace": NAMESPACE},
        "spec": {
            "model": {"name": "llama-3.1-8b-instruct", "source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
            "gpu": {"type": "nvidia-h100-80gb"},
            "dataClassification": "confidential",
            "adapters": [
                {"name": "legal-summarizer", "source": "hf://acme-ai/legal-lora", "revision": "4f1c2b9"},
                {
                    "name": "support-bot",
                    "source": "hf://acme-ai/support-lora",
                    "dataClassification": "internal",
                },
            ],
        },
        "status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}]},
    }
)
POLICY = RoutePolicy.model_validate(
    {
        "metadata": {"name": "gw", "namespace": NAMESPACE},
        "spec": {
            "routes": [
                {
                    "model": "contracts",
                    "dataClassification": "confidential",
                    "retries": 0,
                    "backends": [{"modelDeploymentRef": "llama-8b-lora", "adapter": "legal-summarizer"}],
                },
                {
                    "model": "support",
                    "retries": 0,
                    "backends": [{"modelDeploymentRef": "llama-8b-lora", "adapter": "support-bot"}],
                },
                {"model": "base", "retries": 0, "backends": [{"modelDeploymentRef": "llama-8b-lora"}]},
                {
                    "model": "support-confidential",
                    "dataClassification": "confidential",
                    "backends": [{"modelDeploymentRef": "llama-8b-lora", "adapter": "support-bot"}],
                },
            ]
        },
    }
)


class ModelServer:
    """Answers every chat completion as the model it was asked for, and records that name."""

    def __init__(self) -> None:
        self.models: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                server.models.append(body["model"])
                data = json.dumps(
                    {
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": f"from {body['model']}"},
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/v1"


@pytest.fixture(scope="module")
def server() -> Iterator[ModelServer]:
    running = ModelServer()
    yield running
    running.http.shutdown()


@pytest.fixture(scope="module")
def proxy(server: ModelServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    routes, _ = resolve_routes(POLICY, ClusterPolicy(), {"llama-8b-lora": MD}, {}, namespace=NAMESPACE)
    text = yaml.safe_dump(compile_litellm_config(POLICY, routes))
    service = endpoint("llama-8b-lora", NAMESPACE)
    assert text.count(service) == 3  # one Service behind every entry
    with litellm_proxy(text.replace(service, server.url), tmp_path_factory.mktemp("litellm-lora")) as url:
        yield url


@pytest.mark.parametrize(
    ("route", "served"),
    [("contracts", "legal-summarizer"), ("support", "support-bot"), ("base", "llama-3.1-8b-instruct")],
)
def test_each_route_reaches_the_server_with_its_adapters_name(
    proxy: str, server: ModelServer, route: str, served: str
) -> None:
    before = len(server.models)
    response = chat(proxy, route)
    assert response.status_code == 200, response.text
    assert server.models[before:] == [served]


def test_a_route_whose_adapter_is_not_cleared_never_reaches_the_server(
    proxy: str, server: ModelServer
) -> None:
    before = len(server.models)
    for name in ("support-confidential", "support-confidential:ModelDeployment/llama-8b-lora/support-bot"):
        assert chat(proxy, name).status_code >= 400
    assert server.models[before:] == []
