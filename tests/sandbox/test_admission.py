"""The API server enforces a CRD's OpenAPI schema and its CEL validation rules."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.sandbox

GROUP = "sandbox-test.modelyard.dev"
PLURAL = "widgets"
CRD_NAME = f"{PLURAL}.{GROUP}"
CEL_MESSAGE = "minReplicas must not exceed maxReplicas"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["replicas"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 0},
                "minReplicas": {"type": "integer"},
                "maxReplicas": {"type": "integer"},
            },
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.minReplicas) || !has(self.maxReplicas)"
                    " || self.minReplicas <= self.maxReplicas",
                    "message": CEL_MESSAGE,
                }
            ],
        }
    },
}


@pytest.fixture(scope="module")
def widget_crd(k8s: client.ApiClient, wait_for: Callable[..., Any]) -> Iterator[str]:
    """A test-only namespaced CRD with one schema constraint and one CEL rule, deleted after the module."""
    ext = client.ApiextensionsV1Api(k8s)
    ext.create_custom_resource_definition(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": CRD_NAME},
            "spec": {
                "group": GROUP,
                "scope": "Namespaced",
                "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget"},
                "versions": [
                    {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": SCHEMA}}
                ],
            },
        }
    )

    def established() -> bool:
        conditions = ext.read_custom_resource_definition(CRD_NAME).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(established, 30, f"CRD {CRD_NAME} to be Established")
    yield CRD_NAME
    ext.delete_custom_resource_definition(CRD_NAME)
    wait_for(
        lambda: not ext.list_custom_resource_definition(field_selector=f"metadata.name={CRD_NAME}").items,
        60,
        f"CRD {CRD_NAME} to be deleted",
    )


def _create(k8s: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> ApiException | None:
    """Create a Widget; the API error, or None when it was accepted (404 while discovery catches up)."""
    body = {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}
    try:
        client.CustomObjectsApi(k8s).create_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, body)
    except ApiException as exc:
        return exc
    return None


def _create_when_served(
    k8s: client.ApiClient, namespace: str, name: str, spec: dict[str, Any], wait_for: Callable[..., Any]
) -> ApiException | None:
    """Create a Widget, retrying while the new type is not served yet (404); the API error or None."""
    outcome: list[ApiException | None] = []

    def attempt() -> bool:
        error = _create(k8s, namespace, name, spec)
        if error is not None and error.status == 404:
            return False
        outcome.append(error)
        return True

    wait_for(attempt, 30, "the Widget type to be served")
    return outcome[0]


def _rejection(
    k8s: client.ApiClient, namespace: str, name: str, spec: dict[str, Any], wait_for: Callable[..., Any]
) -> str:
    """The API server's message rejecting ``spec``."""
    error = _create_when_served(k8s, namespace, name, spec, wait_for)
    assert error is not None, f"Widget {name} was accepted"
    assert error.status == 422, error.body
    return str(json.loads(error.body)["message"])


def test_valid_resource_is_accepted(
    widget_crd: str, k8s: client.ApiClient, namespace: str, wait_for: Callable[..., Any]
) -> None:
    spec = {"replicas": 1, "minReplicas": 1, "maxReplicas": 2}
    assert _create_when_served(k8s, namespace, "ok", spec, wait_for) is None
    assert client.CustomObjectsApi(k8s).get_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, "ok")


def test_schema_violation_is_rejected(
    widget_crd: str, k8s: client.ApiClient, namespace: str, wait_for: Callable[..., Any]
) -> None:
    message = _rejection(k8s, namespace, "bad-type", {"replicas": "two"}, wait_for)
    assert "spec.replicas" in message
    assert "must be of type integer" in message


def test_cel_rule_violation_is_rejected(
    widget_crd: str, k8s: client.ApiClient, namespace: str, wait_for: Callable[..., Any]
) -> None:
    message = _rejection(
        k8s, namespace, "bad-cel", {"replicas": 1, "minReplicas": 3, "maxReplicas": 2}, wait_for
    )
    assert CEL_MESSAGE in message
