"""Available follows the LeaderWorkerSet's own condition and its ready groups."""

from __future__ import annotations

from typing import Any

from modelyard.controllers.model_deployment import lws_availability


def _lws(replicas: int, ready: int, condition: str, status: str = "True") -> dict[str, Any]:
    messages = {"Available": "All replicas are ready", "Progressing": "Replicas are progressing"}
    return {
        "metadata": {"generation": 2},
        "spec": {"replicas": replicas},
        "status": {
            "replicas": replicas,
            "readyReplicas": ready,
            "conditions": [
                {
                    "type": condition,
                    "status": status,
                    "reason": "AllGroupsReady",
                    "message": messages[condition],
                }
            ],
        },
    }


def test_available_when_the_set_says_so_and_every_group_is_ready() -> None:
    cond, counts = lws_availability(_lws(2, 2, "Available"), 2)
    assert (cond.status, cond.reason, counts) == ("True", "MinimumReplicasAvailable", (2, 2))
    assert cond.message == "2/2 groups ready (LeaderWorkerSet AllGroupsReady)"


def test_progressing_set_is_not_available_and_says_why() -> None:
    cond, counts = lws_availability(_lws(2, 1, "Progressing"), 2)
    assert (cond.status, cond.reason, counts) == ("False", "Progressing", (2, 1))
    assert cond.message == "1/2 groups ready: Replicas are progressing"


def test_no_status_yet_and_zero_groups_are_not_available() -> None:
    assert lws_availability({}, 1)[0].status == "False"
    assert lws_availability(_lws(0, 0, "Available"), 0)[0].status == "False"
