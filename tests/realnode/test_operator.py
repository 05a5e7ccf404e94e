"""The chart runs the operator for real: ``helm install charts/modelyard`` puts the operator image (built
locally by ``make images`` under the chart's default reference) on the sandbox's real node, under the chart's
security context; it becomes Ready, keeps passing its liveness probe, and reconciles every example.

The only value set is ``watchNamespaces`` (the test's namespace): other tests of the same session run
their own operator, and two operators must not reconcile the same objects."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from modelyard_sandbox.nodeconfig import NODE_NAME
from tests.chart.conftest import CHART, helm, set_args
from tests.conftest import RealSandbox

from .serving import GROUP, ROOT, VERSION, container_rss_mib, install_crds, kubectl

pytestmark = [pytest.mark.sandbox, pytest.mark.realnode]

RELEASE = "modelyard"
READY_TIMEOUT_S = 180.0
RECONCILE_TIMEOUT_S = 180.0
#: The chart's probes (values.yaml health): a pod that has run initialDelaySeconds + periodSeconds x
#: failureThreshold with no restart has passed its liveness probe that many times in a row.
_HEALTH = yaml.safe_load((CHART / "values.yaml").read_text())["health"]
_LIVENESS, _READINESS = _HEALTH["liveness"], _HEALTH["readiness"]
LIVENESS_WINDOW_S = (
    _LIVENESS["initialDelaySeconds"] + _LIVENESS["periodSeconds"] * _LIVENESS["failureThreshold"]
)
#: A pod taken out of Ready by a transient blip is Ready again after its next passing readiness probe.
READY_AGAIN_S = 2 * _READINESS["periodSeconds"]
#: The only probe failure expected: the readiness probe before kopf listens on the health port.
NOT_LISTENING_YET = "connect: connection refused"
PLURALS = {
    "ModelDeployment": "modeldeployments",
    "ProviderBinding": "providerbindings",
    "RoutePolicy": "routepolicies",
}


#: examples/ whose plan spans two nodes (deepseek-r1-multinode.yaml, llama-405b-multinode.yaml)
MULTI_NODE_EXAMPLES = {"deepseek-r1", "llama-405b"}


def _examples() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


@pytest.fixture
def release(real_sandbox: RealSandbox, real_namespace: str) -> Iterator[float]:
    """The chart installed into the test's namespace; yields seconds from ``helm install`` to a Ready pod."""
    install_crds(real_sandbox.kubeconfig)  # helm installs the chart's crds/ only when they are missing
    started = time.time()
    values = {"watchNamespaces": [real_namespace]}
    args = ["install", RELEASE, str(CHART), "--namespace", real_namespace, *set_args(values)]
    helm(*args, kubeconfig=real_sandbox.kubeconfig)
    try:
        yield started
    finally:
        helm(
            "uninstall",
            RELEASE,
            "--namespace",
            real_namespace,
            "--wait",
            kubeconfig=real_sandbox.kubeconfig,
            check=False,
        )


def _operator_pod(core: client.CoreV1Api, namespace: str) -> client.V1Pod | None:
    selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/name=modelyard"
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    return pods[0] if len(pods) == 1 else None


def _ready(pod: client.V1Pod | None) -> bool:
    return pod is not None and any(
        c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
    )


