"""``modelyard render``: every child the operator would create for a set of manifests, computed offline.

Offline there is no cluster to ask whether a backend is Ready or its private link verified, so routes are
resolved as the operator would resolve them once every referenced backend in the manifests is Ready and
verified; the data-classification and cluster-policy rules still apply, and a route left with no eligible
backend is left out of the gateway, as it would be in the cluster.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from modelyard.api import ModelDeployment, ProviderBinding, RoutePolicy
from modelyard.api.policy import ClusterPolicy
from modelyard.errors import Infeasible, UserError
from modelyard.manifests import Manifest
from modelyard.planning.spec import plan_deployment

from .common import Manifest as Object
from .gateway import render_gateway
from .identity import identity_wiring, merge_wiring, service_account
from .inference_pool import render_inference_pool
from .model_deployment import PORT, SERVER, render_model_deployment
from .routing import resolve_routes


def render_manifests(manifests: Sequence[Manifest], policy: ClusterPolicy | None = None) -> list[Object]:
    """The children of every object in ``manifests``: ModelDeployments in input order, then per namespace
    the gateway of each RoutePolicy (or, with bindings but no RoutePolicy, the gateway ServiceAccount)."""
    policy = policy or ClusterPolicy()
    objects: list[Object] = []
    namespaces: dict[str, list[Manifest]] = defaultdict(list)
    for manifest in manifests:
        namespaces[manifest.obj.metadata.namespace or "default"].append(manifest)
        if isinstance(manifest.obj, ModelDeployment):
            objects += _render_model_deployment(manifest, manifest.obj)
    for namespace, members in namespaces.items():
        objects += _render_namespace_gateway(namespace, members, policy)
    return objects


def _where(manifest: Manifest) -> str:
    return f"{manifest.path}:{manifest.line}: {manifest.ref}"


def _render_model_deployment(manifest: Manifest, md: ModelDeployment) -> list[Object]:
    try:
        plan = plan_deployment(md.spec)
    except (UserError, Infeasible) as exc:
        raise type(exc)(f"{_where(manifest)}: {exc}") from None
    children = render_model_deployment(md, plan).all()
    if md.spec.inference_pool.enabled:
        kind = ModelDeployment.KIND
        children.append(render_inference_pool(md, owner_kind=kind, component=SERVER, port=PORT))
    return children


def _render_namespace_gateway(namespace: str, members: list[Manifest], policy: ClusterPolicy) -> list[Object]:
    mds = {m.obj.metadata.name: m.obj for m in members if isinstance(m.obj, ModelDeployment)}
    bindings = {m.obj.metadata.name: m.obj for m in members if isinstance(m.obj, ProviderBinding)}
    try:
        wiring = merge_wiring(identity_wiring(b) for b in bindings.values())
    except ValueError as exc:
        raise UserError(f"namespace {namespace}: {exc}") from None
    policies = [m for m in members if isinstance(m.obj, RoutePolicy)]
    if not policies:
        return [service_account(wiring, namespace)] if bindings else []
    objects: list[Object] = []
    for manifest in policies:
        assert isinstance(manifest.obj, RoutePolicy)
        routes, _ = resolve_routes(
            manifest.obj, policy, mds, bindings, namespace=namespace, assume_verified=True
        )
        objects += render_gateway(manifest.obj, routes, wiring, namespace=namespace)
    return objects
