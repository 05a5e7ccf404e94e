"""Garbage collection, RBAC with ServiceAccount tokens, and the real kubectl against the sandbox."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.sandbox


def _configmap(name: str, owner: client.V1ConfigMap | None = None) -> client.V1ConfigMap:
    refs = None
    if owner is not None:
        refs = [
            client.V1OwnerReference(
                api_version="v1", kind="ConfigMap", name=owner.metadata.name, uid=owner.metadata.uid
            )
        ]
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, owner_references=refs), data={"k": "v"})


def _exists(read: Callable[[], Any]) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_deleting_owner_garbage_collects_children(
    k8s: client.ApiClient, namespace: str, wait_for: Callable[..., Any]
) -> None:
    core = client.CoreV1Api(k8s)
    owner = core.create_namespaced_config_map(namespace, _configmap("owner"))
    core.create_namespaced_config_map(namespace, _configmap("child", owner=owner))

    core.delete_namespaced_config_map("owner", namespace)

    wait_for(
        lambda: not _exists(lambda: core.read_namespaced_config_map("child", namespace)),
        30,
        "the garbage collector to delete ConfigMap child",
    )


def _token(k8s: client.ApiClient, namespace: str, service_account: str) -> str:
    """A short-lived token for ``service_account`` minted through the TokenRequest API."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    response = client.CoreV1Api(k8s).create_namespaced_service_account_token(
        service_account, namespace, request
    )
    return str(response.status.token)


def test_service_account_gets_403_outside_its_role(
    k8s: client.ApiClient, sandbox: Any, namespace: str
) -> None:
    core, rbac = client.CoreV1Api(k8s), client.RbacAuthorizationV1Api(k8s)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="narrow"))
    )
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="read-configmaps"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["get", "list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="narrow-reads-configmaps"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="read-configmaps"
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="narrow", namespace=namespace)],
        ),
    )
    token = _token(k8s, namespace, "narrow")
    ca = ssl.create_default_context(cafile=k8s.configuration.ssl_ca_cert)
    with httpx.Client(
        base_url=sandbox.api_url, verify=ca, headers={"Authorization": f"Bearer {token}"}
    ) as api:
        assert api.get(f"/api/v1/namespaces/{namespace}/configmaps").status_code == 200
        denied = api.get(f"/api/v1/namespaces/{namespace}/secrets")
        create = api.post(f"/api/v1/namespaces/{namespace}/configmaps", json=_configmap_json("nope"))

    assert denied.status_code == 403
    user = f"system:serviceaccount:{namespace}:narrow"
    assert f'User "{user}" cannot list resource "secrets"' in denied.json()["message"]
    assert create.status_code == 403
    assert 'cannot create resource "configmaps"' in create.json()["message"]


def _configmap_json(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}


def test_kubectl_from_make_tools_lists_nodes(sandbox: Any) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl not found on PATH; run `make tools`")
    result = subprocess.run(
        [kubectl, "--kubeconfig", str(sandbox.kubeconfig), "get", "nodes", "-o", "name"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "node/" in result.stdout


def test_claim_binds_to_a_pool_volume(
    k8s: client.ApiClient, namespace: str, wait_for: Callable[..., Any]
) -> None:
    core = client.CoreV1Api(k8s)
    claim = client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name="weights"),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteMany"],
            resources=client.V1VolumeResourceRequirements(requests={"storage": "200Gi"}),
        ),
    )
    core.create_namespaced_persistent_volume_claim(namespace, claim)
    bound = wait_for(
        lambda: core.read_namespaced_persistent_volume_claim("weights", namespace).status.phase == "Bound",
        30,
        "the claim to bind",
    )
    assert bound
    volume = core.read_namespaced_persistent_volume_claim("weights", namespace).spec.volume_name
    assert volume.startswith("sandbox-pv-")
