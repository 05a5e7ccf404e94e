"""Faults injected on purpose, each followed by proof of recovery with no change to the objects.

These tests run on a sandbox of their own (kwok nodes only, never the real node), because they stop and
start its API server and etcd; the session's sandbox stays untouched for the other tests.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner
from kubernetes import client, config

from modelyard_sandbox import Ports, Sandbox
from tests.conftest import Cluster, _fresh_namespace
from tests.controllers.conftest import (
    GROUP,
    VERSION,
    condition,
    create,
    get_md,
    install_crds,
)

pytestmark = pytest.mark.sandbox

OWNER = "modelyard.dev/modeldeployment"
GPU_NODES = 14  # 112 kwok GPUs: two batches of 50 one-GPU models side by side
MODELS = 50
OUTAGE_S = 20
#: after the outage: every retry is capped at 60 s, and 50 models converge in well under a minute
RECOVERY_S = 120


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox of this module's own, with modelyard's CRDs, torn down after it."""
    base = tmp_path_factory.mktemp("fault-sandbox")
    env = Sandbox(base / "cluster", ports=Ports.free())
    try:
        env.up(gpu_nodes=GPU_NODES, gpus_per_node=8, cpu_nodes=1, volumes=2 * MODELS + 5)
        install_crds(env)
        yield env
    finally:
        env.down()


@pytest.fixture
def cluster(faulty: Sandbox) -> Cluster:
    """The fault sandbox as the `sandbox` fixture describes a cluster (its logs are kept on failure)."""
    return Cluster(faulty.kubeconfig, faulty.api_url, faulty.directory / "logs")


@pytest.fixture
def api(faulty: Sandbox) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(faulty.kubeconfig))


@pytest.fixture
def fault_namespace(request: pytest.FixtureRequest, api: client.ApiClient) -> Iterator[str]:
    yield from _fresh_namespace(request, api)


@pytest.fixture
def operator(faulty: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Any]:
    """``with operator() as runner:`` runs the operator against the fault sandbox; it must not exit early."""
    monkeypatch.setenv("KUBECONFIG", str(faulty.kubeconfig))

    @contextmanager
    def start() -> Iterator[KopfRunner]:
        args = ["run", "--all-namespaces", "--standalone", "-m", "modelyard.controllers"]
        with KopfRunner(args, timeout=60) as runner:
            yield runner
            assert not runner.future.done(), "the operator exited during the test"
        assert runner.exit_code == 0, runner.output[-5000:]
        assert runner.exception is None, runner.output[-5000:]

    return start


def model(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": name, "source": "hf://meta-llama/Llama-3.1-8B-Instruct", "revision": "0e9e39f"},
            "gpu": {"type": "nvidia-h100-80gb"},
            "replicas": 1,
        },
    }


def audit_entries(cluster: Cluster, since: int, resource: str, namespace: str) -> list[dict[str, Any]]:
    """Audit log entries (write requests) on ``resource`` in ``namespace`` after byte ``since``."""
    assert cluster.logs is not None
    found = []
    with (cluster.logs / "audit.log").open() as log:
        log.seek(since)
        for line in log:
            entry = json.loads(line)
            ref = entry.get("objectRef", {})
            if ref.get("resource") == resource and ref.get("namespace") == namespace:
                found.append(entry)
    return found


def audit_mark(cluster: Cluster) -> int:
    assert cluster.logs is not None
    path: Path = cluster.logs / "audit.log"
    return path.stat().st_size if path.exists() else 0


