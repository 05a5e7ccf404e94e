"""RoutePolicy controller: resolve each route's backends from the namespace's ModelDeployments and
ProviderBindings (kopf indexes: no list call per reconcile), compile the eligible ones into the gateway,
and tell which backends were left out and why.

A route with no eligible backend is left out of the gateway (fail closed) and makes the policy
``Compliant=False``. Any change of a ModelDeployment or ProviderBinding (its status included: a binding
losing ``PrivateConnectivityVerified``) re-reconciles the policies of its namespace that reference it.
Every trigger runs the same pass under a per-object lock, retried with back-off when the API server fails
transiently (common.reconcile_guarded).
"""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
from typing import Any, TypeVar

import kopf
from pydantic import ValidationError

from modelyard.api import GROUP, VERSION, ModelDeployment, ProviderBinding, RoutePolicy
from modelyard.api.common import Finding
from modelyard.api.conditions import Cond
from modelyard.api.route_policy import RoutePolicyStatus, RouteStatus
from modelyard.audit.route_policy import route_policy_findings
from modelyard.config import Settings
from modelyard.kube import ApiError, Kube, Unreachable
from modelyard.render.common import MANAGED_BY, MANAGED_BY_LABEL, PART_OF, PART_OF_LABEL, owner_label
from modelyard.render.gateway import (
    MASTER_KEY_SECRET_KEY,
    gateway_endpoint,
    gateway_name,
    master_key_secret,
    render_gateway,
)
from modelyard.render.routing import NOT_FOUND, resolve_routes
from modelyard.render.targets import ResolvedRoute

from .common import ObjectLocks, Owner, reconcile_guarded
from .gateway_account import apply_service_account, namespace_wiring, policy_field_manager
from .metrics import instrumented
from .runtime import KOPF_STATE

API_VERSION = f"{GROUP}/{VERSION}"
KIND, PLURAL = RoutePolicy.KIND, RoutePolicy.PLURAL
OWNER_LABEL = owner_label(KIND)
BACKENDS_RESOLVED, COMPLIANT, GATEWAY_READY = "BackendsResolved", "Compliant", "GatewayReady"

T = TypeVar("T", ModelDeployment, ProviderBinding)
_locks = ObjectLocks()


# --- indexes: the namespace's backends and policies, kept by kopf from its watches ---------------
@kopf.index(GROUP, VERSION, "modeldeployments")
def model_deployments_by_namespace(body: kopf.Body, namespace: str | None, **_: Any) -> dict[Any, Any]:
    return {namespace: indexed(body)}


@kopf.index(GROUP, VERSION, "providerbindings")
def provider_bindings_by_namespace(body: kopf.Body, namespace: str | None, **_: Any) -> dict[Any, Any]:
    return {namespace: indexed(body)}


#: what a backend's index entry keeps of its metadata (the models parse it; bindings merge oldest first)
_INDEXED_METADATA = (
    *("name", "namespace", "uid", "generation", "labels"),
    *("creationTimestamp", "deletionTimestamp"),
)
#: an annotation kubectl apply leaves: a second copy of the whole object
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def indexed(body: kopf.Body) -> dict[str, Any]:
    """A copy of a backend with what routing reads: spec, status (not kopf's) and the identifying
    metadata, not its managedFields or kubectl's last-applied copy (most of an object's bytes, held for
    every backend of the cluster)."""
    meta = body.get("metadata") or {}
    slim = {key: copy.deepcopy(meta[key]) for key in _INDEXED_METADATA if key in meta}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != _LAST_APPLIED}
    if annotations:
        slim["annotations"] = annotations
    status = {k: copy.deepcopy(v) for k, v in (body.get("status") or {}).items() if k != KOPF_STATE}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": slim,
        "spec": copy.deepcopy(dict(body.get("spec") or {})),
        "status": status,
    }


