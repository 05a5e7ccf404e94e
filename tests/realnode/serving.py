"""A model server and a gateway that really run on the sandbox's real node, set up the way a user would:
a ModelDeployment and a RoutePolicy, reconciled by the operator.

- :func:`real_gpu`: the real node advertises one GPU the documented way Kubernetes advertises an extended
  resource (its status capacity and allocatable get ``nvidia.com/gpu: "1"``) and carries the catalog's
  ``nvidia.com/gpu.product`` label of :data:`GPU_TYPE`. The kwok GPU nodes carry another product, so a
  ModelDeployment of this type can only land on the real node. No GPU driver is involved: the kubelet admits
  an extended resource no device plugin manages without allocating anything.
- :func:`weights_claim`: a claim bound to one of the sandbox's hostPath PersistentVolumes, with a model
  directory in it, for a ``pvc://`` source (no download).
- :func:`tiny_model`: a ModelDeployment whose ``spec.image`` is the test model server (``make images``), which
  takes the vLLM command line modelyard renders and answers ``<served name> echoes: <prompt>``.
- :func:`fit_to_node`: the one change a test makes to what the operator rendered. modelyard requests 2 CPUs
  per GPU for a vLLM replica; the sandbox's node has 2 CPUs in all, some of them requested by CoreDNS and the
  gateway, so the serving Deployment's CPU request is lowered (nothing else: image, command line, probes,
  security context, volumes and NetworkPolicies stay as rendered). The operator re-applies a child only when
  its spec hash changes, so the patch holds until the ModelDeployment's spec changes.
- :func:`operator`: the operator run in-process with kopf's KopfRunner, as the controller tests run it,
  watching one namespace; leaving the block stops it (NetworkPolicy tests stop it before they remove a
  policy, so nothing re-creates it).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from kopf.testing import KopfRunner
from kubernetes import client

from modelyard.planning.catalog import GPU_TYPES
from modelyard.render.gateway import MASTER_KEY_SECRET_KEY, gateway_name, master_key_secret
from modelyard.render.gateway import PORT as GATEWAY_PORT
from modelyard.render.model_deployment import GPU_RESOURCE
from modelyard_sandbox import images
from modelyard_sandbox.nodeconfig import NODE_NAME

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "modelyard.dev", "v1alpha1"
GPU_TYPE = "nvidia-l4"
PRODUCT_LABEL = "nvidia.com/gpu.product"
SERVED = "tiny-chat"
MODEL_DIR = "qwen2.5-0.5b"
#: Qwen2.5-0.5B-Instruct's config.json: small enough that one L4 holds it many times over.
ARCHITECTURE = {
    "parameters": 494032768,
    "layers": 24,
    "attentionHeads": 14,
    "kvHeads": 2,
    "headDim": 64,
    "maxPositionEmbeddings": 32768,
}
#: The serving container's CPU request on the 2-CPU sandbox node (see the module docstring).
SANDBOX_CPU_REQUEST = "200m"
SERVER_READY_TIMEOUT_S = 180.0
GATEWAY_READY_TIMEOUT_S = 300.0


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None, check: bool = True) -> str:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    result = subprocess.run(
        ["kubectl", *args], input=stdin, capture_output=True, text=True, env=env, check=False, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
    return result.stdout


def install_crds(kubeconfig: Path) -> None:
    """modelyard's CRDs from crds/, applied and Established (idempotent)."""
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    kubectl(
        kubeconfig,
        "wait",
        "--for=condition=Established",
        "crd",
        "-l",
        "app.kubernetes.io/part-of=modelyard",
        "--timeout=60s",
    )


@contextmanager
def operator(kubeconfig: Path, namespace: str) -> Iterator[KopfRunner]:
    """The operator, in-process, watching ``namespace`` until the block ends."""
    args = ["run", "--standalone", "--namespace", namespace, "-m", "modelyard.controllers"]
    with mock.patch.dict(os.environ, {"KUBECONFIG": str(kubeconfig)}), KopfRunner(args, timeout=60) as runner:
        yield runner
    assert runner.exception is None, runner.output
    assert runner.exit_code == 0, runner.output


