"""An async Kubernetes API client on httpx, built from the credentials kopf logged in with.

The controllers need a handful of verbs on a fixed set of kinds: server-side apply of the children they own,
reads, merge patches of their own status, TokenRequests and deletes. A static table of those kinds replaces
discovery, and one connection pool serves every reconcile.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import kopf

FIELD_MANAGER = "modelyard"
#: concurrent requests to the API server (kopf's watch streams are separate)
CONNECTIONS = 8
Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Resource:
    """Where a kind lives in the API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        parts = [prefix]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{quote(namespace)}")
        parts.append(self.plural)
        if name:
            parts.append(quote(name))
        if sub:
            parts.append(sub)
        return "/".join(parts)


_RESOURCES = [
    Resource("v1", "ConfigMap", "configmaps"),
    Resource("v1", "Secret", "secrets"),
    Resource("v1", "Service", "services"),
    Resource("v1", "ServiceAccount", "serviceaccounts"),
    Resource("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    Resource("v1", "Pod", "pods"),
    Resource("v1", "Event", "events"),
    Resource("v1", "Namespace", "namespaces", namespaced=False),
    Resource("apps/v1", "Deployment", "deployments"),
    Resource("batch/v1", "Job", "jobs"),
    Resource("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    Resource("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    Resource("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    Resource("inference.networking.k8s.io/v1", "InferencePool", "inferencepools"),
    Resource("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", "leaderworkersets"),
    Resource("modelyard.dev/v1alpha1", "ModelDeployment", "modeldeployments"),
    Resource("modelyard.dev/v1alpha1", "ProviderBinding", "providerbindings"),
    Resource("modelyard.dev/v1alpha1", "RoutePolicy", "routepolicies"),
    Resource("kopf.dev/v1", "KopfPeering", "kopfpeerings"),
    Resource("kopf.dev/v1", "ClusterKopfPeering", "clusterkopfpeerings", namespaced=False),
]
_BY_KIND = {(r.api_version, r.kind): r for r in _RESOURCES}


def resource_for(api_version: str, kind: str) -> Resource:
    try:
        return _BY_KIND[(api_version, kind)]
    except KeyError:
        raise ValueError(f"modelyard does not manage {kind} ({api_version})") from None


class ApiError(Exception):
    """A non-2xx answer from the API server, with its status code and the server's message."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}".strip())
        self.status = status
        self.reason = reason
        self.message = message


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
        raise ApiError(response.status_code, body.get("message", ""), body.get("reason", ""))
    except (json.JSONDecodeError, AttributeError):
        raise ApiError(response.status_code, response.text[:500]) from None


def _http_client(info: kopf.ConnectionInfo, timeout_s: float, connections: int) -> httpx.AsyncClient:
    headers = {"User-Agent": "modelyard", **info.as_http_headers()}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        base_url=info.server,
        verify=info.as_ssl_context(),
        headers=headers,
        timeout=httpx.Timeout(timeout_s),
        limits=limits,
    )


async def _close_later(client: httpx.AsyncClient, delay_s: float) -> None:
    try:
        await asyncio.sleep(delay_s)
    finally:  # cancelled when the operator stops: close it now
        await client.aclose()


class Kube:
    """The verbs the controllers use, on one pooled async HTTP client."""

    def __init__(
        self, client: httpx.AsyncClient, connections: int = CONNECTIONS, timeout_s: float = 30.0
    ) -> None:
        self._http = client
        self._connections = connections
        self._timeout_s = timeout_s
        # Requests beyond the pool's size queue here, in O(1), rather than in httpcore's pool (which rescans
        # every queued request against every connection whenever one frees up).
        self._slots = asyncio.Semaphore(connections)
        self._retiring: set[asyncio.Task[None]] = set()

    @classmethod
    def from_connection(
        cls, info: kopf.ConnectionInfo, timeout_s: float = 30.0, connections: int = CONNECTIONS
    ) -> Kube:
        """A client on kopf's credentials. Every connection of the pool is kept alive: a burst of reconciles
        waits for a free connection instead of opening (and TLS-handshaking) one per request."""
        return cls(_http_client(info, timeout_s, connections), connections, timeout_s)

    def relogin(self, info: kopf.ConnectionInfo) -> None:
        """Use new credentials from here on, in this same object: kopf hands each resource object a shallow
        copy of the operator's memo, so a pass (or a retry scheduled before the login) holds this object, not
        the memo's attribute. The old pool is closed once the requests already on it have had their time."""
        previous, self._http = self._http, _http_client(info, self._timeout_s, self._connections)
        task = asyncio.create_task(_close_later(previous, self._timeout_s))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def close(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with self._slots:
            return await self._http.request(method, path, **kwargs)

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None:
        response = await self._request("GET", resource_for(api_version, kind).path(namespace, name))
        if response.status_code == 404:
            return None
        _raise_for(response)
        result: Obj = response.json()
        return result

    async def list(
        self, api_version: str, kind: str, namespace: str | None, *, labels: str = ""
    ) -> list[Obj]:
        params = {"labelSelector": labels} if labels else {}
        response = await self._request("GET", resource_for(api_version, kind).path(namespace), params=params)
        _raise_for(response)
        items: list[Obj] = response.json().get("items", [])
        return items

    async def apply(self, obj: Obj, *, force: bool = True, field_manager: str = FIELD_MANAGER) -> Obj:
        """Server-side apply ``obj`` as ``field_manager`` (``modelyard`` unless a controller shares an object
        with another and must not remove the fields the other applies)."""
        meta = obj["metadata"]
        path = resource_for(obj["apiVersion"], obj["kind"]).path(meta.get("namespace"), meta["name"])
        response = await self._request(
            "PATCH",
            path,
            # UTF-8, not \u escapes: the API server reads an apply body as YAML, which refuses JSON's
            # surrogate-pair escapes for characters outside the basic plane (an emoji in a revision).
            content=json.dumps(obj, ensure_ascii=False).encode(),
            params={"fieldManager": field_manager, "force": "true" if force else "false"},
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        _raise_for(response)
        result: Obj = response.json()
        return result

    async def create(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        path = resource_for(obj["apiVersion"], obj["kind"]).path(meta.get("namespace"))
        response = await self._request("POST", path, json=obj, params={"fieldManager": FIELD_MANAGER})
        _raise_for(response)
        result: Obj = response.json()
        return result

    async def patch_status(self, api_version: str, kind: str, namespace: str, name: str, status: Obj) -> Obj:
        """JSON merge patch of the status subresource (keys not in ``status`` are left alone)."""
        path = resource_for(api_version, kind).path(namespace, name, "status")
        response = await self._request(
            "PATCH",
            path,
            content=json.dumps({"status": status}),
            headers={"Content-Type": "application/merge-patch+json"},
            params={"fieldManager": FIELD_MANAGER},
        )
        _raise_for(response)
        result: Obj = response.json()
        return result

    async def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        """Delete with background propagation; False when it was already gone."""
        response = await self._request(
            "DELETE",
            resource_for(api_version, kind).path(namespace, name),
            json={"propagationPolicy": "Background"},
        )
        if response.status_code == 404:
            return False
        _raise_for(response)
        return True

    async def create_token(
        self, namespace: str, service_account: str, audience: str, expiration_s: int = 600
    ) -> str:
        """A short-lived token for a ServiceAccount (TokenRequest), as a projected volume would hold."""
        path = resource_for("v1", "ServiceAccount").path(namespace, service_account, "token")
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": [audience], "expirationSeconds": expiration_s},
        }
        response = await self._request("POST", path, json=body)
        _raise_for(response)
        token: str = response.json()["status"]["token"]
        return token
