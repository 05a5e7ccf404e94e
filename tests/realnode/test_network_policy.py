"""The NetworkPolicies modelyard writes are enforced on the sandbox's real node (kube-router), both ways:
every blocked connection is shown to pass once the policy is removed (with the operator stopped, so nothing
puts it back), so a test proves the policy's doing, not a closed port.

One stack for the module, in namespace ``ns``: the test model server ``tiny`` on the real node; ``spare``, a
ModelDeployment on a kwok GPU node downloading from the hub (so it has a download Job and its NetworkPolicy);
a RoutePolicy ``edge`` whose gateway runs on the real node with routes ``chat`` -> tiny and ``backup`` ->
spare; ``bystander``, a plain HTTP Service that is no backend; and another namespace ``other``. Connections
are made by real processes: probe pods on the real node, and the gateway's own Python (``kubectl exec``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from modelyard.render.common import selector_labels
from modelyard.render.gateway import PORT as GATEWAY_PORT
from modelyard.render.gateway import gateway_name
from modelyard.render.model_deployment import DOWNLOADER, PORT
from modelyard_sandbox.nodeconfig import NODE_NAME
from tests.conftest import RealSandbox

from .podlib import delete_quietly, fetch_script, http_server, python_pod, wait_finished, wait_ready
from .serving import (
    GATEWAY_READY_TIMEOUT_S,
    GROUP,
    VERSION,
    _wait,
    create,
    fresh_namespace,
    install_crds,
    kubectl,
    operator,
    ready_gateway_pod,
    real_gpu,
    route_policy,
    serve_on_real_node,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.realnode]

MODEL, SPARE, POLICY = "tiny", "spare", "edge"
SOURCE_PORT = 443  #: the port the download NetworkPolicy opens: the model source's HTTPS
POLICY_TIMEOUT_S = 60.0
#: kube-router programs a new pod's rules on the pod's events, a moment after it starts: a probe whose own
#: egress is under test waits this long first, so it measures the policy rather than that moment (a run
#: without the wait saw a new download pod reach the bystander once)
SETTLE_S = 5.0
_names = itertools.count()


@dataclass(frozen=True)
class Stack:
    kubeconfig: Any
    namespace: str
    other: str
    server_url: str  #: the model server Service
    gateway_url: str  #: the gateway Service (its health endpoint)
    bystander_url: str  #: a Service that is no backend
    source_url: str  #: an HTTPS-port server in the other namespace, standing in for the model source


def _spare() -> dict[str, Any]:
    """A ModelDeployment on the kwok GPU nodes (H100), weights from the hub: a download Job, simulated."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": SPARE},
        "spec": {
            "model": {
                "name": "spare-chat",
                "source": "hf://Qwen/Qwen2.5-7B-Instruct",
                "revision": "a09a35458c702b33eeacc393d103063234e8bc28",
            },
            "gpu": {"type": "nvidia-h100-80gb", "count": 1},
            "serving": {"maxModelLen": 4096},
            "dataClassification": "confidential",
        },
    }


def _routes(chat_classification: str) -> list[dict[str, Any]]:
    return [
        {
            "model": "chat",
            "dataClassification": chat_classification,
            "backends": [{"modelDeploymentRef": MODEL}],
        },
        {"model": "backup", "dataClassification": "internal", "backends": [{"modelDeploymentRef": SPARE}]},
    ]


def _source_server(k8s: client.ApiClient, namespace: str) -> str:
    """A pod listening on port 443 (plain HTTP: a NetworkPolicy sees ports, not TLS) behind no policy."""
    script = (
        "import http.server\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.send_header('Content-Length', '6'); self.end_headers()\n"
        "        self.wfile.write(b'source')\n"
        "    def log_message(self, *args): pass\n"
        f"http.server.ThreadingHTTPServer(('', {SOURCE_PORT}), H).serve_forever()\n"
    )
    pod = python_pod("source", script, labels={"app": "source"})
    pod["spec"]["restartPolicy"] = "Always"
    # a safe sysctl: lets the non-root server bind 443 in its own network namespace
    pod["spec"]["securityContext"] = {
        "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]
    }
    pod["spec"]["containers"][0]["readinessProbe"] = {"tcpSocket": {"port": SOURCE_PORT}, "periodSeconds": 1}
    core = client.CoreV1Api(k8s)
    core.create_namespaced_pod(namespace, pod)
    wait_ready(k8s, namespace, "source")
    ip = core.read_namespaced_pod("source", namespace).status.pod_ip
    return f"http://{ip}:{SOURCE_PORT}/"