# --- the GPU ---------------------------------------------------------------------------------------------
@contextmanager
def real_gpu(k8s: client.ApiClient, gpu_type: str = GPU_TYPE) -> Iterator[str]:
    """The real node advertises one ``gpu_type`` GPU until the block ends; yields the product label."""
    core = client.CoreV1Api(k8s)
    product = GPU_TYPES[gpu_type].product
    core.patch_node(NODE_NAME, {"metadata": {"labels": {PRODUCT_LABEL: product}}})
    _set_gpus(core, "1")
    try:
        yield product
    finally:
        _set_gpus(core, None)
        core.patch_node(NODE_NAME, {"metadata": {"labels": {PRODUCT_LABEL: None}}})


def _set_gpus(core: client.CoreV1Api, count: str | None) -> None:
    # Both maps: the kubelet copies capacity into allocatable on its next status update; setting both
    # spares the wait. A merge patch's null removes the key (and the kubelet drops it from allocatable).
    patch = {"status": {"capacity": {GPU_RESOURCE: count}, "allocatable": {GPU_RESOURCE: count}}}
    core.patch_node_status(NODE_NAME, patch)


# --- the weights -----------------------------------------------------------------------------------------
def weights_claim(k8s: client.ApiClient, namespace: str, name: str = "weights") -> str:
    """A claim bound to a sandbox hostPath volume holding :data:`MODEL_DIR` (its config.json); returns the
    ``pvc://`` source."""
    core = client.CoreV1Api(k8s)
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    core.create_namespaced_persistent_volume_claim(namespace, claim)
    volume = _wait(
        lambda: core.read_namespaced_persistent_volume_claim(name, namespace).spec.volume_name,
        60,
        f"claim {name} to bind",
    )
    host_dir = Path(core.read_persistent_volume(volume).spec.host_path.path) / MODEL_DIR
    host_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["Qwen2ForCausalLM"],
        "num_hidden_layers": ARCHITECTURE["layers"],
        "num_attention_heads": ARCHITECTURE["attentionHeads"],
        "num_key_value_heads": ARCHITECTURE["kvHeads"],
        "max_position_embeddings": ARCHITECTURE["maxPositionEmbeddings"],
    }
    (host_dir / "config.json").write_text(json.dumps(config))
    return f"pvc://{name}/{MODEL_DIR}"


# --- the model server ------------------------------------------------------------------------------------
def model_server_image() -> str:
    return images.built_image(images.TEST_MODEL_SERVER).reference


def tiny_model(
    name: str, source: str, *, classification: str = "confidential", gpu_type: str = GPU_TYPE
) -> dict[str, Any]:
    """A ModelDeployment of the test model server on one ``gpu_type`` GPU, weights from ``source``."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "engine": "vllm",
            "image": model_server_image(),
            "model": {"name": SERVED, "source": source, "architecture": ARCHITECTURE},
            "gpu": {"type": gpu_type, "count": 1},
            "serving": {"maxModelLen": 4096},
            "dataClassification": classification,
        },
    }


def create(k8s: client.ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    plural = {"ModelDeployment": "modeldeployments", "RoutePolicy": "routepolicies"}[body["kind"]]
    custom = client.CustomObjectsApi(k8s)
    result: dict[str, Any] = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
    return result


def fit_to_node(k8s: client.ApiClient, namespace: str, name: str) -> None:
    """Wait for the serving Deployment the operator renders and lower its CPU request to fit the node."""
    apps = client.AppsV1Api(k8s)
    deployment = _wait(
        lambda: _read_or_none(apps.read_namespaced_deployment, name, namespace),
        120,
        f"the operator to render Deployment {name}",
    )
    container = deployment.spec.template.spec.containers[0]
    if container.resources.requests.get("cpu") == SANDBOX_CPU_REQUEST:
        return
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": container.name, "resources": {"requests": {"cpu": SANDBOX_CPU_REQUEST}}}
                    ]
                }
            }
        }
    }
    apps.patch_namespaced_deployment(name, namespace, patch)


def serve_on_real_node(
    k8s: client.ApiClient, namespace: str, name: str, *, classification: str = "confidential"
) -> client.V1Pod:
    """The claim, the ModelDeployment, and its serving pod Ready on the real node (the operator must be
    running and the real node advertising a GPU). Returns the pod."""
    source = weights_claim(k8s, namespace)
    create(k8s, namespace, tiny_model(name, source, classification=classification))
    fit_to_node(k8s, namespace, name)
    return ready_server_pod(k8s, namespace, name)


def ready_server_pod(k8s: client.ApiClient, namespace: str, name: str) -> client.V1Pod:
    selector = f"modelyard.dev/modeldeployment={name},app.kubernetes.io/component=model-server"
    return _ready_pod(k8s, namespace, selector, SERVER_READY_TIMEOUT_S, f"a Ready model-server pod of {name}")


# --- the gateway -----------------------------------------------------------------------------------------
def route_policy(name: str, routes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RoutePolicy",
        "metadata": {"name": name},
        "spec": {"routes": routes, "gateway": {"replicas": 1}},
    }


def ready_gateway_pod(k8s: client.ApiClient, namespace: str, policy: str) -> client.V1Pod:
    selector = f"modelyard.dev/routepolicy={policy},app.kubernetes.io/component=gateway"
    return _ready_pod(k8s, namespace, selector, GATEWAY_READY_TIMEOUT_S, f"a Ready gateway pod of {policy}")


def gateway_url(k8s: client.ApiClient, namespace: str, policy: str) -> str:
    """The gateway Service's cluster IP as an OpenAI base URL (kube-proxy serves it to the host too)."""
    service = client.CoreV1Api(k8s).read_namespaced_service(gateway_name(policy), namespace)
    return f"http://{service.spec.cluster_ip}:{GATEWAY_PORT}/v1"


