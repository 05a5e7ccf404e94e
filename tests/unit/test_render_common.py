"""The labels the controllers' watches select on: one definition, carried by every child."""

from __future__ import annotations

from pathlib import Path

from modelyard.manifests import load
from modelyard.render.common import (
    COMPONENT_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    label_selector,
    labels,
    owner_label,
    selector_labels,
)
from modelyard.render.offline import render_manifests

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_owner_label_is_the_kind_under_the_project_prefix() -> None:
    assert owner_label("ModelDeployment") == "modelyard.dev/modeldeployment"
    assert owner_label("RoutePolicy") == "modelyard.dev/routepolicy"


def test_labels_carry_the_keys_the_watches_select_on() -> None:
    child = labels("ModelDeployment", "llama", "model-server")
    assert child[MANAGED_BY_LABEL] == MANAGED_BY
    assert child[COMPONENT_LABEL] == "model-server"
    assert child[owner_label("ModelDeployment")] == "llama"
    assert selector_labels("ModelDeployment", "llama", "model-server").items() <= child.items()


def test_label_selector() -> None:
    assert label_selector({MANAGED_BY_LABEL: MANAGED_BY, COMPONENT_LABEL: "gateway"}) == (
        "app.kubernetes.io/managed-by=modelyard,app.kubernetes.io/component=gateway"
    )


def test_every_rendered_child_is_seen_by_the_managed_by_watch() -> None:
    """The operator watches its Deployments and Jobs with a managed-by selector: a child without the label
    would never wake its owner."""
    objects = render_manifests(load(EXAMPLES))
    assert {obj["kind"] for obj in objects} >= {"Deployment", "Job", "Service", "ConfigMap", "ServiceAccount"}
    for obj in objects:
        assert obj["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY, obj["kind"]
        assert COMPONENT_LABEL in obj["metadata"]["labels"], obj["kind"]