@kopf.index(GROUP, VERSION, PLURAL)
def route_policies_by_namespace(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[Any, Any]:
    references = {
        b.get("modelDeploymentRef") or b.get("providerBindingRef")
        for r in body.get("spec", {}).get("routes", [])
        for b in r.get("backends", [])
    }
    return {namespace: (name, frozenset(references))}


# --- handlers ----------------------------------------------------------------------------------
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
async def on_route_policy(meta: kopf.Meta, memo: kopf.Memo, retry: int, **kwargs: Any) -> None:
    namespace, name = str(meta["namespace"]), str(meta["name"])
    await reconcile(memo, namespace, name, _Backends.of(kwargs), strict=True, retry=retry)


@kopf.on.event(GROUP, VERSION, "modeldeployments")
@kopf.on.event(GROUP, VERSION, "providerbindings")
async def on_backend(body: kopf.Body, event: kopf.RawEvent, memo: kopf.Memo, **kwargs: Any) -> None:
    """A backend changed (spec, status or existence): re-resolve the policies that reference it. A change
    that cannot matter to routing (a re-verification that only moved ``lastVerifiedTime``, kopf's own
    progress) is skipped."""
    namespace, name = body.get("metadata", {}).get("namespace"), body.get("metadata", {}).get("name")
    index: kopf.Index[str, Any] = kwargs["route_policies_by_namespace"]
    policies = [policy for policy, references in list(index.get(namespace, [])) if name in references]
    seen: dict[Any, str] = memo.setdefault("backend_fingerprints", {})
    key = (body.get("kind"), namespace, name)
    if not policies or event.get("type") == "DELETED":
        seen.pop(key, None)
    else:
        fingerprint = _routing_fingerprint(body)
        if seen.get(key) == fingerprint:
            return
        seen[key] = fingerprint
    backends = _Backends.of(kwargs)
    for policy in policies:
        _queue(memo, namespace, policy, backends)


@kopf.on.event("apps", "v1", "deployments", labels={OWNER_LABEL: kopf.PRESENT})
async def on_gateway(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """The gateway Deployment changed: GatewayReady follows it."""
    meta = body.get("metadata", {})
    owner = meta.get("labels", {}).get(OWNER_LABEL)
    _queue(memo, meta["namespace"], owner, _Backends.of(kwargs))


def _queue(memo: kopf.Memo, namespace: str, name: str, backends: _Backends) -> None:
    """A pass of the policy on the work queue (common.WorkQueue): the watch's handler returns at once."""
    memo.work.add((KIND, namespace, name), lambda: reconcile(memo, namespace, name, backends, strict=False))


def _routing_fingerprint(body: kopf.Body) -> str:
    status = {k: v for k, v in (body.get("status") or {}).items() if k not in _NOT_ROUTING}
    relevant = {"labels": body.get("metadata", {}).get("labels"), "spec": body.get("spec"), "status": status}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()


#: status fields routing never reads
_NOT_ROUTING = frozenset({"kopf", "lastVerifiedTime"})


class _Backends:
    """The namespace's ModelDeployments and ProviderBindings, parsed from the indexes (invalid ones are
    left out: their own controllers report them)."""

    def __init__(self, mds: kopf.Index[str, Any], bindings: kopf.Index[str, Any]) -> None:
        self._mds, self._bindings = mds, bindings

    @classmethod
    def of(cls, kwargs: dict[str, Any]) -> _Backends:
        return cls(kwargs["model_deployments_by_namespace"], kwargs["provider_bindings_by_namespace"])

    def model_deployments(self, namespace: str) -> dict[str, ModelDeployment]:
        return {md.metadata.name: md for md in _parse(ModelDeployment, self._mds.get(namespace, []))}

    def binding_bodies(self, namespace: str) -> list[dict[str, Any]]:
        return list(self._bindings.get(namespace, []))

    def bindings(self, namespace: str) -> dict[str, ProviderBinding]:
        return {b.metadata.name: b for b in _parse(ProviderBinding, self.binding_bodies(namespace))}


def _parse(cls: type[T], bodies: Any) -> list[T]:
    parsed = []
    for body in bodies:
        if body.get("metadata", {}).get("deletionTimestamp"):
            continue
        try:
            parsed.append(cls.model_validate(body))
        except ValidationError:
            continue
    return parsed


@instrumented("RoutePolicy")
async def reconcile(
    memo: kopf.Memo, namespace: str, name: str, backends: _Backends, *, strict: bool, retry: int = 0
) -> None:
    async def one_pass() -> _Reconcile | None:
        current = await memo.kube.get(API_VERSION, KIND, namespace, name)
        if current is None or current["metadata"].get("deletionTimestamp"):
            return None
        owner = _Reconcile(memo.kube, memo.settings, current, backends)
        await owner.reconcile(strict=strict)
        return owner

    async def again() -> None:
        await reconcile(memo, namespace, name, backends, strict=False)

    key = (KIND, namespace, name)
    await reconcile_guarded(
        memo.retries, _locks, key, one_pass, strict=strict, retry=retry, again=again, passes=memo.passes
    )


class _Reconcile(Owner[RoutePolicy]):
    model = RoutePolicy

    def __init__(self, kube: Kube, settings: Settings, body: dict[str, Any], backends: _Backends) -> None:
        super().__init__(kube, body, quiet_reasons={"Progressing"})
        self.settings, self.backends = settings, backends
        self.findings: list[Finding] | None = None  # set once the spec parses

    async def invalid(self, ready: Cond) -> None:
        await self._finish([ready], routes=None)

    async def run(self, policy: RoutePolicy, *, strict: bool) -> None:
        mds = self.backends.model_deployments(self.namespace)
        bindings = self.backends.bindings(self.namespace)
        self.findings = route_policy_findings(policy.spec, self.settings.policy, mds, bindings)
        routes, statuses = resolve_routes(
            policy, self.settings.policy, mds, bindings, namespace=self.namespace
        )
        resolved, compliant = _resolution_conditions(routes, statuses)
        wiring = namespace_wiring(self.backends.binding_bodies(self.namespace))
        if not any(r.backends for r in routes):  # nothing may be served: run no gateway pods at all
            policy = policy.model_copy(deep=True)
            policy.spec.gateway.replicas = 0
        objects = render_gateway(
            policy, routes, wiring, namespace=self.namespace, image=self.settings.litellm_image
        )
        account, owned = objects[0], objects[1:]
        failed = (
            await self._ensure_master_key()
            or await self._ensure_service_account(account)
            or await self.apply_children(owned, GATEWAY_READY)
        )
        gateway = failed or await self._gateway_condition(policy.spec.gateway.replicas)
        await self._finish([resolved, compliant, gateway], routes=statuses)

    async def _ensure_master_key(self) -> Cond | None:
        """The gateway's master key: generated once into a Secret the policy owns, never read back."""
        name = master_key_secret(self.name)
        try:
            if await self.kube.get("v1", "Secret", self.namespace, name) is not None:
                return None
            secret = {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {
                    "name": name,
                    "namespace": self.namespace,
                    "labels": {PART_OF_LABEL: PART_OF, MANAGED_BY_LABEL: MANAGED_BY},
                },
                "stringData": {MASTER_KEY_SECRET_KEY: f"sk-{secrets.token_urlsafe(32)}"},
            }
            kopf.append_owner_reference(secret, owner=self.kopf_body)
            await self.kube.create(secret)
        except ApiError as exc:
            if exc.status != 409:  # 409: another pass created it first
                return self.failed(GATEWAY_READY, "SecretFailed", f"Secret {name}", exc)
        except Unreachable as exc:
            return self.failed(GATEWAY_READY, "SecretFailed", f"Secret {name}", exc)
        return None

    async def _ensure_service_account(self, account: dict[str, Any]) -> Cond | None:
        """The gateway ServiceAccount, shared by the namespace's policies and bindings (gateway_account.py):
        applied as this policy's own field manager with only its own non-controller owner reference."""
        kopf.append_owner_reference(account, owner=self.kopf_body, controller=False)
        try:
            await apply_service_account(self.kube, account, policy_field_manager(self.name))
        except (ApiError, Unreachable) as exc:
            name = account["metadata"]["name"]
            return self.failed(GATEWAY_READY, "ServiceAccountFailed", f"ServiceAccount {name}", exc)
        return None

    async def _gateway_condition(self, replicas: int) -> Cond:
        if replicas == 0:
            return Cond.false(GATEWAY_READY, "NoServableRoute", "no route has an eligible backend")
        deployment = self.children.get(("Deployment", gateway_name(self.name)), {})
        status = deployment.get("status") or {}
        ready, updated = status.get("readyReplicas", 0), status.get("updatedReplicas", 0)
        current = status.get("observedGeneration") == deployment.get("metadata", {}).get("generation")
        if current and ready >= replicas and updated >= replicas:
            return Cond.true(
                GATEWAY_READY, "MinimumReplicasAvailable", f"{ready}/{replicas} gateway replicas ready"
            )
        return Cond.false(GATEWAY_READY, "Progressing", f"{ready}/{replicas} gateway replicas ready")

    async def _finish(self, conds: list[Cond], *, routes: list[RouteStatus] | None) -> None:
        status = RoutePolicyStatus(endpoint=gateway_endpoint(self.name, self.namespace))
        if routes is not None:
            status.routes = routes
            status.served = ",".join(r.model for r in routes if r.eligible) or "none"
        if self.findings is not None:
            status.findings = self.findings
        await self.write_status(conds, status)


def _resolution_conditions(routes: list[ResolvedRoute], statuses: list[RouteStatus]) -> tuple[Cond, Cond]:
    missing = sorted({r.backend for s in statuses for r in s.rejected if r.reason == NOT_FOUND})
    resolved = (
        Cond.false(BACKENDS_RESOLVED, "BackendNotFound", "not found: " + ", ".join(missing))
        if missing
        else Cond.true(BACKENDS_RESOLVED, "Resolved", "every referenced backend exists")
    )
    closed = [r.route.model for r in routes if not r.backends]
    if closed:
        message = f"left out of the gateway, no eligible backend: {', '.join(closed)} (see status.routes)"
        return resolved, Cond.false(COMPLIANT, "NoEligibleBackend", message)
    return resolved, Cond.true(COMPLIANT, "Compliant", "every route has an eligible backend")
