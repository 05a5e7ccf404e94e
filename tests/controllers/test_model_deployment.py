"""The ModelDeployment controller against the sandbox: a real API server, scheduler and kwok GPU nodes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from modelyard.controllers.metrics import METRICS
from modelyard_sandbox.components import FAILING_REVISION
from tests.controllers.conftest import (
    PLANTED,
    api_error,
    condition,
    create,
    dumps,
    get_md,
    kubectl,
    load_example,
    operator_writes,
    warning,
)

pytestmark = pytest.mark.sandbox

OWNER = "modelyard.dev/modeldeployment"


def hf_secret(k8s: client.ApiClient, namespace: str) -> None:
    body = client.V1Secret(metadata=client.V1ObjectMeta(name="hf-token"), string_data={"token": PLANTED})
    client.CoreV1Api(k8s).create_namespaced_secret(namespace, body)


def model(name: str, source: str, gpu: str = "nvidia-h100-80gb", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modelyard.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": {"name": name, "source": source}, "gpu": {"type": gpu}, **spec},
    }


def phase_is(custom: Any, namespace: str, name: str, phase: str) -> Any:
    def check() -> dict[str, Any] | None:
        obj = get_md(custom, namespace, name)
        return obj if (obj.get("status") or {}).get("phase") == phase else None

    return check


def children(k8s: client.ApiClient, namespace: str, name: str) -> dict[str, list[Any]]:
    selector = f"{OWNER}={name}"
    apps, batch, core = client.AppsV1Api(k8s), client.BatchV1Api(k8s), client.CoreV1Api(k8s)
    net = client.NetworkingV1Api(k8s)
    return {
        "Deployment": apps.list_namespaced_deployment(namespace, label_selector=selector).items,
        "Job": batch.list_namespaced_job(namespace, label_selector=selector).items,
        "PersistentVolumeClaim": core.list_namespaced_persistent_volume_claim(
            namespace, label_selector=selector
        ).items,
        "Service": core.list_namespaced_service(namespace, label_selector=selector).items,
        "ServiceAccount": core.list_namespaced_service_account(namespace, label_selector=selector).items,
        "NetworkPolicy": net.list_namespaced_network_policy(namespace, label_selector=selector).items,
        "PodDisruptionBudget": client.PolicyV1Api(k8s)
        .list_namespaced_pod_disruption_budget(namespace, label_selector=selector)
        .items,
    }


def test_vllm_example_becomes_ready(
    sandbox: Any, k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any
) -> None:
    hf_secret(k8s, namespace)
    body = load_example("vllm-llama-8b.yaml")
    with run_operator():
        create(custom, namespace, body)
        ready = wait_for(phase_is(custom, namespace, "llama-8b", "Ready"), 90, "llama-8b Ready")
    status = ready["status"]
    assert status["readyReplicas"] == 2 and status["plan"]["tensorParallelSize"] == 1
    assert [c["status"] for c in status["conditions"]] == ["True"] * 4
    assert status["endpoint"] == f"http://llama-8b.{namespace}.svc:8000/v1"
    (deployment,) = children(k8s, namespace, "llama-8b")["Deployment"]
    container = deployment.spec.template.spec.containers[0]
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert container.readiness_probe.http_get.path == "/health"
    assert container.startup_probe.failure_threshold >= 60
    pods = client.CoreV1Api(k8s).list_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/component=model-server"
    )
    nodes = {n.metadata.name: n for n in client.CoreV1Api(k8s).list_node().items}
    for pod in pods.items:
        labels = nodes[pod.spec.node_name].metadata.labels
        assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    table = kubectl(sandbox, "get", "modeldeployments", "-n", namespace)
    header, row = table.splitlines()[:2]
    assert header.split()[:8] == ["NAME", "ENGINE", "MODEL", "GPU", "GPUS", "REPLICAS", "READY", "PHASE"]
    assert row.split()[:8] == [
        "llama-8b",
        "vllm",
        "llama-3.1-8b-instruct",
        "nvidia-h100-80gb",
        "1",
        "2",
        "2",
        "Ready",
    ]


def test_a_new_model_writes_its_status_once_per_phase_and_posts_one_event(
    sandbox: Any, k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any
) -> None:
    """From creation to Ready a ModelDeployment's status is written once per phase it shows (Downloading,
    Deploying, Ready): not at each step of the download or of the rollout, and not for kopf's own
    bookkeeping; and its Events are what a user acts on: one Normal Event when it becomes Ready."""
    hf_secret(k8s, namespace)
    body = load_example("vllm-llama-8b.yaml")
    body["spec"]["replicas"] = 1  # one pod: its readiness is one step, whatever the order of pod events
    mark = (sandbox.logs / "audit.log").stat().st_size
    with run_operator():
        create(custom, namespace, body)
        wait_for(phase_is(custom, namespace, "llama-8b", "Ready"), 90, "llama-8b Ready")
        settled_versions(k8s, custom, namespace, "llama-8b", wait_for)  # no late write left to come
    writes = operator_writes(sandbox, mark, namespace)
    assert len([w for w in writes if w == "patch modeldeployments/llama-8b"]) == 3, writes
    assert len([w for w in writes if w.startswith("create events/")]) == 1, writes
    events = client.CoreV1Api(k8s).list_namespaced_event(
        namespace, field_selector="involvedObject.kind=ModelDeployment,involvedObject.name=llama-8b"
    )
    assert [(e.type, e.reason) for e in events.items] == [("Normal", "Ready")]
    assert "kopf" not in get_md(custom, namespace, "llama-8b")["status"]  # kopf's diff base stays in memory


def test_fewer_replicas_keep_the_claim_they_were_cached_on(
    k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any
) -> None:
    """Two replicas may span nodes, so the weight claim is ReadWriteMany; scaled to one, the plan would ask
    for ReadWriteOnce, which the API server refuses on an existing claim (access modes are immutable). The
    claim keeps its mode and the model stays Ready at the new replica count."""
    hf_secret(k8s, namespace)
    body = model(
        "scaled", "hf://meta-llama/Llama-3.1-8B-Instruct", replicas=2,
        model={"name": "scaled", "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
               "credentialsSecretRef": {"name": "hf-token", "key": "token"}},
    )  # fmt: skip
    core, apps = client.CoreV1Api(k8s), client.AppsV1Api(k8s)
    with run_operator():
        create(custom, namespace, body)
        wait_for(phase_is(custom, namespace, "scaled", "Ready"), 90, "scaled Ready")
        (claim,) = children(k8s, namespace, "scaled")["PersistentVolumeClaim"]
        assert claim.spec.access_modes == ["ReadWriteMany"]
        custom.patch_namespaced_custom_object(
            "modelyard.dev", "v1alpha1", namespace, "modeldeployments", "scaled", {"spec": {"replicas": 1}}
        )

        def scaled_down() -> dict[str, Any] | None:
            obj = get_md(custom, namespace, "scaled")
            status = obj.get("status") or {}
            done = status.get("observedGeneration") == obj["metadata"]["generation"] and (
                apps.read_namespaced_deployment("scaled", namespace).spec.replicas == 1
            )
            return obj if done and status.get("readyReplicas") == 1 else None

        scaled = wait_for(scaled_down, 60, "scaled to one replica")
    assert condition(scaled, "Ready")["status"] == "True", dumps(scaled["status"])
    (claim,) = children(k8s, namespace, "scaled")["PersistentVolumeClaim"]
    assert claim.spec.access_modes == ["ReadWriteMany"]
    events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=scaled").items
    assert not [e for e in events if e.reason == "PersistentVolumeClaimFailed"], [e.message for e in events]


def test_a_new_revision_downloads_again_and_removes_the_earlier_download_job(
    k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any
) -> None:
    """A first generation skips the search for earlier download Jobs (it has had one source); a revision
    change is a new Job, and once it has cached the weights the earlier Job is deleted."""
    hf_secret(k8s, namespace)
    source = "hf://meta-llama/Llama-3.1-8B-Instruct"
    body = model(
        "revised", source,
        model={"name": "revised", "source": source, "revision": "0e9e39f",
               "credentialsSecretRef": {"name": "hf-token", "key": "token"}},
    )  # fmt: skip
    with run_operator():
        create(custom, namespace, body)
        wait_for(phase_is(custom, namespace, "revised", "Ready"), 90, "revised Ready")
        (first,) = children(k8s, namespace, "revised")["Job"]
        custom.patch_namespaced_custom_object(
            "modelyard.dev", "v1alpha1", namespace, "modeldeployments", "revised",
            {"spec": {"model": {"revision": "5206a32"}}},
        )  # fmt: skip

        def one_new_job() -> list[Any] | None:
            obj = get_md(custom, namespace, "revised")
            status = obj.get("status") or {}
            jobs = children(k8s, namespace, "revised")["Job"]
            current = status.get("observedGeneration") == 2 and status.get("phase") == "Ready"
            return jobs if current and [j.metadata.name for j in jobs] != [first.metadata.name] else None

        jobs = wait_for(one_new_job, 90, "Ready on the new revision")
    assert len(jobs) == 1, [j.metadata.name for j in jobs]


def test_infeasible_model_creates_nothing(
    k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any
) -> None:
    body = model("huge", "hf://meta-llama/Llama-3.1-405B-Instruct", gpu="nvidia-l4")
    with run_operator():
        create(custom, namespace, body)
        failed = wait_for(
            lambda: condition(get_md(custom, namespace, "huge"), "Planned"), 30, "Planned condition"
        )
        wait_for(warning(k8s, namespace, "huge", "InsufficientGPUMemory"), 30, "the Warning Event")
    assert failed["status"] == "False" and failed["reason"] == "InsufficientGPUMemory"
    # not even 4 nodes of 8 L4 (the default widest span) hold it
    assert "needs 26.4 GiB per GPU on 4 nodes" in failed["message"] and "20.2 GiB usable" in failed["message"]
    assert all(not objs for objs in children(k8s, namespace, "huge").values())


def test_a_download_the_hub_refuses_fails_at_once_and_nothing_serves(
    k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any
) -> None:
    """The downloader exits with PERMANENT_FAILURE (no such revision); the Job's podFailurePolicy fails it
    without retries, and the ModelDeployment reports the Job's reason. kwok ends that pod so in the sandbox
    (FAILING_DOWNLOAD_STAGE)."""
    body = model("bad-revision", "hf://meta-llama/Llama-3.1-8B-Instruct")
    body["spec"]["model"]["revision"] = FAILING_REVISION
    with run_operator():
        create(custom, namespace, body)
        failed = wait_for(phase_is(custom, namespace, "bad-revision", "Failed"), 60, "phase Failed")
        wait_for(warning(k8s, namespace, "bad-revision", "DownloadFailed"), 30, "the Warning Event")
    cached = condition(failed, "ModelCached")
    assert (cached["status"], cached["reason"]) == ("False", "DownloadFailed")
    assert "PodFailurePolicy" in cached["message"] and "exit code 42" in cached["message"]
    (job,) = children(k8s, namespace, "bad-revision")["Job"]
    assert (job.status.failed or 0) == 1  # failed at once: no retries
    assert children(k8s, namespace, "bad-revision")["Deployment"] == []  # no GPU pod for missing weights


def test_more_gpus_than_the_cluster_has(
    k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any
) -> None:
    # Two GPU nodes with 8 GPUs each: the third 8-GPU replica cannot be scheduled.
    body = model(
        "wide",
        "hf://meta-llama/Llama-3.1-70B-Instruct",
        gpu={"type": "nvidia-h100-80gb", "count": 8},
        replicas=3,
    )
    body["spec"]["gpu"] = {"type": "nvidia-h100-80gb", "count": 8}
    with run_operator():
        create(custom, namespace, body)

        def unschedulable() -> dict[str, Any] | None:
            cond = condition(get_md(custom, namespace, "wide"), "Available")
            return cond if cond and cond["reason"] == "Unschedulable" else None

        available = wait_for(unschedulable, 90, "Available=False Unschedulable")
    assert available["status"] == "False"
    assert "Insufficient nvidia.com/gpu" in available["message"]


def test_cel_rule_refused_by_the_api_server(custom: Any, namespace: str, crds: None) -> None:
    body = model("both", "hf://meta-llama/Llama-3.1-8B-Instruct", replicas=2, autoscaling={"maxReplicas": 3})
    error = api_error(lambda: create(custom, namespace, body))
    assert error.status == 422
    assert "replicas and autoscaling are exclusive" in error.body


def test_planted_token_never_leaks(
    sandbox: Any, k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any
) -> None:
    hf_secret(k8s, namespace)
    with run_operator("--verbose") as runner:
        create(custom, namespace, load_example("vllm-llama-8b.yaml"))
        wait_for(phase_is(custom, namespace, "llama-8b", "Ready"), 90, "llama-8b Ready")
    core = client.CoreV1Api(k8s)
    places = {
        "status": dumps(get_md(custom, namespace, "llama-8b")["status"]),
        "events": dumps([e.to_dict() for e in core.list_namespaced_event(namespace).items]),
        "operator log": runner.output,
        "configmaps": dumps([c.to_dict() for c in core.list_config_map_for_all_namespaces().items]),
        "children": kubectl(sandbox, "get", "all,pvc,netpol,sa,pdb", "-n", namespace, "-o", "yaml"),
    }
    assert "llama-8b" in places["operator log"]  # the log is really captured
    for where, text in places.items():
        assert PLANTED not in text, f"secret value found in {where}"


def test_killed_mid_reconcile_converges_without_duplicates(
    sandbox: Any, k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any, tmp_path: Path
) -> None:
    hf_secret(k8s, namespace)
    env = {**os.environ, "KUBECONFIG": str(sandbox.kubeconfig)}
    log = (tmp_path / "operator.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "modelyard.cli.main", "run", "-A"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        create(custom, namespace, load_example("vllm-llama-8b.yaml"))
        wait_for(lambda: children(k8s, namespace, "llama-8b")["PersistentVolumeClaim"], 30, "the cache claim")
    finally:
        process.send_signal(signal.SIGKILL)  # no chance to finish the reconcile or clean up
        process.wait(10)
    assert get_md(custom, namespace, "llama-8b")["status"].get("phase") != "Ready"
    with run_operator():
        wait_for(phase_is(custom, namespace, "llama-8b", "Ready"), 90, "llama-8b Ready after the restart")
    counts = {kind: len(objs) for kind, objs in children(k8s, namespace, "llama-8b").items()}
    assert counts == {
        "Deployment": 1,
        "Job": 1,
        "PersistentVolumeClaim": 1,
        "Service": 1,
        "ServiceAccount": 1,
        "NetworkPolicy": 2,
        "PodDisruptionBudget": 1,
    }
    assert not get_md(custom, namespace, "llama-8b")["metadata"].get("finalizers")


def versions(k8s: Any, custom: Any, namespace: str, name: str) -> dict[str, str]:
    found = {
        f"{kind}/{o.metadata.name}": o.metadata.resource_version
        for kind, objs in children(k8s, namespace, name).items()
        for o in objs
    }
    found["ModelDeployment"] = get_md(custom, namespace, name)["metadata"]["resourceVersion"]
    return found


def settled_versions(k8s: Any, custom: Any, namespace: str, name: str, wait_for: Any) -> dict[str, str]:
    """Resource versions once the control plane's own controllers have stopped updating the children's
    status (two reads 3 s apart agree)."""
    previous: list[dict[str, str]] = [{}]

    def stable() -> dict[str, str] | None:
        current = versions(k8s, custom, namespace, name)
        same = current == previous[0]
        previous[0] = current
        return current if same else None

    result: dict[str, str] = wait_for(stable, 60, "the children to settle", interval_s=3)
    return result


def reconciles(kind: str) -> float:
    """Successful reconciles of ``kind`` so far in this process (the operator runs in-process)."""
    labels = {"kind": kind, "result": "success"}
    return METRICS.registry.get_sample_value("modelyard_reconciles_total", labels) or 0.0


def test_idle_resync_writes_nothing(
    sandbox: Any, k8s: Any, custom: Any, namespace: str, run_operator: Any, wait_for: Any
) -> None:
    hf_secret(k8s, namespace)
    with run_operator():
        create(custom, namespace, load_example("vllm-llama-8b.yaml"))
        wait_for(phase_is(custom, namespace, "llama-8b", "Ready"), 90, "llama-8b Ready")
        before = settled_versions(k8s, custom, namespace, "llama-8b", wait_for)
    mark = (sandbox.logs / "audit.log").stat().st_size
    # A new operator resumes every object (a full reconcile pass), then runs idle for a minute. The pass is
    # proven to have run (the reconcile counter moved) before the silence after it counts for anything.
    before_resume = reconciles("ModelDeployment")
    with run_operator():
        wait_for(lambda: reconciles("ModelDeployment") > before_resume, 30, "the resumed operator's pass")
        time.sleep(60)
    assert operator_writes(sandbox, 0, namespace)  # the log does see this identity's writes (the first pass)
    assert operator_writes(sandbox, mark, namespace) == []
    assert versions(k8s, custom, namespace, "llama-8b") == before
