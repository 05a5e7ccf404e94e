"""The ModelDeployment controller on the sandbox: time from apply to Ready for 1 and for 100
ModelDeployments, and the operator's API write requests per ModelDeployment, counted from the API server's
audit log (every write the operator's ServiceAccount made, kopf's own included) on the first reconcile and
on an idle resync (the operator restarted: a full resume pass, then idle).

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, config

from modelyard.sandbox import Ports, Sandbox
from modelyard.sandbox.kube import write_kubeconfig
from modelyard.sandbox.pki import Pki

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE, OPERATOR_NS, OPERATOR_SA = "bench", "modelyard-system", "modelyard"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}"
MANY = 100
IDLE_S = 60


def model_deployment(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelyard.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "model": {
                "name": "llama-3.1-8b-instruct",
                "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
                "revision": "0e9e39f249a16976918f6564b8830bc894c89659",
            },
            "gpu": {"type": "nvidia-h100-80gb"},
        },
    }


class AuditLog:
    """Write requests from the operator's ServiceAccount since the last mark."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def writes(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        with self.path.open() as log:
            log.seek(self.offset)
            for line in log:
                entry = json.loads(line)
                if entry.get("user", {}).get("username") == OPERATOR_USER:
                    ref = entry.get("objectRef", {})
                    sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
                    counts[f"{entry['verb']} {ref.get('resource', '?')}{sub}"] += 1
        return counts


def wait(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout_s:
            raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)
    return time.perf_counter() - started


def operator_kubeconfig(sandbox: Sandbox, api: client.ApiClient, path: Path) -> None:
    """A kubeconfig acting as the operator's own ServiceAccount, so the audit log tells its writes apart."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=OPERATOR_NS)))
    core.create_namespaced_service_account(
        OPERATOR_NS, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=OPERATOR_SA))
    )
    rbac.create_cluster_role_binding(
        client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name="modelyard-bench"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="cluster-admin"
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=OPERATOR_SA, namespace=OPERATOR_NS)],
        )
    )
    token = core.create_namespaced_service_account_token(
        OPERATOR_SA,
        OPERATOR_NS,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
        ),
    ).status.token
    write_kubeconfig(path, sandbox.api_url, Pki(sandbox.directory / "pki").ca.cert, token, OPERATOR_SA)


def start_operator(kubeconfig: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    return subprocess.Popen(
        [sys.executable, "-m", "modelyard.cli.main", "run", "-A", "--log-format", "plain"],
        env=env,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
    )


def ready_count(custom: client.CustomObjectsApi) -> int:
    items = custom.list_namespaced_custom_object("modelyard.dev", "v1alpha1", NAMESPACE, "modeldeployments")[
        "items"
    ]
    return sum((i.get("status") or {}).get("phase") == "Ready" for i in items)


def report(label: str, counts: Counter[str], per: int) -> None:
    total = sum(counts.values())
    print(f"{label:<52} {total / per:8.1f}")
    for key, value in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"    {key:<48} {value / per:8.2f}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp:
        sandbox = Sandbox(Path(tmp) / "sandbox", ports=Ports.free())
        operator: subprocess.Popen[bytes] | None = None
        try:
            sandbox.up(gpu_nodes=14, gpus_per_node=8, cpu_nodes=4, volumes=MANY + 10)
            env = {**os.environ, "KUBECONFIG": str(sandbox.kubeconfig)}
            subprocess.run(
                ["kubectl", "apply", "--server-side", "-f", str(ROOT / "crds")],
                env=env,
                check=True,
                capture_output=True,
            )
            subprocess.run(
                ["kubectl", "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"],
                env=env,
                check=True,
                capture_output=True,
            )
            api = config.new_client_from_config(config_file=str(sandbox.kubeconfig))
            custom = client.CustomObjectsApi(api)
            client.CoreV1Api(api).create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE))
            )
            kubeconfig, log = Path(tmp) / "operator.kubeconfig", Path(tmp) / "operator.log"
            operator_kubeconfig(sandbox, api, kubeconfig)
            audit = AuditLog(sandbox.directory / "logs" / "audit.log")
            operator = start_operator(kubeconfig, log)
            time.sleep(3)

            audit.mark()
            started = time.perf_counter()
            custom.create_namespaced_custom_object(
                "modelyard.dev", "v1alpha1", NAMESPACE, "modeldeployments", model_deployment("single")
            )
            single = wait(lambda: ready_count(custom) == 1, 120, "one ModelDeployment Ready") + 0 * started
            time.sleep(2)
            first_single = audit.writes()

            audit.mark()
            started = time.perf_counter()
            for i in range(MANY):
                custom.create_namespaced_custom_object(
                    "modelyard.dev",
                    "v1alpha1",
                    NAMESPACE,
                    "modeldeployments",
                    model_deployment(f"model-{i:03d}"),
                )
            created = time.perf_counter() - started
            many = created + wait(
                lambda: ready_count(custom) == MANY + 1, 900, f"{MANY} ModelDeployments Ready"
            )
            time.sleep(5)
            first_many = audit.writes()

            operator.terminate()
            operator.wait(30)
            audit.mark()
            operator = start_operator(kubeconfig, log)
            time.sleep(IDLE_S)
            idle = audit.writes()
        finally:
            if operator is not None:
                operator.terminate()
                operator.wait(30)
            sandbox.down()

    print(f"apply to Ready, 1 ModelDeployment                        {single:8.1f} s")
    print(f"apply to Ready, {MANY} ModelDeployments (created in {created:.1f} s)    {many:8.1f} s")
    report("API writes per ModelDeployment, first reconcile (1)", first_single, 1)
    report(f"API writes per ModelDeployment, first reconcile ({MANY})", first_many, MANY)
    report(f"API writes per ModelDeployment, restart + {IDLE_S} s idle", idle, MANY + 1)


if __name__ == "__main__":
    main()
