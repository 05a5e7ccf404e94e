"""The real node: what it costs to start, to build its images, to run the operator from its chart, and what
the gateway adds to each request.

- ``sandbox up`` with the real node next to 2 kwok GPU nodes (every node Ready), and ``down``;
- ``make images`` cold (a fresh image cache that borrows only the node binaries and the Ollama binary, so
  nothing else is reused)
  and warm (nothing changed);
- the operator pod Ready after ``helm install charts/modelyard`` with the chart's defaults;
- the gateway's first answer after its RoutePolicy is created (the model server already Ready);
- the gateway's added latency: the same chat completion sent ``REQUESTS`` times straight to the model
  server's Service and through the gateway Service, one at a time; median and p99 of each and of the
  difference.

The model server and gateway are set up as the real-node tests set them up (tests/realnode/serving.py).
Prints numbers; asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from benchlib import ROOT, Figures, standalone, wait
from kubernetes import client, config

from modelyard_sandbox import Ports, Sandbox

SECTION = "Real node"
REQUESTS = 500
RELEASE = "modelyard"
OPERATOR_NAMESPACE = "modelyard-system"
MODEL, POLICY, ROUTE = "tiny", "edge", "chat"


def run(figures: Figures) -> None:
    _images(figures)
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp:
        sandbox = Sandbox(Path(tmp) / "sandbox", ports=Ports.free())
        started = time.perf_counter()
        try:
            sandbox.up(gpu_nodes=2, gpus_per_node=8, volumes=10, real_node=True)
            figures.add(SECTION, "sandbox up: 2 kwok GPU nodes + the real node Ready", _since(started), "s")
            api = config.new_client_from_config(config_file=str(sandbox.kubeconfig))
            _operator_pod(figures, sandbox)
            _gateway(figures, sandbox, api)
        finally:
            started = time.perf_counter()
            sandbox.down()
            figures.add(SECTION, "sandbox down (the machine as it was)", _since(started), "s")


def _images(figures: Figures) -> None:
    """Cold: every image built into an empty cache (the node binaries it needs are borrowed); warm: again."""
    build = [str(ROOT / "hack" / "images" / "build.sh")]
    cache = Path(os.environ.get("MODELYARD_CACHE", Path.home() / ".cache" / "modelyard"))
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-images-", dir=cache) as tmp:
        (Path(tmp) / "node-bin").symlink_to(cache / "node-bin")
        if (cache / "ollama").is_dir():  # the Ollama binary, a compiled input like the node's
            (Path(tmp) / "ollama").symlink_to(cache / "ollama")
        env = {**os.environ, "MODELYARD_CACHE": tmp}
        for label in ("cold", "warm (nothing changed)"):
            started = time.perf_counter()
            subprocess.run(build, env=env, check=True, capture_output=True)
            figures.add(SECTION, f"make images, {label}", _since(started), "s")
        # buildah's storage holds read-only layers and overlay work dirs: remove it as root would
        subprocess.run(["rm", "-rf", tmp], check=False)


def _operator_pod(figures: Figures, sandbox: Sandbox) -> None:
    env = {**os.environ, "KUBECONFIG": str(sandbox.kubeconfig)}
    started = time.perf_counter()
    subprocess.run(
        ["helm", "install", RELEASE, str(ROOT / "charts" / "modelyard"), "-n", OPERATOR_NAMESPACE,
         "--create-namespace", "--wait", "--timeout", "5m"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    figures.add(SECTION, "operator pod Ready after helm install", _since(started), "s")
    subprocess.run(["helm", "uninstall", RELEASE, "-n", OPERATOR_NAMESPACE, "--wait"], env=env, check=True,
                   capture_output=True)  # fmt: skip


def _gateway(figures: Figures, sandbox: Sandbox, api: client.ApiClient) -> None:
    sys.path.insert(0, str(ROOT))  # the set-up lives with the real-node tests
    from tests.realnode import serving  # noqa: PLC0415

    serving.install_crds(sandbox.kubeconfig)
    with (
        serving.fresh_namespace(api, "bench") as namespace,
        serving.real_gpu(api),
        serving.operator(sandbox.kubeconfig, namespace),
    ):
        server = serving.serve_on_real_node(api, namespace, MODEL)
        backends = [{"modelDeploymentRef": MODEL}]
        route = {"model": ROUTE, "dataClassification": "internal", "backends": backends}
        started = time.perf_counter()
        serving.create(api, namespace, serving.route_policy(POLICY, [route]))
        serving.ready_gateway_pod(api, namespace, POLICY)
        gateway = serving.gateway_url(api, namespace, POLICY)
        headers = {"Authorization": f"Bearer {serving.master_key(api, namespace, POLICY)}"}
        with httpx.Client(timeout=30) as http:
            wait(lambda: _answers(http, gateway, ROUTE, headers), 120, "the gateway's first answer")
            figures.add(SECTION, "gateway first answer after its RoutePolicy", _since(started), "s")
            service = client.CoreV1Api(api).read_namespaced_service(MODEL, namespace)
            direct = f"http://{service.spec.cluster_ip}:{service.spec.ports[0].port}/v1"
            direct_s = _latencies(http, direct, serving.SERVED, {})
            gateway_s = _latencies(http, gateway, ROUTE, headers)
        for label, samples in (("model server direct", direct_s), ("through the gateway", gateway_s)):
            figures.add(SECTION, f"chat completion, {label}, median", _ms(statistics.median(samples)), "ms")
            figures.add(SECTION, f"chat completion, {label}, p99", _ms(_p99(samples)), "ms")
        added = statistics.median(gateway_s) - statistics.median(direct_s)
        figures.add(SECTION, f"gateway's added latency, median ({REQUESTS} requests)", _ms(added), "ms")
        figures.add(SECTION, "gateway's added latency, p99", _ms(_p99(gateway_s) - _p99(direct_s)), "ms")
        figures.add(SECTION, "gateway pod RSS after the run", serving.container_rss_mib(
            serving.ready_gateway_pod(api, namespace, POLICY)), "MiB")  # fmt: skip
        figures.add(SECTION, "model server pod RSS after the run", serving.container_rss_mib(server), "MiB")


def _answers(http: httpx.Client, base: str, model: str, headers: dict[str, str]) -> bool:
    try:
        return _chat(http, base, model, headers).status_code == 200
    except httpx.HTTPError:
        return False


def _chat(http: httpx.Client, base: str, model: str, headers: dict[str, str]) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "how far is the gateway?"}]}
    return http.post(f"{base}/chat/completions", json=body, headers=headers)


def _latencies(http: httpx.Client, base: str, model: str, headers: dict[str, str]) -> list[float]:
    samples = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        _chat(http, base, model, headers).raise_for_status()
        samples.append(time.perf_counter() - started)
    return samples


def _p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def _ms(seconds: float) -> float:
    return seconds * 1000


def _since(started: float) -> float:
    return time.perf_counter() - started


if __name__ == "__main__":
    standalone(run)
