"""engine: ollama on the real node: how long the tiny GGUF model takes from its ModelDeployment to its first
answer, and its generation speed straight from the Ollama Service and through the gateway.

- the ModelDeployment created (claim with the GGUF ready, RoutePolicy created with it) -> the Ollama pod Ready
  (server started, model created from the GGUF and loaded), -> the first answer from the pod's Service, -> the
  first answer through the gateway (whose config gains the backend once it is Ready, so its pod rolls);
- tokens per second: ``REQUESTS`` chat completions of ``MAX_TOKENS`` tokens each (greedy), one at a time,
  straight to the model's Service and through the gateway Service: completion tokens Ollama reports / wall
  time, and the median request time.

Set up as tests/realnode/test_ollama.py sets it up (tests/realnode/ollama.py). Prints numbers; asserts
nothing.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from benchlib import ROOT, Figures, standalone, wait
from kubernetes import client, config

from modelyard_sandbox import Ports, Sandbox

SECTION = "Ollama (engine: ollama, tiny GGUF, CPU)"
MODEL, POLICY, ROUTE = "tiny-ollama", "prototype", "chat"
REQUESTS = 20
MAX_TOKENS = 64


def run(figures: Figures) -> None:
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-ollama-") as tmp:
        sandbox = Sandbox(Path(tmp) / "sandbox", ports=Ports.free())
        try:
            sandbox.up(gpu_nodes=1, gpus_per_node=8, volumes=4, real_node=True)
            api = config.new_client_from_config(config_file=str(sandbox.kubeconfig))
            _measure(figures, sandbox, api)
        finally:
            sandbox.down()


def _measure(figures: Figures, sandbox: Sandbox, api: client.ApiClient) -> None:
    sys.path.insert(0, str(ROOT))  # the set-up lives with the real-node tests
    from tests.realnode import ollama, serving  # noqa: PLC0415

    serving.install_crds(sandbox.kubeconfig)
    with (
        serving.fresh_namespace(api, "bench-ollama") as namespace,
        serving.operator(sandbox.kubeconfig, namespace),
        httpx.Client(timeout=120) as http,
    ):
        source = ollama.gguf_claim(api, namespace)
        route = {"model": ROUTE, "dataClassification": "public", "backends": [{"modelDeploymentRef": MODEL}]}
        started = time.perf_counter()
        serving.create(api, namespace, ollama.tiny_ollama_model(MODEL, source))
        serving.create(api, namespace, serving.route_policy(POLICY, [route]))
        ollama.ready_ollama_pod(api, namespace, MODEL)
        figures.add(
            SECTION, "ModelDeployment -> Ollama pod Ready (model created and loaded)", _since(started), "s"
        )
        service = client.CoreV1Api(api).read_namespaced_service(MODEL, namespace)
        direct = f"http://{service.spec.cluster_ip}:{service.spec.ports[0].port}/v1"
        wait(lambda: _answers(http, direct, ollama.SERVED, {}), 120, "Ollama's first answer")
        figures.add(SECTION, "ModelDeployment -> first answer from the pod's Service", _since(started), "s")
        gateway = serving.gateway_url(api, namespace, POLICY)
        headers = {"Authorization": f"Bearer {serving.master_key(api, namespace, POLICY)}"}
        wait(lambda: _answers(http, gateway, ROUTE, headers), 300, "the gateway's first answer", interval_s=1)
        figures.add(SECTION, "ModelDeployment -> first answer through the gateway", _since(started), "s")
        for label, base, model, auth in (
            ("straight to Ollama", direct, ollama.SERVED, {}),
            ("through the gateway", gateway, ROUTE, headers),
        ):
            tokens, seconds = 0, []
            for _ in range(REQUESTS):
                begun = time.perf_counter()
                answer = _chat(http, base, model, auth)
                answer.raise_for_status()
                seconds.append(time.perf_counter() - begun)
                tokens += answer.json()["usage"]["completion_tokens"]
            figures.add(
                SECTION,
                f"tokens/s {label} ({REQUESTS} x {MAX_TOKENS} tokens)",
                tokens / sum(seconds),
                "tok/s",
            )
            figures.add(SECTION, f"request {label}, median", statistics.median(seconds) * 1000, "ms")


def _chat(http: httpx.Client, base: str, model: str, headers: dict[str, str]) -> httpx.Response:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "count the nodes of the cluster"}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
    }
    return http.post(f"{base}/chat/completions", json=body, headers=headers)


def _answers(http: httpx.Client, base: str, model: str, headers: dict[str, str]) -> bool:
    try:
        return _chat(http, base, model, headers).status_code == 200
    except httpx.HTTPError:
        return False


def _since(started: float) -> float:
    return time.perf_counter() - started


if __name__ == "__main__":
    standalone(run)
