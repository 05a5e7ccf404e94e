"""Pods really run on the sandbox's real node: exit codes and logs come from processes the kubelet started
from locally imported images; cluster DNS, Service IPs and the ``kubernetes`` Service work from inside pods;
GPU pods still go to the kwok GPU nodes."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from modelyard_sandbox.nodeconfig import CLUSTER_DNS_IP, NODE_NAME

from .podlib import (
    fetch_script,
    http_server,
    on_real_node,
    run_python,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.realnode]

GPU = "nvidia.com/gpu"


def test_pod_runs_on_the_real_node_and_its_exit_code_and_log_are_real(
    real_k8s: client.ApiClient, real_namespace: str
) -> None:
    computed = run_python(real_k8s, real_namespace, "sum", "print(sum(i * i for i in range(1000)))")
    failing = run_python(real_k8s, real_namespace, "fails", "import sys; print('bye'); sys.exit(7)")

    on_real_node(computed)
    assert computed.exit_code == 0
    assert computed.log.strip() == str(sum(i * i for i in range(1000)))  # 332833500: computed in the pod
    assert failing.exit_code == 7
    assert failing.log.strip() == "bye"


def test_cluster_dns_resolves_a_service_name_through_coredns(
    real_k8s: client.ApiClient, real_namespace: str
) -> None:
    cluster_ip = http_server(real_k8s, real_namespace, "named")
    script = (
        "import socket\n"
        f"print(socket.gethostbyname('named.{real_namespace}.svc.cluster.local'))\n"
        "print(socket.gethostbyname('named'))\n"  # the search path the kubelet writes
        "print(open('/etc/resolv.conf').read())\n"
    )
    finished = run_python(real_k8s, real_namespace, "resolve", script)

    assert finished.exit_code == 0, finished.log
    lines = finished.log.splitlines()
    assert lines[0] == cluster_ip
    assert lines[1] == cluster_ip
    assert f"nameserver {CLUSTER_DNS_IP}" in finished.log
    endpoints = client.CoreV1Api(real_k8s).read_namespaced_endpoints("kube-dns", "kube-system")
    assert endpoints.subsets, "the kube-dns Service has no ready CoreDNS pod"


def test_a_service_ip_reaches_its_pod_from_another_pod(
    real_k8s: client.ApiClient, real_namespace: str
) -> None:
    cluster_ip = http_server(real_k8s, real_namespace, "backend")

    finished = run_python(real_k8s, real_namespace, "client", fetch_script(f"http://{cluster_ip}:8080/"))

    on_real_node(finished)
    assert finished.log.strip() == "ok backend"


def test_the_host_reaches_a_service_ip(
    real_k8s: client.ApiClient, real_namespace: str, wait_for: Callable[..., Any]
) -> None:
    """Tests and tools on this machine dial ClusterIPs directly (the route over the node's bridge, then
    kube-proxy's rules, which follow the pod's readiness within moments)."""
    cluster_ip = http_server(real_k8s, real_namespace, "from-host")

    def get() -> str:
        # a connection opened before kube-proxy programmed the Service keeps its un-rewritten conntrack
        # entry and hangs (as on any node): give up on it quickly and open a new one
        try:
            with urllib.request.urlopen(f"http://{cluster_ip}:8080/", timeout=2) as response:
                return str(response.read().decode())
        except (urllib.error.URLError, OSError):
            return ""

    body = wait_for(get, 60, f"http://{cluster_ip}:8080/ to answer")  # kube-proxy is slow on a busy node

    assert body == "from-host"


def test_a_pod_reaches_the_api_server_through_the_kubernetes_service(
    real_k8s: client.ApiClient, real_namespace: str
) -> None:
    script = (
        "import json, ssl, urllib.request\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "token = open(sa + '/token').read()\n"
        "context = ssl.create_default_context(cafile=sa + '/ca.crt')\n"
        "request = urllib.request.Request('https://kubernetes.default.svc/version',\n"
        "                                 headers={'Authorization': 'Bearer ' + token})\n"
        "print(json.load(urllib.request.urlopen(request, context=context, timeout=5))['gitVersion'])\n"
    )
    finished = run_python(real_k8s, real_namespace, "api", script)

    assert finished.exit_code == 0, finished.log
    version = client.VersionApi(real_k8s).get_code().git_version
    assert finished.log.strip() == version


def _gpu_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {"name": "server", "image": "registry.k8s.io/pause:3.10", "resources": {"limits": {GPU: "1"}}}
            ],
            "nodeSelector": {"nvidia.com/gpu.present": "true"},
            "tolerations": [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}],
        },
    }


def test_gpu_pods_land_on_kwok_gpu_nodes_and_other_pods_on_the_real_node(
    real_k8s: client.ApiClient, real_namespace: str, wait_for: Callable[..., Any]
) -> None:
    core = client.CoreV1Api(real_k8s)
    core.create_namespaced_pod(real_namespace, _gpu_pod("gpu"))
    plain = run_python(real_k8s, real_namespace, "plain", "print('cpu')")

    ready = wait_for(
        lambda: (p := core.read_namespaced_pod("gpu", real_namespace)).status.phase == "Running" and p,
        45,
        "the GPU pod to run on a kwok node",
    )
    node = core.read_node(ready.spec.node_name)
    assert node.metadata.annotations.get("kwok.x-k8s.io/node") == "fake"
    assert node.metadata.labels["nvidia.com/gpu.present"] == "true"
    on_real_node(plain)
    real = core.read_node(NODE_NAME)
    assert real.status.node_info.container_runtime_version.startswith("containerd://2.")
    assert "kwok.x-k8s.io/node" not in (real.metadata.annotations or {})