def test_the_chart_runs_the_operator_on_the_real_node_and_it_reconciles_every_example(
    real_sandbox: RealSandbox,
    real_k8s: client.ApiClient,
    real_namespace: str,
    release: float,
    wait_for: Any,
    record_property: Any,
) -> None:
    core = client.CoreV1Api(real_k8s)
    pod = wait_for(
        lambda: (p := _operator_pod(core, real_namespace)) is not None and _ready(p) and p,
        READY_TIMEOUT_S,
        "the operator pod to become Ready",
    )
    ready_at = next(c.last_transition_time for c in pod.status.conditions if c.type == "Ready")
    record_property("operator_ready_after_helm_install_s", round(ready_at.timestamp() - release, 1))

    # The process really runs as the chart says: non-root, no capability, read-only root filesystem.
    probe = (
        "import os, json\n"
        "caps = dict(l.split(':\\t') for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n"
        "try:\n"
        "    open('/opt/modelyard/written', 'w'); root = 'writable'\n"
        "except OSError as error:\n"
        "    root = error.strerror\n"
        "open('/tmp/written', 'w').write('ok')\n"
        "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'CapEff': caps['CapEff'].strip(),"
        " 'CapBnd': caps['CapBnd'].strip(), 'root': root, 'NoNewPrivs': caps['NoNewPrivs'].strip()}))\n"
    )
    inside = json.loads(
        kubectl(
            real_sandbox.kubeconfig,
            "exec",
            "-n",
            real_namespace,
            pod.metadata.name,
            "--",
            "python",
            "-c",
            probe,
        )
    )

    # Every example, with the Secrets they reference (values that are no one's credentials).
    for name, key in (("hf-token", "token"), ("ngc-api-key", "key")):
        core.create_namespaced_secret(
            real_namespace, {"metadata": {"name": name}, "stringData": {key: "not-a-real-token"}}
        )
    examples = _examples()
    kubectl(real_sandbox.kubeconfig, "apply", "-n", real_namespace, "-f", str(ROOT / "examples"))
    custom = client.CustomObjectsApi(real_k8s)

    def get(doc: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = custom.get_namespaced_custom_object(
            GROUP, VERSION, real_namespace, PLURALS[doc["kind"]], doc["metadata"]["name"]
        )
        return result

    def reconciled(doc: dict[str, Any]) -> bool:
        obj = get(doc)
        status = obj.get("status") or {}
        return status.get("observedGeneration") == obj["metadata"]["generation"] and bool(
            status.get("conditions")
        )

    for doc in examples:
        wait_for(lambda d=doc: reconciled(d), RECONCILE_TIMEOUT_S, f"{doc['kind']} {doc['metadata']['name']}")
    # Models planned across nodes (two 8-GPU nodes each) are served by a LeaderWorkerSet; this sandbox runs
    # no LWS controller and its 16 kwok GPUs are the other examples': they are reconciled (above), not served.
    # tests/controllers/test_multinode.py serves one.
    models = [
        d
        for d in examples
        if d["kind"] == "ModelDeployment" and d["metadata"]["name"] not in MULTI_NODE_EXAMPLES
    ]
    for doc in models:  # the download Job follows the GPU placement to a kwok node, and kwok completes it
        wait_for(
            lambda d=doc: _condition(get(d), "ModelCached") == "True",
            RECONCILE_TIMEOUT_S,
            f"ModelCached of {doc['metadata']['name']}",
        )
    for doc in models:  # and the serving pods go to the kwok GPU nodes, where they become Ready
        wait_for(
            lambda d=doc: _condition(get(d), "Available") == "True",
            RECONCILE_TIMEOUT_S,
            f"Available of {doc['metadata']['name']}",
        )
    servers = core.list_namespaced_pod(
        real_namespace, label_selector="app.kubernetes.io/component=model-server"
    )
    served = {d["metadata"]["name"] for d in models}  # the multi-node examples' Jobs run too, unawaited
    jobs = [
        j
        for j in client.BatchV1Api(real_k8s).list_namespaced_job(real_namespace).items
        if (j.metadata.labels or {}).get("modelyard.dev/modeldeployment") in served
    ]
    job_pods = core.list_namespaced_pod(
        real_namespace, label_selector="app.kubernetes.io/component=model-download"
    )

    # Long enough for the liveness probe to have passed three times in a row.
    started = pod.status.start_time.timestamp()
    time.sleep(max(0.0, started + LIVENESS_WINDOW_S - time.time()))
    after = core.read_namespaced_pod(pod.metadata.name, real_namespace)
    events = core.list_namespaced_event(
        real_namespace, field_selector=f"involvedObject.name={pod.metadata.name}"
    ).items
    # The liveness probe must never fail, nor the container restart. kopf answers /healthz within 1 s on the
    # loaded node (while the examples' five LiteLLM pods start on its two CPUs): a probe that times out
    # was lost on the way, as when the pods' bridge changed its MAC address (nodeconfig.BRIDGE_MAC).
    unhealthy = [e.message for e in events if e.reason in ("BackOff", "Killing")]
    missed = sum(e.count or 1 for e in events if "Liveness probe failed" in (e.message or ""))
    record_property("operator_failed_liveness_probes", missed)
    not_ready = sum(e.count or 1 for e in events if "Readiness probe failed" in (e.message or ""))
    record_property("operator_failed_readiness_probes", not_ready)
    # fewer than the probe's failureThreshold never take the pod out of Ready
    late = sum(
        e.count or 1
        for e in events
        if "Readiness probe failed" in (e.message or "") and NOT_LISTENING_YET not in e.message
    )
    record_property(
        "operator_probe_failures", sorted({e.message for e in events if "probe failed" in (e.message or "")})
    )
    log = core.read_namespaced_pod_log(pod.metadata.name, real_namespace)
    rss = container_rss_mib(after)
    record_property("operator_rss_mib", round(rss))

    assert pod.spec.node_name == NODE_NAME
    assert inside["uid"] == 10001 and inside["gid"] == 10001
    assert inside["CapEff"] == "0000000000000000" and inside["CapBnd"] == "0000000000000000"
    assert inside["NoNewPrivs"] == "1"
    assert inside["root"] == "Read-only file system"
    status = after.status.container_statuses[0]
    if status.restart_count:  # say why: the terminated state, the events and the previous container's log
        previous = core.read_namespaced_pod_log(pod.metadata.name, real_namespace, previous=True)
        why = [(e.reason, e.message) for e in events]
        pytest.fail(f"restarted: {status.last_state}\nevents: {why}\nprevious log:\n{previous[-4000:]}")
    now = core.read_namespaced_pod(pod.metadata.name, real_namespace)
    record_property("operator_ready_at_end", _ready(now))
    probes = [(e.count, e.message) for e in events if "probe failed" in (e.message or "")]
    assert missed == 0, probes
    assert late < _READINESS["failureThreshold"], probes
    wait_for(
        lambda: _ready(core.read_namespaced_pod(pod.metadata.name, real_namespace)),
        READY_AGAIN_S,
        f"the operator pod Ready again (probe failures: {probes})",
    )
    assert not unhealthy, unhealthy
    assert "Read-only file system" not in log and "Permission denied" not in log, log[-3000:]
    assert len(jobs) == len(models) and all(j.status.succeeded == 1 for j in jobs)
    assert job_pods.items and all(p.spec.node_name.startswith("gpu-node-") for p in job_pods.items)
    assert servers.items and all(p.spec.node_name.startswith("gpu-node-") for p in servers.items)
    for doc in examples:
        obj = get(doc)
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"], obj["metadata"]["name"]
        assert any(c["type"] == "Ready" for c in obj["status"]["conditions"])


def _condition(obj: dict[str, Any], kind: str) -> str | None:
    for cond in (obj.get("status") or {}).get("conditions", []):
        if cond["type"] == kind:
            return str(cond["status"])
    return None