def test_a_quota_that_forbids_the_cache_claim_is_retried_until_it_is_raised(
    cluster: Cluster, api: client.ApiClient, fault_namespace: str, operator: Any, wait_for: Any
) -> None:
    """The claim is refused (403, exceeded quota): the ModelDeployment says so with the quota's message, in
    one Warning Event, and the operator keeps trying with back-off. Once the quota is raised the claim is
    created and the model becomes Ready, with no change to the ModelDeployment."""
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    quota = client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="no-claims"),
        spec=client.V1ResourceQuotaSpec(hard={"persistentvolumeclaims": "0"}),
    )
    core.create_namespaced_resource_quota(fault_namespace, quota)
    # enforced once the quota controller has counted it (a quota the admission's cache has not seen yet
    # lets the claim through on a loaded control plane)
    wait_for(
        lambda: (
            core.read_namespaced_resource_quota("no-claims", fault_namespace).to_dict()["status"] or {}
        ).get("hard"),
        30,
        "the quota counted by its controller",
    )
    mark = audit_mark(cluster)
    with operator():
        created = create(custom, fault_namespace, model("quota"))

        def refused() -> dict[str, Any] | None:
            ready = condition(get_md(custom, fault_namespace, "quota"), "Ready")
            return ready if ready and ready["reason"] == "PersistentVolumeClaimFailed" else None

        ready = wait_for(refused, 30, "Ready=False PersistentVolumeClaimFailed")
        assert ready["status"] == "False"
        assert "exceeded quota: no-claims" in ready["message"], ready

        def attempts() -> int:
            entries = audit_entries(cluster, mark, "persistentvolumeclaims", fault_namespace)
            return sum(e.get("responseStatus", {}).get("code") == 403 for e in entries)

        wait_for(lambda: attempts() >= 3, 30, "the claim retried (3 refused attempts)")
        events = core.list_namespaced_event(fault_namespace).items
        refusals = [e for e in events if e.reason == "PersistentVolumeClaimFailed"]
        assert len(refusals) == 1 and refusals[0].type == "Warning", [e.reason for e in events]
        assert "exceeded quota" in refusals[0].message
        assert not [e for e in events if "failed temporarily" in (e.message or "")]  # no Event per retry

        core.patch_namespaced_resource_quota(
            "no-claims", fault_namespace, {"spec": {"hard": {"persistentvolumeclaims": "5"}}}
        )
        wait_for(
            lambda: core.list_namespaced_persistent_volume_claim(fault_namespace).items, 60, "the cache claim"
        )

        def is_ready() -> dict[str, Any] | None:
            body = get_md(custom, fault_namespace, "quota")
            return body if (body.get("status") or {}).get("phase") == "Ready" else None

        body = wait_for(is_ready, 60, "Ready once the quota allows the claim")
    assert body["metadata"]["generation"] == created["metadata"]["generation"]
    assert body["spec"] == created["spec"]
    assert condition(body, "Ready")["status"] == "True"


def children_by_owner(api: client.ApiClient, namespace: str) -> dict[str, Counter[str]]:
    """How many children of each kind every ModelDeployment owns (by the owner label)."""
    apps, batch, core = client.AppsV1Api(api), client.BatchV1Api(api), client.CoreV1Api(api)
    lists = {
        "Deployment": apps.list_namespaced_deployment(namespace, label_selector=OWNER).items,
        "Job": batch.list_namespaced_job(namespace, label_selector=OWNER).items,
        "PersistentVolumeClaim": core.list_namespaced_persistent_volume_claim(
            namespace, label_selector=OWNER
        ).items,
        "Service": core.list_namespaced_service(namespace, label_selector=OWNER).items,
        "ServiceAccount": core.list_namespaced_service_account(namespace, label_selector=OWNER).items,
    }
    owned: dict[str, Counter[str]] = {}
    for kind, items in lists.items():
        for item in items:
            owned.setdefault(item.metadata.labels[OWNER], Counter())[kind] += 1
    return owned


def not_ready(custom: client.CustomObjectsApi, namespace: str) -> dict[str, str]:
    """The ModelDeployments not Ready for their generation, with their phase and Ready condition."""
    items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "modeldeployments")["items"]
    found = {}
    for item in items:
        status = item.get("status") or {}
        if (
            status.get("phase") != "Ready"
            or status.get("observedGeneration") != item["metadata"]["generation"]
        ):
            ready = condition(item, "Ready") or {}
            found[item["metadata"]["name"]] = (
                f"{status.get('phase')}: {ready.get('reason')}: {ready.get('message')}"
            )
    return found


def wait_all_ready(
    custom: client.CustomObjectsApi, namespace: str, timeout_s: float
) -> tuple[dict[str, str], list[str]]:
    """Wait until every ModelDeployment is Ready, or ``timeout_s``; returns those that are not (with their
    phase and Ready condition) and how many were not, by phase, every 5 s."""
    started = time.monotonic()
    timeline: list[str] = []
    while (left := not_ready(custom, namespace)) and time.monotonic() < started + timeout_s:
        elapsed = time.monotonic() - started
        if elapsed >= 5 * len(timeline):
            phases = Counter(state.split(":")[0] for state in left.values())
            timeline.append(f"{elapsed:.0f}s {dict(phases)}")
        time.sleep(0.5)
    return left, timeline


