"""Two replicas of the operator with kopf peering: when the active one is SIGKILLed (no chance to say
goodbye), the standby takes over once the dead replica's keep-alive expires."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from modelyard.controllers.runtime import PEERING_LIFETIME_S
from tests.controllers.conftest import ROOT, condition, create, get_md, kubectl

pytestmark = pytest.mark.sandbox

PEERINGS = ROOT / "charts" / "modelyard" / "crds" / "kopf.dev-peerings.yaml"
#: kopf's own default keep-alive lifetime: a standby waited up to this long for a dead peer to expire
KOPF_DEFAULT_LIFETIME_S = 60


def model(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelyard.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": name, "source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
            "gpu": {"type": "nvidia-h100-80gb"},
        },
    }


@pytest.fixture
def peering(sandbox: Any, k8s: client.ApiClient) -> Iterator[str]:
    """A ClusterKopfPeering of this test's own (the replicas run on all namespaces)."""
    kubectl(sandbox, "apply", "--server-side", "-f", str(PEERINGS))
    kubectl(sandbox, "wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev")
    name = f"failover-{secrets.token_hex(3)}"
    custom = client.CustomObjectsApi(k8s)
    body = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}}
    custom.create_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", body)
    yield name
    custom.delete_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", name)


def peers(k8s: client.ApiClient, name: str) -> dict[str, Any]:
    body = client.CustomObjectsApi(k8s).get_cluster_custom_object(
        "kopf.dev", "v1", "clusterkopfpeerings", name
    )
    return dict(body.get("status") or {})


def test_a_killed_active_replica_is_replaced_before_kopfs_default_keepalive_expires(
    sandbox: Any,
    k8s: client.ApiClient,
    custom: client.CustomObjectsApi,
    namespace: str,
    crds: None,
    peering: str,
    wait_for: Any,
    tmp_path: Path,
) -> None:
    replicas: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for replica in ("replica-a", "replica-b"):
            env = {
                **os.environ,
                "KUBECONFIG": str(sandbox.kubeconfig),
                "POD_ID": replica,
                "MODELYARD_METRICS_PORT": "0",
            }
            replicas[replica] = subprocess.Popen(
                [sys.executable, "-m", "modelyard.cli.main", "run", "-A", "--peering", peering],
                env=env,
                stdout=(tmp_path / f"{replica}.log").open("w"),
                stderr=subprocess.STDOUT,
            )
        both = wait_for(lambda: (p := peers(k8s, peering)).keys() >= set(replicas) and p, 60, "both peers")
        active = max(replicas, key=lambda r: int(both[r]["priority"]))
        create(custom, namespace, model("before"))
        wait_for(lambda: condition(get_md(custom, namespace, "before"), "Planned"), 60, "the active replica")

        # Kill it just after a keep-alive: the standby then waits for the longest expiry there can be.
        seen = peers(k8s, peering)[active]["lastseen"]
        wait_for(
            lambda: peers(k8s, peering)[active]["lastseen"] != seen, 90, "the active replica's keep-alive"
        )
        replicas[active].send_signal(signal.SIGKILL)
        replicas[active].wait(10)
        killed = time.monotonic()
        create(custom, namespace, model("after"))
        wait_for(
            lambda: condition(get_md(custom, namespace, "after"), "Planned"),
            KOPF_DEFAULT_LIFETIME_S + 30,
            "the standby replica to take over",
        )
        took = time.monotonic() - killed
    finally:
        for process in replicas.values():
            if process.poll() is None:
                process.terminate()
                process.wait(15)
    print(f"fail-over after SIGKILL: {took:.1f} s (keep-alive lifetime {PEERING_LIFETIME_S} s)")
    assert took < PEERING_LIFETIME_S + 10 < KOPF_DEFAULT_LIFETIME_S
