"""The ModelDeployment bodies a pass starts from: fed by watch events and by the answers to status writes."""

from __future__ import annotations

from typing import Any

from modelyard.controllers.common import LatestBodies


def body(version: str, phase: str = "Deploying") -> dict[str, Any]:
    return {
        "apiVersion": "modelyard.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {
            "name": "m",
            "namespace": "ns",
            "resourceVersion": version,
            "managedFields": [{"manager": "modelyard"}],
        },
        "spec": {"engine": "vllm"},
        "status": {"phase": phase},
    }


def test_the_newest_body_wins_in_either_order() -> None:
    latest = LatestBodies()
    latest.put(body("10", "Deploying"))
    latest.refresh(body("12", "Ready"))  # the answer to a status write
    latest.put(body("11", "Deploying"))  # the watch event of an earlier write, arriving late
    kept = latest.get("ModelDeployment", "ns", "m")
    assert kept is not None
    assert kept["status"] == {"phase": "Ready"}
    assert "managedFields" not in kept["metadata"]
    latest.put(body("13", "Deploying"))
    assert latest.get("ModelDeployment", "ns", "m")["status"] == {"phase": "Deploying"}  # type: ignore[index]


def test_an_answer_never_brings_back_a_deleted_object() -> None:
    latest = LatestBodies()
    latest.refresh(body("5"))  # an answer for an object no event has shown: not kept
    assert latest.get("ModelDeployment", "ns", "m") is None
    latest.put(body("6"))
    latest.drop("ModelDeployment", "ns", "m")  # its DELETED event
    latest.refresh(body("7"))  # a status write that was in flight
    assert latest.get("ModelDeployment", "ns", "m") is None
    assert len(latest) == 0
