"""What the ModelDeployment controller keeps from its children's watch events instead of reading them."""

from __future__ import annotations

from typing import Any

import kopf

from modelyard.controllers.common import WatchedChildren
from modelyard.controllers.model_deployment import UnschedulablePods
from modelyard.render.common import SPEC_HASH_ANNOTATION


def deployment(version: str, ready: int, *, hash_: str = "h1", time: str = "t0") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "llama",
            "namespace": "ml",
            "generation": 1,
            "resourceVersion": version,
            "annotations": {SPEC_HASH_ANNOTATION: hash_, "other": "x"},
            "managedFields": [{"manager": "modelyard"}],
        },
        "spec": {"replicas": 1, "template": {"spec": {"containers": []}}},
        "status": {"readyReplicas": ready, "conditions": [{"lastUpdateTime": time}]},
    }


def test_keeps_only_what_controllers_read_and_reports_changes() -> None:
    watched = WatchedChildren()
    assert watched.put(deployment("10", 0))
    kept = watched.get("Deployment", "ml", "llama")
    assert kept is not None
    assert kept["metadata"]["annotations"] == {SPEC_HASH_ANNOTATION: "h1"}
    assert kept["spec"] == {"replicas": 1}
    assert not watched.put(deployment("11", 0))  # a new resourceVersion alone changes nothing read
    assert watched.put(deployment("12", 1))
    watched.drop("Deployment", "ml", "llama")
    assert watched.get("Deployment", "ml", "llama") is None


def test_an_event_older_than_an_apply_response_is_ignored() -> None:
    watched = WatchedChildren()
    watched.put(deployment("20", 0, hash_="h2"))  # what our apply answered
    assert not watched.put(deployment("19", 0, hash_="h1"))  # an event that was in flight
    kept = watched.get("Deployment", "ml", "llama")
    assert kept is not None and kept["metadata"]["annotations"][SPEC_HASH_ANNOTATION] == "h2"


def pod(name: str, component: str, unschedulable: str | None) -> kopf.Body:
    conditions = (
        [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": unschedulable}]
        if unschedulable
        else [{"type": "PodScheduled", "status": "True"}]
    )
    raw = {
        "metadata": {"name": name, "labels": {"app.kubernetes.io/component": component}},
        "status": {"conditions": conditions},
    }
    return kopf.Body(raw)  # type: ignore[arg-type]


def test_a_pod_event_matters_only_when_placement_changes() -> None:
    pods = UnschedulablePods()
    full = "0/50 nodes are available: 50 Insufficient nvidia.com/gpu."
    assert not pods.observe("ml", "llama", pod("a", "model-server", None), deleted=False)
    assert pods.observe("ml", "llama", pod("a", "model-server", full), deleted=False)
    assert not pods.observe("ml", "llama", pod("a", "model-server", full), deleted=False)
    assert pods.message("ml", "llama") == full
    assert not pods.observe("ml", "llama", pod("d", "downloader", full), deleted=False)
    assert pods.observe("ml", "llama", pod("a", "model-server", full), deleted=True)
    assert pods.message("ml", "llama") is None


def job(version: str, **status: Any) -> dict[str, Any]:
    meta = {"name": "llama-download-1", "namespace": "ml", "generation": 1, "resourceVersion": version}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": {}, "status": status}


def test_only_status_a_reconcile_reads_is_a_change() -> None:
    """A child's event runs its owner's pass only when what the pass reads changed: a download pod
    starting or a Deployment's timestamps are not news; a Job's completion, a failed attempt and a ready
    replica are."""
    watched = WatchedChildren()
    assert watched.put(job("1"))
    assert not watched.put(job("2", active=1, ready=0, startTime="t1"))
    assert not watched.put(job("3", active=1, ready=1, startTime="t1"))
    assert watched.put(job("4", active=1, failed=1, startTime="t1"))  # "1 failed attempt, retrying"
    criteria = {"type": "SuccessCriteriaMet", "status": "True"}
    assert not watched.put(job("5", failed=1, succeeded=1, conditions=[criteria]))
    complete = {"type": "Complete", "status": "True"}
    assert watched.put(job("6", failed=1, succeeded=1, conditions=[criteria, complete]))
    kept = watched.get("Job", "ml", "llama-download-1")
    assert kept is not None and kept["status"] == {"failed": 1, "conditions": [complete]}

    rollout = deployment("10", 0)
    assert watched.put(rollout)
    rollout = deployment("11", 0, time="t1")
    rollout["status"].update(availableReplicas=0, unavailableReplicas=1)
    assert not watched.put(rollout)
    assert watched.put(deployment("12", 1))
