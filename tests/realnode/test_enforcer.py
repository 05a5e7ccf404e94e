"""Smoke test of the NetworkPolicy enforcer (kube-router's firewall): a connection that works is refused
once a deny-all ingress policy selects the server, and works again when the policy is gone, so the
refusal is the policy's doing and not a closed port. (The policies modelyard writes are tested in
test_network_policy.py.)"""

from __future__ import annotations

from collections.abc import Callable
from itertools import count
from typing import Any

import pytest
from kubernetes import client

from .podlib import delete_quietly, fetch_script, http_server, python_pod, wait_finished

pytestmark = [pytest.mark.sandbox, pytest.mark.realnode]


def _deny_all_ingress(app: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"deny-{app}"},
        "spec": {"podSelector": {"matchLabels": {"app": app}}, "policyTypes": ["Ingress"]},
    }


def test_a_deny_all_ingress_policy_blocks_a_working_connection_until_it_is_removed(
    real_k8s: client.ApiClient, real_namespace: str, wait_for: Callable[..., Any]
) -> None:
    core, networking = client.CoreV1Api(real_k8s), client.NetworkingV1Api(real_k8s)
    cluster_ip = http_server(real_k8s, real_namespace, "guarded")
    url = f"http://{cluster_ip}:8080/"
    attempt = count()

    def fetch() -> str:
        name = f"probe-{next(attempt)}"
        pod = python_pod(name, fetch_script(url, timeout_s=2.0), labels={"app": "probe"})
        core.create_namespaced_pod(real_namespace, pod)
        return wait_finished(real_k8s, real_namespace, name, 60).log.strip()

    before = fetch()
    networking.create_namespaced_network_policy(real_namespace, _deny_all_ingress("guarded"))
    blocked = wait_for(lambda: (log := fetch()).startswith("failed") and log, 60, "the policy to block")
    delete_quietly(networking.delete_namespaced_network_policy, "deny-guarded", real_namespace)
    after = wait_for(lambda: (log := fetch()).startswith("ok") and log, 60, "the connection to work again")

    assert before == "ok guarded"
    # kube-router rejects (ICMP port unreachable) what no policy allows
    assert "Connection refused" in blocked or "timed out" in blocked, blocked
    assert after == "ok guarded"