def rolled_out(api: client.ApiClient, namespace: str) -> dict[str, bool]:
    """Whether each model's Deployment is rolled out, as the Deployment controller reports it."""
    deployments = client.AppsV1Api(api).list_namespaced_deployment(namespace).items
    return {
        d.metadata.labels[OWNER]: d.status.observed_generation == d.metadata.generation
        and (d.status.ready_replicas or 0) >= (d.spec.replicas or 0)
        for d in deployments
    }


def lagging_the_cluster(
    api: client.ApiClient, custom: client.CustomObjectsApi, namespace: str, left: dict[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Of the models not Ready, those the operator leaves behind the cluster (their Deployment is rolled out,
    or they are not waiting for it), after a grace of a few seconds for a rollout that just finished; and
    those whose Deployment the cluster itself has not rolled out (the operator's ``Deploying`` is right)."""
    deadline = time.monotonic() + 10
    while True:
        deployed = rolled_out(api, namespace)
        lagging = {
            name: state
            for name, state in not_ready(custom, namespace).items()
            if name in left and (deployed.get(name, True) or not state.startswith("Deploying"))
        }
        if not lagging or time.monotonic() > deadline:
            waiting = sorted(name for name in left if name not in lagging and not deployed.get(name, True))
            return lagging, waiting
        time.sleep(0.5)


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_models_converge_across_a_control_plane_outage(
    component: str,
    faulty: Sandbox,
    api: client.ApiClient,
    fault_namespace: str,
    operator: Any,
    wait_for: Any,
    tmp_path: Path,
) -> None:
    """50 ModelDeployments, and the API server (or etcd) stopped for 20 s while they converge: once it is
    back, every one whose Deployment the cluster rolls out becomes Ready, each with exactly one of each
    child, and the operator never exited."""
    custom = client.CustomObjectsApi(api)
    with operator() as runner:
        generations = {}
        for i in range(MODELS):
            body = create(custom, fault_namespace, model(f"m-{i:02d}"))
            generations[body["metadata"]["name"]] = body["metadata"]["generation"]
        wait_for(
            lambda: len(children_by_owner(api, fault_namespace)) >= MODELS // 5,
            60,
            "the first models' children (converging)",
        )
        faulty.restart(component, down_for=OUTAGE_S)
        back = time.monotonic()
        left, timeline = wait_all_ready(custom, fault_namespace, RECOVERY_S)
        took = time.monotonic() - back
        lagging, waiting = lagging_the_cluster(api, custom, fault_namespace, left) if left else ({}, [])
    (tmp_path / "operator.log").write_text(runner.output)  # kept with the test's tmp dir
    # The control plane's own controllers back off their retries (client-go's work queue, up to 1,000 s): a
    # Deployment whose ReplicaSet's status write failed while etcd was away may not count its ready pod within
    # RECOVERY_S (seen: pod Running, readyReplicas unset), and then its model rightly reads Deploying.
    # Every model whose Deployment is rolled out must be Ready.
    assert not lagging, f"{len(lagging)} not Ready {RECOVERY_S} s after the outage: {lagging}; {timeline}"
    print(  # the runner's stdout
        f"{MODELS - len(left)} models Ready {took:.1f} s after {component} was back: {timeline}; "
        f"{len(waiting)} Deploying while the cluster has not rolled out their Deployments: {waiting}"
    )
    assert len(waiting) < MODELS // 2, "the control plane did not recover: the test proves little"
    assert "Traceback" not in runner.output
    owned = children_by_owner(api, fault_namespace)
    expected = Counter(
        {"Deployment": 1, "Job": 1, "PersistentVolumeClaim": 1, "Service": 1, "ServiceAccount": 1}
    )
    duplicates = {owner: counts for owner, counts in owned.items() if counts != expected}
    assert len(owned) == MODELS and not duplicates, duplicates
    items = custom.list_namespaced_custom_object(GROUP, VERSION, fault_namespace, "modeldeployments")["items"]
    assert {i["metadata"]["name"]: i["metadata"]["generation"] for i in items} == generations