@pytest.fixture(scope="module")
def stack(real_sandbox: RealSandbox, real_k8s: client.ApiClient, wait_for: Any) -> Iterator[Stack]:
    kubeconfig = real_sandbox.kubeconfig
    install_crds(kubeconfig)
    core = client.CoreV1Api(real_k8s)
    with (
        fresh_namespace(real_k8s, "netpol") as namespace,
        fresh_namespace(real_k8s, "other") as other,
        real_gpu(real_k8s),
    ):
        with operator(kubeconfig, namespace):
            serve_on_real_node(real_k8s, namespace, MODEL)
            create(real_k8s, namespace, _spare())
            create(real_k8s, namespace, route_policy(POLICY, _routes("internal")))
            _wait(
                lambda: _served(real_k8s, namespace) == "chat,backup",
                180,
                "both routes to be served",
                diagnose=lambda: _statuses(real_k8s, namespace),
            )
            ready_gateway_pod(real_k8s, namespace, POLICY)
        bystander = http_server(real_k8s, namespace, "bystander")
        server_ip = core.read_namespaced_service(MODEL, namespace).spec.cluster_ip
        gateway_ip = core.read_namespaced_service(gateway_name(POLICY), namespace).spec.cluster_ip
        yield Stack(
            kubeconfig,
            namespace,
            other,
            server_url=f"http://{server_ip}:{PORT}/health",
            gateway_url=f"http://{gateway_ip}:{GATEWAY_PORT}/health/liveliness",
            bystander_url=f"http://{bystander}:8080/",
            source_url=_source_server(real_k8s, other),
        )


def _statuses(k8s: client.ApiClient, namespace: str) -> str:
    custom = client.CustomObjectsApi(k8s)
    found = []
    for plural in ("modeldeployments", "routepolicies"):
        for obj in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]:
            status = obj.get("status") or {}
            conditions = [
                f"{c['type']}={c['status']}({c['reason']}: {c['message']})"
                for c in status.get("conditions", [])
            ]
            found.append(
                f"{obj['kind']} {obj['metadata']['name']}: {conditions} routes={status.get('routes')}"
            )
    pods = client.CoreV1Api(k8s).list_namespaced_pod(namespace).items
    found += [f"pod {p.metadata.name} {p.status.phase} on {p.spec.node_name}" for p in pods]
    return " | ".join(found)


def _served(k8s: client.ApiClient, namespace: str) -> str:
    policy = client.CustomObjectsApi(k8s).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "routepolicies", POLICY
    )
    return str((policy.get("status") or {}).get("served", ""))


# --- connecting ------------------------------------------------------------------------------------------
def _from_pod(
    k8s: client.ApiClient,
    namespace: str,
    url: str,
    labels: dict[str, str] | None = None,
    settle_s: float = 0.0,
) -> str:
    """``ok <body>`` or ``failed <error>`` from a fresh probe pod with ``labels`` in ``namespace``, which
    waits ``settle_s`` before it connects."""
    name = f"probe-{next(_names)}"
    script = f"import time; time.sleep({settle_s})\n" + fetch_script(url, timeout_s=2.0)
    client.CoreV1Api(k8s).create_namespaced_pod(
        namespace, python_pod(name, script, labels=labels or {"app": "probe"})
    )
    finished = wait_finished(k8s, namespace, name, 60)
    assert finished.node == NODE_NAME
    return finished.log.strip()


def _from_gateway(stack: Stack, k8s: client.ApiClient, url: str) -> str:
    """``ok <body>`` or ``failed <error>`` from the gateway pod's own Python (``kubectl exec``)."""
    pod = ready_gateway_pod(k8s, stack.namespace, POLICY)
    return kubectl(
        stack.kubeconfig,
        "exec",
        "-n",
        stack.namespace,
        pod.metadata.name,
        "--",
        "python",
        "-c",
        fetch_script(url, timeout_s=2.0),
        check=False,
    ).strip()


def _blocked(log: str) -> bool:
    return log.startswith("failed") and ("timed out" in log or "Timeout" in log or "refused" in log.lower())


def _rolled_out(k8s: client.ApiClient, namespace: str) -> bool:
    """The gateway Deployment runs its current template only, one pod, Ready."""
    deployment = client.AppsV1Api(k8s).read_namespaced_deployment(gateway_name(POLICY), namespace)
    status = deployment.status
    return bool(
        status.observed_generation == deployment.metadata.generation
        and status.replicas == status.updated_replicas == status.ready_replicas == 1
    )


def _delete_policy(k8s: client.ApiClient, namespace: str, name: str) -> None:
    delete_quietly(client.NetworkingV1Api(k8s).delete_namespaced_network_policy, name, namespace)


# --- the tests -------------------------------------------------------------------------------------------
def test_only_the_gateway_reaches_the_model_server(
    stack: Stack, real_k8s: client.ApiClient, wait_for: Any
) -> None:
    from_other = _from_pod(real_k8s, stack.other, stack.server_url)
    from_neighbour = _from_pod(real_k8s, stack.namespace, stack.server_url)
    from_gateway = _from_gateway(stack, real_k8s, stack.server_url)
    # counter-check: the model server's policy removed (the operator is not running), the same pod gets in
    _delete_policy(real_k8s, stack.namespace, MODEL)
    opened = wait_for(
        lambda: (log := _from_pod(real_k8s, stack.other, stack.server_url)).startswith("ok") and log,
        POLICY_TIMEOUT_S,
        "the model server to be reachable without its policy",
    )

    assert _blocked(from_other), from_other
    assert _blocked(from_neighbour), from_neighbour
    assert from_gateway == "ok", from_gateway  # /health answers 200 with an empty body
    assert opened == "ok"


