"""Helpers for tests whose pods really run on the sandbox's real node: run a command in a pod and read its
exit code and log, start a small HTTP server behind a Service."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from modelyard_sandbox import images
from modelyard_sandbox.nodeconfig import NODE_NAME

POD_TIMEOUT_S = 90.0


def python_image() -> str:
    """An image with Python on the node: the test model server's (``make images``)."""
    return images.built_image(images.TEST_MODEL_SERVER).reference


@dataclass(frozen=True)
class Finished:
    """A pod that ran to completion."""

    exit_code: int
    log: str
    node: str


def python_pod(name: str, script: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A pod that runs ``python3 -c script`` once, non-root, on whatever node the scheduler picks."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": python_image(),
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", script],
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 1000,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def run_python(
    k8s: client.ApiClient, namespace: str, name: str, script: str, timeout_s: float = POD_TIMEOUT_S
) -> Finished:
    """Run ``script`` in a pod and wait until it terminated; its exit code, log and node."""
    core = client.CoreV1Api(k8s)
    core.create_namespaced_pod(namespace, python_pod(name, script))
    return wait_finished(k8s, namespace, name, timeout_s)


def wait_finished(k8s: client.ApiClient, namespace: str, name: str, timeout_s: float) -> Finished:
    core = client.CoreV1Api(k8s)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod(name, namespace)
        for status in pod.status.container_statuses or []:
            if status.state.terminated is not None:
                response = core.read_namespaced_pod_log(name, namespace, _preload_content=False)
                log = response.data.decode()
                return Finished(status.state.terminated.exit_code, log, pod.spec.node_name)
        time.sleep(0.25)
    events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    pytest.fail(
        f"pod {name} did not finish in {timeout_s:.0f}s; phase {pod.status.phase}; events: "
        + "; ".join(f"{e.reason}: {e.message}" for e in events)
    )


def http_server(k8s: client.ApiClient, namespace: str, name: str, port: int = 8080) -> str:
    """A pod serving HTTP on ``port`` (answering ``<name>`` to every GET) behind a Service ``name``; wait
    until it is Ready and return the Service's cluster IP."""
    script = (
        "import http.server\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        f"        body = b'{name}'\n"
        "        self.send_response(200); self.send_header('Content-Length', str(len(body)))\n"
        "        self.end_headers(); self.wfile.write(body)\n"
        "    def log_message(self, *args): pass\n"
        f"http.server.ThreadingHTTPServer(('', {port}), H).serve_forever()\n"
    )
    pod = python_pod(name, script, labels={"app": name})
    container = pod["spec"]["containers"][0]
    container["ports"] = [{"containerPort": port}]
    container["readinessProbe"] = {"tcpSocket": {"port": port}, "periodSeconds": 1}
    pod["spec"]["restartPolicy"] = "Always"
    core = client.CoreV1Api(k8s)
    core.create_namespaced_pod(namespace, pod)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": port, "targetPort": port}]},
    }
    created = core.create_namespaced_service(namespace, service)
    wait_ready(k8s, namespace, name)
    return str(created.spec.cluster_ip)


def wait_ready(k8s: client.ApiClient, namespace: str, name: str, timeout_s: float = POD_TIMEOUT_S) -> None:
    core = client.CoreV1Api(k8s)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod(name, namespace)
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        if conditions.get("Ready") == "True":
            return
        time.sleep(0.25)
    pytest.fail(f"pod {name} not Ready in {timeout_s:.0f}s (phase {pod.status.phase})")


def fetch_script(url: str, timeout_s: float = 3.0) -> str:
    """A script printing ``ok <body>`` when ``url`` answers, ``failed <error>`` (exit 1) when not."""
    return (
        "import sys, urllib.request\n"
        "try:\n"
        f"    print('ok', urllib.request.urlopen({url!r}, timeout={timeout_s}).read().decode())\n"
        "except Exception as error:\n"
        "    print('failed', type(error).__name__, error); sys.exit(1)\n"
    )


def on_real_node(finished: Finished) -> None:
    assert finished.node == NODE_NAME, f"the pod ran on {finished.node}, not on the real node"


def delete_quietly(call: Any, *args: Any) -> None:
    try:
        call(*args)
    except ApiException as exc:
        if exc.status != 404:
            raise
