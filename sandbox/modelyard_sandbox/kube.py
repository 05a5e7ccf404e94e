"""Kubeconfig files and a minimal HTTPS client for the sandbox's own API calls.

The sandbox talks to the API server with plain httpx (mutual TLS with the admin certificate): it only
needs /readyz and the nodes collection, and importing the full ``kubernetes`` client costs more time
than the calls themselves.
"""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml

from modelyard_sandbox.pki import KeyPair

CLUSTER_NAME = "modelyard-sandbox"
POLL_S = 0.25


def write_kubeconfig(path: Path, api_url: str, ca_cert: Path, client: KeyPair | str, user: str) -> None:
    """Write a self-contained kubeconfig for ``user`` at ``path``: certificates embedded, and ``client`` is
    either a key pair or a bearer token (e.g. a ServiceAccount's, to act as that account)."""

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    credentials = (
        {"token": client}
        if isinstance(client, str)
        else {"client-certificate-data": b64(client.cert), "client-key-data": b64(client.key)}
    )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": CLUSTER_NAME, "cluster": {"server": api_url, "certificate-authority-data": b64(ca_cert)}}
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": user}}],
        "current-context": CLUSTER_NAME,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def api_client(api_url: str, ca_cert: Path, client: KeyPair, timeout_s: float = 10.0) -> httpx.Client:
    """An httpx client that authenticates to the API server with ``client``'s certificate."""
    context = ssl.create_default_context(cafile=str(ca_cert))
    context.load_cert_chain(str(client.cert), str(client.key))
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    return httpx.Client(base_url=api_url, verify=context, timeout=timeout_s, limits=limits)


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Call ``check()`` until it returns true; raise TimeoutError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(POLL_S)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def is_ready(client: httpx.Client) -> bool:
    """Whether the API server answers /readyz with ok."""
    try:
        return client.get("/readyz").text.strip() == "ok"
    except httpx.HTTPError:
        return False
