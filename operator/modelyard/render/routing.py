"""Which backends may serve a route: data classification and cluster policy, decided before any request.

Pure: the controller hands over the ModelDeployments and ProviderBindings of the namespace (from its
indexes); :func:`backend_facts` reads what matters from their spec and status, :func:`evaluate_route` gives
the eligible backends in priority order and a reason for every rejected one, and :func:`resolve_routes` does
both for a whole RoutePolicy. A route whose every backend is rejected is left out of the gateway: it fails
closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from modelyard.api.common import Condition, ConditionStatus, DataClassification
from modelyard.api.model_deployment import ModelDeployment
from modelyard.api.policy import ClusterPolicy
from modelyard.api.provider_binding import ProviderBinding
from modelyard.api.route_policy import Backend, RejectedBackend, Route, RoutePolicy, RouteStatus

from .targets import ResolvedBackend, ResolvedRoute, binding_models

NOT_FOUND = "not found"
NOT_READY = "not Ready"
STATIC_NOT_ALLOWED = "static credentials not allowed by cluster policy"
PUBLIC_API_CAP = "publicAPIMaxClassification"


@dataclass(frozen=True, slots=True)
class BackendFacts:
    """What the controller knows about one referenced backend that exists."""

    ready: bool
    data_classification: DataClassification
    #: A ModelDeployment in the cluster; the provider fields below then do not apply.
    self_hosted: bool = False
    static_credentials: bool = False
    private_connectivity_verified: bool = False
    #: The provider's region, when known (Bedrock: spec; Azure: from the account, in status).
    region: str | None = None
    #: The route's Bedrock model id or Azure deployment is listed in the binding.
    model_listed: bool = True
    #: A public model API (provider publicAPI): capped by the policy's publicAPIMaxClassification, its key not
    #: gated by allowStaticCredentials.
    public_api: bool = False


@dataclass(frozen=True, slots=True)
class Eligibility:
    """The outcome for one route."""

    eligible: tuple[Backend, ...]
    rejected: tuple[tuple[str, str], ...]  #: (Backend.key, reason)


def evaluate_route(route: Route, policy: ClusterPolicy, facts: Mapping[str, BackendFacts]) -> Eligibility:
    """Split the route's backends into eligible (in priority order) and rejected with reasons.

    ``facts`` is keyed by :attr:`Backend.key`; a backend missing from it does not exist. A rejected
    backend's reasons are joined with "; "."""
    eligible: list[Backend] = []
    rejected: list[tuple[str, str]] = []
    for backend in route.backends:
        reasons = rejection_reasons(route, backend, facts.get(backend.key), policy)
        if reasons:
            rejected.append((backend.key, "; ".join(reasons)))
        else:
            eligible.append(backend)
    return Eligibility(eligible=tuple(eligible), rejected=tuple(rejected))


def rejection_reasons(
    route: Route, backend: Backend, facts: BackendFacts | None, policy: ClusterPolicy
) -> list[str]:
    """Every reason ``backend`` may not serve ``route``; empty when it is eligible."""
    if facts is None:
        return [NOT_FOUND]
    reasons = [] if facts.ready else [NOT_READY]
    if not facts.data_classification.allows(route.data_classification):
        reasons.append(f"cleared for {facts.data_classification}, route carries {route.data_classification}")
    if not facts.self_hosted:
        reasons.extend(_provider_reasons(route, backend, facts, policy))
    return reasons


def _provider_reasons(
    route: Route, backend: Backend, facts: BackendFacts, policy: ClusterPolicy
) -> list[str]:
    reasons: list[str] = []
    if not facts.model_listed:
        reasons.append(f"model {backend.model} not listed in the binding")
    needs_private = route.data_classification.rank >= policy.require_private_connectivity_from.rank
    threshold = policy.require_private_connectivity_from
    cap = policy.public_api_max_classification
    if facts.public_api and route.data_classification.rank > cap.rank:
        reasons.append(
            f"public model API: cluster policy {PUBLIC_API_CAP} is {cap}, route carries "
            f"{route.data_classification}"
        )
    if facts.static_credentials and not policy.allow_static_credentials and not facts.public_api:
        reasons.append(STATIC_NOT_ALLOWED)
    elif facts.static_credentials and needs_private:
        reasons.append(
            f"static credentials (route carries {route.data_classification}, cluster policy requires "
            f"keyless identity from {threshold})"
        )
    if needs_private and not facts.private_connectivity_verified:
        reasons.append(
            f"private connectivity not verified (route carries {route.data_classification}, cluster policy "
            f"requires private connectivity from {threshold})"
        )
    if policy.allowed_regions and facts.region not in policy.allowed_regions:
        allowed = ", ".join(policy.allowed_regions)
        reasons.append(f"region {facts.region or 'unknown'} not in allowedRegions [{allowed}]")
    return reasons


