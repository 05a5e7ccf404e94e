"""The chart's RBAC for InferencePools, judged by the sandbox API server's RBAC authorizer: the chart's
ServiceAccount may do on inferencepools exactly what the InferencePool controller does (get, list, watch,
create, patch, delete), in cluster mode and in namespace-scoped mode, and nothing more."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.controllers.conftest import kubectl

from .conftest import template

pytestmark = pytest.mark.sandbox

GROUP, RESOURCE = "inference.networking.k8s.io", "inferencepools"
USED = ("get", "list", "watch", "create", "patch", "delete")
NOT_USED = ("update", "deletecollection")


def can_i(k8s: Any, verb: str, group: str, resource: str, namespace: str, account: str) -> bool:
    """The API server's RBAC verdict for ``account`` (namespace/name of a ServiceAccount): a
    SubjectAccessReview, with the user and groups a ServiceAccount token authenticates as."""
    ns, name = account.split("/")
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{ns}:{name}",
            groups=["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"],
            resource_attributes=client.V1ResourceAttributes(
                verb=verb, group=group, resource=resource, namespace=namespace
            ),
        )
    )
    return bool(client.AuthorizationV1Api(k8s).create_subject_access_review(review).status.allowed)


@pytest.mark.parametrize("mode", ["cluster", "namespaced"])
def test_the_charts_service_account_may_manage_inference_pools(
    sandbox: Any, k8s: Any, namespace: str, mode: str
) -> None:
    """The chart's ServiceAccount and RBAC objects (only those) rendered into the test's namespace under a
    release name of their own, asked about with ``kubectl auth can-i --as`` the ServiceAccount."""
    values: dict[str, Any] = {} if mode == "cluster" else {"watchNamespaces": [namespace]}
    docs = template(values, namespace=namespace, release=f"pools-{namespace[-6:]}")
    rbac = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    objects = [d for d in docs if d["kind"] in rbac]
    assert {d["kind"] for d in objects} == (
        {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
        if mode == "cluster"
        else {"ServiceAccount", "Role", "RoleBinding"}
    )
    cluster_wide = [
        f"{d['kind'].lower()}/{d['metadata']['name']}" for d in objects if d["kind"].startswith("Cluster")
    ]
    try:
        kubectl(sandbox, "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(objects))
        name = next(d for d in objects if d["kind"] == "ServiceAccount")["metadata"]["name"]
        account = f"{namespace}/{name}"
        granted = {v: can_i(k8s, v, GROUP, RESOURCE, namespace, account) for v in (*USED, *NOT_USED)}
        assert granted == {**dict.fromkeys(USED, True), **dict.fromkeys(NOT_USED, False)}
        # the same authorizer refuses what the chart does not grant (the check can fail)
        assert not can_i(k8s, "delete", "modelyard.dev", "modeldeployments", namespace, account)
        assert can_i(k8s, "get", "modelyard.dev", "modeldeployments", namespace, account)
    finally:
        if cluster_wide:
            kubectl(sandbox, "delete", "--ignore-not-found", *cluster_wide, check=False)