def master_key(k8s: client.ApiClient, namespace: str, policy: str) -> str:
    """The master key the operator generated (read by the test, never printed)."""
    secret = client.CoreV1Api(k8s).read_namespaced_secret(master_key_secret(policy), namespace)
    return base64.b64decode(secret.data[MASTER_KEY_SECRET_KEY]).decode()


# --- plumbing --------------------------------------------------------------------------------------------
def _ready_pod(
    k8s: client.ApiClient, namespace: str, selector: str, timeout_s: float, what: str
) -> client.V1Pod:
    """The first Ready pod matching ``selector`` that is not being deleted; fails with the pods' events."""
    core = client.CoreV1Api(k8s)

    def ready() -> client.V1Pod | None:
        for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
            conditions = {c.type: c.status for c in pod.status.conditions or []}
            if conditions.get("Ready") == "True" and pod.metadata.deletion_timestamp is None:
                return pod
        return None

    pod: client.V1Pod = _wait(ready, timeout_s, what, diagnose=lambda: _pod_report(core, namespace, selector))
    return pod


def _read_or_none(read: Any, *args: Any) -> Any:
    try:
        return read(*args)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _wait(check: Any, timeout_s: float, what: str, diagnose: Any = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out after {timeout_s:.0f}s waiting for {what}"
                + (f"; {diagnose()}" if diagnose else "")
            )
        time.sleep(0.5)


def _pod_report(core: client.CoreV1Api, namespace: str, selector: str) -> str:
    lines = []
    for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
        events = core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={pod.metadata.name}"
        ).items
        lines.append(
            f"pod {pod.metadata.name} on {pod.spec.node_name}: phase {pod.status.phase}; events: "
            + "; ".join(f"{e.reason}: {e.message}" for e in events[-6:])
        )
    return " | ".join(lines) or f"no pod matches {selector}"


@contextmanager
def fresh_namespace(k8s: client.ApiClient, stem: str) -> Iterator[str]:
    """A namespace (with its default ServiceAccount) for a module's tests, deleted afterwards."""
    core = client.CoreV1Api(k8s)
    name = f"t-{stem}-{secrets.token_hex(3)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    _wait(
        lambda: _read_or_none(core.read_namespaced_service_account, "default", name),
        30,
        f"ServiceAccount default in {name}",
    )
    try:
        yield name
    finally:
        core.delete_namespace(name)


def container_rss_mib(pod: client.V1Pod) -> float:
    """Resident memory of the pod's first container, summed over its processes, read from the host's /proc
    (the kubelet runs the container in a cgroup whose path ends with the container's ID)."""
    container_id = pod.status.container_statuses[0].container_id.split("://", 1)[1]
    total_kib = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if container_id not in (proc / "cgroup").read_text():
                continue
            status = (proc / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024