def model_deployment_facts(md: ModelDeployment, adapter: str | None = None) -> BackendFacts | None:
    """Facts about a ModelDeployment, or one of its LoRA adapters: Ready from its condition, cleared for
    its spec.dataClassification, or the adapter's own (never above it). None when the adapter is not one
    of its spec.adapters."""
    conditions = md.status.conditions if md.status else []
    cleared = md.spec.data_classification
    if adapter is not None:
        found = next((a for a in md.spec.adapters if a.name == adapter), None)
        if found is None:
            return None
        cleared = found.cleared_for(cleared)
    return BackendFacts(
        ready=condition_true(conditions, "Ready", md.metadata.generation),
        data_classification=cleared,
        self_hosted=True,
    )


def provider_binding_facts(binding: ProviderBinding, model: str) -> BackendFacts:
    """Facts about ``model`` of a ProviderBinding: Ready and PrivateConnectivityVerified from its
    conditions, the region from spec (Bedrock) or status (Azure, read from the account)."""
    spec, status = binding.spec, binding.status
    conditions = status.conditions if status else []
    generation = binding.metadata.generation
    return BackendFacts(
        ready=condition_true(conditions, "Ready", generation),
        data_classification=spec.data_classification,
        static_credentials=spec.static_credentials,
        private_connectivity_verified=condition_true(conditions, "PrivateConnectivityVerified", generation),
        region=spec.region or (status.region if status else None),
        model_listed=model in binding_models(binding),
        public_api=spec.public_api is not None,
    )


def condition_true(conditions: list[Condition], kind: str, generation: int | None) -> bool:
    """True when condition ``kind`` is True and was computed for the object's current generation (a
    condition written for an older spec does not count: fail closed)."""
    for condition in conditions:
        if condition.type == kind:
            current = generation is None or condition.observed_generation in (None, generation)
            return condition.status is ConditionStatus.TRUE and current
    return False


def backend_facts(
    backend: Backend,
    model_deployments: Mapping[str, ModelDeployment],
    bindings: Mapping[str, ProviderBinding],
) -> BackendFacts | None:
    """Facts about one backend of a route, or None when what it references does not exist."""
    if backend.model_deployment_ref is not None:
        md = model_deployments.get(backend.model_deployment_ref)
        return model_deployment_facts(md, backend.adapter) if md else None
    binding = bindings.get(str(backend.provider_binding_ref))
    return provider_binding_facts(binding, str(backend.model)) if binding else None


def resolve_routes(
    policy: RoutePolicy,
    cluster: ClusterPolicy,
    model_deployments: Mapping[str, ModelDeployment],
    bindings: Mapping[str, ProviderBinding],
    *,
    namespace: str,
    assume_verified: bool = False,
) -> tuple[list[ResolvedRoute], list[RouteStatus]]:
    """Every route of ``policy`` resolved against the backends of its ``namespace`` (keyed by name): what
    the gateway serves, and the per-route status. A Bedrock binding's status.endpoint, when set, is the
    runtime endpoint requests go to (the VPC endpoint's URL).

    ``assume_verified`` treats every existing backend as Ready and privately connected, as ``modelyard
    render`` does offline; classification and the rest of the cluster policy still apply."""
    resolved: list[ResolvedRoute] = []
    statuses: list[RouteStatus] = []
    for route in policy.spec.routes:
        facts: dict[str, BackendFacts] = {}
        for backend in route.backends:
            found = backend_facts(backend, model_deployments, bindings)
            if found is not None:
                verified = replace(found, ready=True, private_connectivity_verified=True)
                facts[backend.key] = verified if assume_verified else found
        outcome = evaluate_route(route, cluster, facts)
        backends = tuple(
            _resolve(b, model_deployments, bindings, namespace, cluster) for b in outcome.eligible
        )
        resolved.append(ResolvedRoute(route=route, backends=backends))
        statuses.append(_route_status(route, outcome))
    return resolved, statuses


def _route_status(route: Route, outcome: Eligibility) -> RouteStatus:
    return RouteStatus(
        model=route.model,
        eligible=[b.key for b in outcome.eligible],
        rejected=[RejectedBackend(backend=key, reason=why) for key, why in outcome.rejected],
    )


def _resolve(
    backend: Backend,
    model_deployments: Mapping[str, ModelDeployment],
    bindings: Mapping[str, ProviderBinding],
    namespace: str,
    cluster: ClusterPolicy,
) -> ResolvedBackend:
    if backend.model_deployment_ref is not None:
        md = model_deployments[backend.model_deployment_ref]
        return ResolvedBackend.from_model_deployment(backend, md, namespace, cluster.inference_gateway_url)
    binding = bindings[str(backend.provider_binding_ref)]
    endpoint = binding.status.endpoint if binding.spec.bedrock is not None and binding.status else None
    return ResolvedBackend.from_provider_binding(backend, binding, runtime_endpoint=endpoint, policy=cluster)
