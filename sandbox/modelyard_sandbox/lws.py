"""The LeaderWorkerSet controller in the sandbox: built from its Go module by hack/sandbox/lws/build.sh and
run as a host process next to the control plane, with its CRD and its admission webhooks.

The API server really calls the webhooks (LeaderWorkerSet defaulting and validation; the pod webhook that
gives every pod of a group its labels and its ``LWS_LEADER_ADDRESS``/``LWS_WORKER_INDEX`` environment): the
webhook configurations are the module's own (``config/webhook``, with its kustomize patches applied), each
pointing at ``https://127.0.0.1:<port>/<path>`` instead of an in-cluster Service, with the sandbox CA as the
``caBundle``. The controller's internal certificate management is off (``internalCertManagement.enable:
false``): it serves a certificate for 127.0.0.1 that :meth:`Pki.issue_serving` signs with the same CA.
"""

from __future__ import annotations

import base64
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from modelyard.errors import UserError
from modelyard_sandbox import process
from modelyard_sandbox.binaries import cache_dir
from modelyard_sandbox.kube import wait_until, write_kubeconfig
from modelyard_sandbox.pki import Pki

PROCESS = "lws-controller"
BINARY = "lws-manager"
CRD_FILE = "leaderworkerset.yaml"
CRD_NAME = "leaderworkersets.leaderworkerset.x-k8s.io"
START_TIMEOUT_S = 60.0
#: Names the controller's files and webhook configurations get in the sandbox.
MUTATING = "lws-mutating-webhook-configuration"
VALIDATING = "lws-validating-webhook-configuration"


def find_lws_dir() -> Path:
    """``MODELYARD_LWS_BIN``, else the newest complete build under the cache (``make sandbox-bin``)."""
    env = os.environ.get("MODELYARD_LWS_BIN")
    if env:
        directory = Path(env)
    else:
        builds = sorted(
            (d for d in (cache_dir() / "bin").glob("lws-v*") if (d / ".complete").is_file()),
            key=lambda d: d.stat().st_mtime,
        )
        if not builds:
            raise UserError(
                "the LeaderWorkerSet controller is not built; run `make sandbox-bin` "
                "(hack/sandbox/lws/build.sh)"
            )
        directory = builds[-1]
    if not (directory / BINARY).is_file():
        raise UserError(f"{BINARY} not found in {directory}; run hack/sandbox/lws/build.sh")
    return directory.resolve()


@dataclass(frozen=True, slots=True)
class LwsLayout:
    """Where the controller's files are, and the loopback ports it serves on."""

    directory: Path  #: the sandbox directory
    lws_dir: Path  #: the build (binary, CRD, webhook manifests)
    webhook_port: int
    health_port: int

    @property
    def own(self) -> Path:
        return self.directory / "lws"

    @property
    def config(self) -> Path:
        return self.own / "config.yaml"

    @property
    def kubeconfig(self) -> Path:
        return self.own / "kubeconfig"

    @property
    def cert_dir(self) -> Path:
        return self.own / "certs"

    def argv(self) -> list[str]:
        return [
            str(self.lws_dir / BINARY),
            f"--config={self.config}",
            f"--kubeconfig={self.kubeconfig}",
            "--zap-log-level=info",
        ]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def prepare(directory: Path, api_url: str, pki: Pki) -> LwsLayout:
    """Write the controller's configuration, kubeconfig and serving certificate; return its layout."""
    webhook, health = free_ports(2)
    layout = LwsLayout(directory, find_lws_dir(), webhook, health)
    layout.cert_dir.mkdir(parents=True, exist_ok=True)
    (layout.own / "binary").write_text(str(layout.lws_dir / BINARY))
    # controller-runtime's webhook server reads tls.crt and tls.key from certDir
    pki.issue_serving(layout.cert_dir / "tls", "lws-webhook", ips=("127.0.0.1",))
    write_kubeconfig(layout.kubeconfig, api_url, pki.ca.cert, pki.client(PROCESS), PROCESS)
    config = {
        "apiVersion": "config.lws.x-k8s.io/v1alpha1",
        "kind": "Configuration",
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "webhook": {"host": "127.0.0.1", "port": webhook, "certDir": str(layout.cert_dir)},
        "metrics": {"bindAddress": "0"},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"},
        "clientConnection": {"qps": 100, "burst": 200},
    }
    layout.config.write_text(yaml.safe_dump(config, sort_keys=False))
    return layout


