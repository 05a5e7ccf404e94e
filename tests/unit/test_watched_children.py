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
