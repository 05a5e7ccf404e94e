"""``modelyard audit`` against the sandbox's API server, logged in through a kubeconfig exec credential plugin
(as on EKS, AKS, GKE): a plugin that answers with a client certificate, and one that answers with a
ServiceAccount's token, whose permissions then decide what the audit may read."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.controllers import conftest as controller_fixtures
from tests.controllers.conftest import kubectl

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("crds")]
crds = controller_fixtures.crds
V1 = "client.authentication.k8s.io/v1"
AUDIT_READS = (
    "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: NAME}\nrules:\n"
    "- apiGroups: [modelyard.dev]\n"
    "  resources: [modeldeployments, providerbindings, routepolicies]\n  verbs: [list]\n"
    "- {apiGroups: [networking.k8s.io], resources: [networkpolicies], verbs: [list]}\n"
)


def exec_kubeconfig(sandbox: Any, directory: Path, status: dict[str, Any]) -> Path:
    """A kubeconfig for the sandbox whose user is an exec plugin (a script in ``directory``) that prints an
    ExecCredential with ``status``, after checking it was asked for one."""
    admin = yaml.safe_load(Path(sandbox.kubeconfig).read_text())
    credential = json.dumps({"apiVersion": V1, "kind": "ExecCredential", "status": status})
    (directory / "credential.json").write_text(credential)
    script = directory / "get-credential"
    script.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        "asked = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        f"assert asked['apiVersion'] == {V1!r} and asked['kind'] == 'ExecCredential', asked\n"
        "sys.stdout.write(open(sys.argv[1]).read())\n"
    )
    script.chmod(0o755)
    path = directory / "kubeconfig"
    exec_user = {"apiVersion": V1, "command": str(script), "args": [str(directory / "credential.json")]}
    path.write_text(
        yaml.safe_dump(
            {
                **admin,
                "users": [{"name": "exec-user", "user": {"exec": {**exec_user, "interactiveMode": "Never"}}}],
                "contexts": [
                    {
                        "name": "exec",
                        "context": {"cluster": admin["clusters"][0]["name"], "user": "exec-user"},
                    }
                ],
                "current-context": "exec",
            }
        )
    )
    return path


def audit(kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard.cli.main", "audit", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
    )


def test_an_exec_plugin_with_a_client_certificate(sandbox: Any, namespace: str, tmp_path: Path) -> None:
    kubectl(sandbox, "apply", "-n", namespace, "-f", "examples/")
    user = yaml.safe_load(Path(sandbox.kubeconfig).read_text())["users"][0]["user"]
    status = {
        "clientCertificateData": base64.b64decode(user["client-certificate-data"]).decode(),
        "clientKeyData": base64.b64decode(user["client-key-data"]).decode(),
    }
    result = audit(exec_kubeconfig(sandbox, tmp_path, status))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["source"] == {"mode": "cluster", "target": None}
    assert {o["namespace"] for o in document["objects"]} >= {namespace}


def test_an_exec_plugin_with_a_token_acts_as_its_service_account(
    sandbox: Any, namespace: str, tmp_path: Path
) -> None:
    role = f"modelyard-audit-{namespace}"
    kubectl(sandbox, "create", "serviceaccount", "auditor", "-n", namespace)
    token = kubectl(sandbox, "create", "token", "auditor", "-n", namespace, "--duration=10m").strip()
    kubeconfig = exec_kubeconfig(sandbox, tmp_path, {"token": token})
    # the token is the ServiceAccount's: with no permission, the audit may read nothing
    refused = audit(kubeconfig)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip() == "modelyard audit: the cluster answered 403 Forbidden"
    kubectl(sandbox, "apply", "-f", "-", stdin=AUDIT_READS.replace("NAME", role))
    kubectl(
        sandbox,
        "create",
        "clusterrolebinding",
        role,
        f"--clusterrole={role}",
        f"--serviceaccount={namespace}:auditor",
    )
    try:
        allowed = audit(kubeconfig)
    finally:
        kubectl(sandbox, "delete", "clusterrolebinding,clusterrole", role, "--ignore-not-found")
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["source"]["mode"] == "cluster"
    assert token not in allowed.stdout + allowed.stderr + refused.stderr