def test_the_gateway_reaches_only_its_eligible_backends(
    stack: Stack, real_sandbox: RealSandbox, real_k8s: client.ApiClient, wait_for: Any
) -> None:
    custom = client.CustomObjectsApi(real_k8s)
    networking = client.NetworkingV1Api(real_k8s)

    def egress_names() -> str:
        policy = networking.read_namespaced_network_policy(gateway_name(POLICY), stack.namespace)
        return str(policy.spec.to_dict()["egress"])

    with operator(real_sandbox.kubeconfig, stack.namespace):  # also puts back what an earlier test removed
        wait_for(lambda: f"'modelyard.dev/modeldeployment': '{MODEL}'" in egress_names(), 60, "tiny egress")
        eligible = _from_gateway(stack, real_k8s, stack.server_url)
        bystander = _from_gateway(stack, real_k8s, stack.bystander_url)
        # "chat" now carries restricted data; tiny is cleared for confidential only: the next compile drops it
        patch = {"spec": {"routes": _routes("restricted")}}
        custom.patch_namespaced_custom_object(GROUP, VERSION, stack.namespace, "routepolicies", POLICY, patch)
        wait_for(lambda: _served(real_k8s, stack.namespace) == "backup", 60, "chat to be left out")
        wait_for(lambda: f"'{MODEL}'" not in egress_names(), 60, "the gateway policy to drop tiny")
        # the new config rolls the gateway: probe from the pod that runs it, and only that one
        wait_for(
            lambda: _rolled_out(real_k8s, stack.namespace), GATEWAY_READY_TIMEOUT_S, "the gateway rollout"
        )
        ineligible = wait_for(
            lambda: _blocked(log := _from_gateway(stack, real_k8s, stack.server_url)) and log,
            POLICY_TIMEOUT_S,
            "tiny to become unreachable from the gateway",
        )
    # counter-check: the gateway's policy removed, both answer the same gateway pod
    _delete_policy(real_k8s, stack.namespace, gateway_name(POLICY))
    opened_server = wait_for(
        lambda: (log := _from_gateway(stack, real_k8s, stack.server_url)) == "ok" and log,
        POLICY_TIMEOUT_S,
        "tiny to be reachable from the gateway without its policy",
    )
    opened_bystander = wait_for(
        lambda: (log := _from_gateway(stack, real_k8s, stack.bystander_url)).startswith("ok") and log,
        POLICY_TIMEOUT_S,
        "the bystander to be reachable from the gateway without its policy",
    )

    assert eligible == "ok", eligible
    assert _blocked(bystander), bystander
    assert _blocked(ineligible), ineligible
    assert opened_server == "ok"
    assert opened_bystander == "ok bystander"


def test_a_download_pod_reaches_the_source_port_and_nothing_in_the_cluster(
    stack: Stack, real_sandbox: RealSandbox, real_k8s: client.ApiClient, wait_for: Any
) -> None:
    """The download policy opens TCP 443 to any address (a NetworkPolicy cannot name the hub or S3), so the
    source's stand-in is a pod on 443 (in another namespace: the open port reaches in-cluster 443 too); every
    other port in the cluster is closed: the gateway's 4000, a Service's 8080."""
    networking = client.NetworkingV1Api(real_k8s)
    names = {gateway_name(POLICY), f"{SPARE}-download"}
    with operator(real_sandbox.kubeconfig, stack.namespace):  # puts back the policies earlier tests removed
        wait_for(
            lambda: (
                names
                <= {p.metadata.name for p in networking.list_namespaced_network_policy(stack.namespace).items}
            ),
            120,
            "the gateway's and the download's policies",
        )
    download = selector_labels("ModelDeployment", SPARE, DOWNLOADER)

    source = _from_pod(real_k8s, stack.namespace, stack.source_url, download, SETTLE_S)
    gateway = _from_pod(real_k8s, stack.namespace, stack.gateway_url, download, SETTLE_S)
    bystander = _from_pod(real_k8s, stack.namespace, stack.bystander_url, download, SETTLE_S)
    # counter-check: without the download policy, the same labels reach the gateway and the bystander
    _delete_policy(real_k8s, stack.namespace, f"{SPARE}-download")
    opened = wait_for(
        lambda: (
            (log := _from_pod(real_k8s, stack.namespace, stack.bystander_url, download, SETTLE_S)).startswith(
                "ok"
            )
            and log
        ),
        POLICY_TIMEOUT_S,
        "the bystander to be reachable without the download policy",
    )
    opened_gateway = wait_for(
        lambda: (
            (log := _from_pod(real_k8s, stack.namespace, stack.gateway_url, download, SETTLE_S)).startswith(
                "ok"
            )
            and log
        ),
        POLICY_TIMEOUT_S,
        "the gateway to be reachable without the download policy",
    )

    assert source == "ok source", source
    assert _blocked(gateway), gateway
    assert _blocked(bystander), bystander
    assert opened == "ok bystander"
    assert opened_gateway.startswith("ok"), opened_gateway
