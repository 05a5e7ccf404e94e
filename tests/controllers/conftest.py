"""Fixtures for controller tests: modelyard's CRDs installed in the sandbox, and the operator run with
kopf's KopfRunner (in-process, against the real API server)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from kopf.testing import KopfRunner
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.fakes.azure import AzureFake

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "modelyard.dev", "v1alpha1"
PLANTED = "hf_PLANTED-SECRET-VALUE-7f3a9c"


def kubectl(cluster: Any, *args: str, stdin: str | None = None, check: bool = True) -> str:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    result = subprocess.run(
        ["kubectl", *args], input=stdin, capture_output=True, text=True, env=env, check=False, timeout=60
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
    return result.stdout


def install_crds(cluster: Any) -> None:
    """modelyard's CRDs from crds/, applied to ``cluster`` and Established."""
    kubectl(cluster, "apply", "--server-side", "-f", str(ROOT / "crds"))
    kubectl(
        cluster,
        "wait",
        "--for=condition=Established",
        "crd",
        "-l",
        "app.kubernetes.io/part-of=modelyard",
        "--timeout=60s",
    )


@pytest.fixture(scope="session")
def crds(sandbox: Any) -> None:
    """modelyard's CRDs in the session's sandbox."""
    install_crds(sandbox)


@pytest.fixture
def run_operator(sandbox: Any, crds: None, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """``with run_operator() as runner:`` runs the operator on every namespace until the block ends."""
    monkeypatch.setenv("KUBECONFIG", str(sandbox.kubeconfig))

    @contextmanager
    def start(*extra: str) -> Iterator[KopfRunner]:
        args = ["run", "--all-namespaces", "--standalone", "-m", "modelyard.controllers", *extra]
        with KopfRunner(args, timeout=60) as runner:
            yield runner
        assert runner.exit_code == 0, runner.output
        assert runner.exception is None, runner.output

    return start


@pytest.fixture
def custom(k8s: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(k8s)


def load_example(name: str) -> dict[str, Any]:
    result: dict[str, Any] = yaml.safe_load((ROOT / "examples" / name).read_text())
    return result


def load_examples() -> list[dict[str, Any]]:
    """Every object of every file in examples/ (a file may hold several documents)."""
    return [
        doc
        for path in sorted((ROOT / "examples").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def create(custom: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    plural = body["kind"].lower() + ("s" if not body["kind"].endswith("y") else "")
    plural = {"routepolicy": "routepolicies"}.get(body["kind"].lower(), plural)
    result: dict[str, Any] = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
    return result


def get_md(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "modeldeployments", name
    )
    return result


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions", []):
        if cond["type"] == type_:
            result: dict[str, Any] = cond
            return result
    return None


def api_error(call: Callable[[], Any]) -> ApiException:
    with pytest.raises(ApiException) as info:
        call()
    return info.value


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)


# --- clouds: AWS as moto's real server, Azure as a local HTTPS fake of Entra ID and Resource Manager ----
@pytest.fixture(scope="session")
def azure() -> Iterator[AzureFake]:
    fake = AzureFake(Path(tempfile.mkdtemp(prefix="azure-fake-")))
    yield fake
    fake.stop()


@pytest.fixture
def clouds(
    moto_url: str, azure: AzureFake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Callable[[str, str], None]:
    """The operator's environment for both clouds; returns ``private(host, address)`` to add a DNS answer."""
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    env = {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",  # the operator's own identity, as moto wants one
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AZURE_AUTHORITY_HOST": azure.url,
        "REQUESTS_CA_BUNDLE": str(azure.ca_file),  # azure-identity (requests)
        "SSL_CERT_FILE": str(azure.ca_file),  # httpx
        "MODELYARD_AZURE_RESOURCE_MANAGER_URL": azure.url,
        "MODELYARD_HOSTS_FILE": str(hosts),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def private(host: str, address: str) -> None:
        with hosts.open("a") as handle:
            handle.write(f"{address} {host}\n")

    return private


def warning(k8s: client.ApiClient, namespace: str, name: str, reason: str) -> Callable[[], bool]:
    """A check for ``wait_for``: ``name`` has a Warning Event with ``reason``. kopf posts Events from a
    queue, so a test waits for one while the operator still runs instead of reading them after it stops."""

    def posted() -> bool:
        events = client.CoreV1Api(k8s).list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name}"
        )
        return any(e.reason == reason and e.type == "Warning" for e in events.items)

    return posted


def operator_writes(sandbox: Any, since: int, namespace: str) -> list[str]:
    """Write requests into ``namespace`` by the admin identity the tests run the operator with."""
    found = []
    with (sandbox.logs / "audit.log").open() as log:
        log.seek(since)
        for line in log:
            entry = json.loads(line)
            ref = entry.get("objectRef", {})
            if entry["user"]["username"] == "kubernetes-admin" and ref.get("namespace") == namespace:
                found.append(f"{entry['verb']} {ref.get('resource')}/{ref.get('name')}")
    return found
