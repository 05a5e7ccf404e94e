"""When a ModelDeployment reads Available: the Deployment's rollout is complete, as `kubectl rollout status`
judges it — so a spec change is never reported Ready on the strength of the old pods."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.controllers.model_deployment import _availability


def deployment(generation: int, observed: int, replicas: int, updated: int, ready: int) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
        },
    }


@pytest.mark.parametrize(
    ("state", "available", "message"),
    [
        (deployment(1, 1, 2, 2, 2), "True", "2/2 replicas ready"),
        (deployment(2, 1, 2, 2, 2), "False", "rollout in progress (2 wanted)"),  # the spec just changed
        (deployment(2, 2, 2, 0, 2), "False", "rollout in progress (2 wanted)"),  # old pods still serve
        (deployment(1, 1, 1, 1, 0), "False", "0/2 replicas ready"),  # the first rollout, nothing ready yet
        (deployment(2, 2, 3, 2, 0), "False", "0/2 replicas ready"),  # nothing serves: old or new
        (deployment(2, 2, 3, 2, 2), "False", "rollout in progress (2 wanted)"),  # an old pod is left
        (deployment(2, 2, 2, 2, 1), "False", "1/2 replicas ready"),
    ],
)
def test_available_only_when_the_rollout_is_complete(
    state: dict[str, Any], available: str, message: str
) -> None:
    cond, _ = _availability(state, 2)
    assert (cond.status, cond.message) == (available, message)


def test_a_deployment_not_yet_read_is_progressing_with_the_message_it_will_have_once_read() -> None:
    cond, replicas = _availability({}, 1)
    assert (cond.status, cond.message, replicas) == ("False", "0/1 replicas ready", (0, 0))