def webhook_configurations(layout: LwsLayout, ca_bundle: bytes) -> list[dict[str, Any]]:
    """The module's webhook configurations with its kustomize patches applied (the pod webhooks select only
    pods of a LeaderWorkerSet), each webhook called at ``https://127.0.0.1:<port><path>``."""
    documents = [d for d in yaml.safe_load_all((layout.lws_dir / "webhook-manifests.yaml").read_text()) if d]
    patches = {
        "MutatingWebhookConfiguration": "webhook-mutating-patch.yaml",
        "ValidatingWebhookConfiguration": "webhook-validating-patch.yaml",
    }
    names = {"MutatingWebhookConfiguration": MUTATING, "ValidatingWebhookConfiguration": VALIDATING}
    out = []
    for document in documents:
        kind = document["kind"]
        for patch in yaml.safe_load((layout.lws_dir / patches[kind]).read_text()):
            assert patch["op"] == "replace" and patch["path"].startswith("/webhooks/"), patch
            document["webhooks"][int(patch["path"].rsplit("/", 1)[1])] = patch["value"]
        for webhook in document["webhooks"]:
            path = webhook["clientConfig"]["service"]["path"]
            webhook["clientConfig"] = {
                "url": f"https://127.0.0.1:{layout.webhook_port}{path}",
                "caBundle": base64.b64encode(ca_bundle).decode(),
            }
            webhook["timeoutSeconds"] = 10
        document["metadata"] = {"name": names[kind]}
        out.append(document)
    return out


def _apply(client: httpx.Client, path: str, document: dict[str, Any]) -> None:
    name = document["metadata"]["name"]
    response = client.patch(
        f"{path}/{name}",
        params={"fieldManager": "modelyard-sandbox", "force": "true"},
        headers={"Content-Type": "application/apply-patch+yaml"},
        content=yaml.safe_dump(document),
    )
    response.raise_for_status()


def install_crd(client: httpx.Client, layout: LwsLayout) -> None:
    crd = yaml.safe_load((layout.lws_dir / CRD_FILE).read_text())
    _apply(client, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)

    def established() -> bool:
        got = client.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}").json()
        conditions = (got.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_until(established, 30, "the LeaderWorkerSet CRD to be established")


def install_webhooks(client: httpx.Client, layout: LwsLayout, ca_bundle: bytes) -> None:
    for document in webhook_configurations(layout, ca_bundle):
        kind = document["kind"].lower() + "s"
        _apply(client, f"/apis/admissionregistration.k8s.io/v1/{kind}", document)


def _probe_set() -> dict[str, Any]:
    """A LeaderWorkerSet that only exists in a dry run: creating it calls both LWS webhooks."""
    pod = {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": "sandbox-webhook-probe", "namespace": "default"},
        "spec": {"leaderWorkerTemplate": {"size": 2, "workerTemplate": {"spec": pod}}},
    }


def webhooks_answer(client: httpx.Client) -> bool:
    """Whether a dry-run create of a LeaderWorkerSet passes the webhooks (defaulting fills
    ``startupPolicy``)."""
    try:
        response = client.post(
            "/apis/leaderworkerset.x-k8s.io/v1/namespaces/default/leaderworkersets",
            params={"dryRun": "All"},
            json=_probe_set(),
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 201 and bool(response.json()["spec"].get("startupPolicy"))


def start(directory: Path, api_url: str, pki: Pki, client: httpx.Client) -> float:
    """Install the CRD, start the controller, register its webhooks and wait until the API server's calls to
    them succeed. Returns the seconds it took."""
    began = time.monotonic()
    layout = prepare(directory, api_url, pki)
    install_crd(client, layout)
    process.start(PROCESS, layout.argv(), directory)
    binary = layout.lws_dir / BINARY

    def healthy() -> bool:
        pid = process.read_pid(directory, PROCESS)
        if pid is None or not process.is_running(pid, binary):
            log = directory / "logs" / f"{PROCESS}.log"
            raise UserError(f"{PROCESS} exited during start-up (log: {log})")
        try:
            return httpx.get(f"http://127.0.0.1:{layout.health_port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, START_TIMEOUT_S, f"{PROCESS} /readyz")
    install_webhooks(client, layout, pki.ca.cert.read_bytes())
    wait_until(lambda: webhooks_answer(client), START_TIMEOUT_S, "the LeaderWorkerSet webhooks to answer")
    return time.monotonic() - began


def binary_path(directory: Path) -> Path | None:
    """The controller binary the sandbox in ``directory`` started, if it started one."""
    try:
        return Path((directory / "lws" / "binary").read_text().strip())
    except FileNotFoundError:
        return None
