"""The chart's RBAC for LeaderWorkerSets, judged by the sandbox API server's RBAC authorizer: the chart's
ServiceAccount may do on leaderworkersets exactly what the ModelDeployment controller does for a model
planned across nodes (get, list, watch, create, patch, delete), and delete the Deployment such a plan
replaces, in cluster mode and in namespace-scoped mode."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.controllers.conftest import kubectl

from .conftest import template
from .test_inference_pool_rbac import NOT_USED, USED, can_i

pytestmark = pytest.mark.sandbox

GROUP, RESOURCE = "leaderworkerset.x-k8s.io", "leaderworkersets"


@pytest.mark.parametrize("mode", ["cluster", "namespaced"])
def test_the_charts_service_account_may_manage_leader_worker_sets(
    sandbox: Any, k8s: Any, namespace: str, mode: str
) -> None:
    values: dict[str, Any] = {} if mode == "cluster" else {"watchNamespaces": [namespace]}
    docs = template(values, namespace=namespace, release=f"lws-{namespace[-6:]}")
    rbac = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    objects = [d for d in docs if d["kind"] in rbac]
    cluster_wide = [
        f"{d['kind'].lower()}/{d['metadata']['name']}" for d in objects if d["kind"].startswith("Cluster")
    ]
    try:
        kubectl(sandbox, "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(objects))
        name = next(d for d in objects if d["kind"] == "ServiceAccount")["metadata"]["name"]
        account = f"{namespace}/{name}"
        granted = {v: can_i(k8s, v, GROUP, RESOURCE, namespace, account) for v in (*USED, *NOT_USED)}
        assert granted == {**dict.fromkeys(USED, True), **dict.fromkeys(NOT_USED, False)}
        assert can_i(k8s, "delete", "apps", "deployments", namespace, account)
        # the operator never scales a LeaderWorkerSet itself (the HPA controller does, with its own role)
        assert not can_i(k8s, "update", GROUP, f"{RESOURCE}/scale", namespace, account)
    finally:
        if cluster_wide:
            kubectl(sandbox, "delete", "--ignore-not-found", *cluster_wide, check=False)
