"""RoutePolicy findings, and the region rule shared with ProviderBindings: pure functions of the specs (and,
for an Azure binding, the region its status read from the account) and the cluster policy.

==========================  ========  ==================================================================
Code                        Severity  When
==========================  ========  ==================================================================
CLASSIFICATION_ESCALATION   high      a route's ``dataClassification`` is above what one of its listed
                                      backends (a ModelDeployment or ProviderBinding of the namespace) is
                                      cleared for. The operator leaves such a backend out of the route,
                                      but the policy as written asks to send the data there. One finding
                                      per route and backend.
REGION_NOT_ALLOWED          high      the cluster policy's ``allowedRegions`` is not empty and a route
                                      backend's ProviderBinding (on the RoutePolicy, one per route and
                                      backend), or the ProviderBinding itself (:func:`binding_region_
                                      findings`), is in a known region outside it. An unknown region (an
                                      Azure binding not verified yet) is not flagged.
==========================  ========  ==================================================================

Backends that do not exist in the namespace are not judged here: their absence is the
``BackendsResolved`` condition, not a security finding.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelyard.api.common import Finding, Severity
from modelyard.api.model_deployment import ModelDeployment
from modelyard.api.policy import ClusterPolicy
from modelyard.api.provider_binding import ProviderBinding
from modelyard.api.route_policy import Backend, Route, RoutePolicySpec
from modelyard.render.routing import BackendFacts, backend_facts

CLASSIFICATION_ESCALATION = "CLASSIFICATION_ESCALATION"
REGION_NOT_ALLOWED = "REGION_NOT_ALLOWED"


def route_policy_findings(
    spec: RoutePolicySpec,
    policy: ClusterPolicy,
    model_deployments: Mapping[str, ModelDeployment],
    bindings: Mapping[str, ProviderBinding],
) -> list[Finding]:
    """Findings for one RoutePolicy against the backends of its namespace (keyed by name), in route and
    backend order."""
    found: list[Finding] = []
    for route in spec.routes:
        for backend in route.backends:
            facts = backend_facts(backend, model_deployments, bindings)
            if facts is not None:
                found += _backend_findings(route, backend, facts, policy)
    return found


def _backend_findings(
    route: Route, backend: Backend, facts: BackendFacts, policy: ClusterPolicy
) -> list[Finding]:
    found = []
    if not facts.data_classification.allows(route.data_classification):
        message = (
            f"route {route.model} carries {route.data_classification} data but lists {backend.key}, cleared "
            f"only for {facts.data_classification}"
        )
        found.append(Finding(code=CLASSIFICATION_ESCALATION, severity=Severity.HIGH, message=message))
    if not facts.self_hosted and region_outside(facts.region, policy):
        message = (
            f"route {route.model} lists {backend.key} in region {facts.region}, not in allowedRegions "
            f"[{', '.join(policy.allowed_regions)}]"
        )
        found.append(Finding(code=REGION_NOT_ALLOWED, severity=Severity.HIGH, message=message))
    return found


def region_outside(region: str | None, policy: ClusterPolicy) -> bool:
    """True when ``region`` is known and the cluster policy restricts regions to others."""
    return bool(policy.allowed_regions) and region is not None and region not in policy.allowed_regions


def binding_region(binding: ProviderBinding) -> str | None:
    """The binding's region: from the spec (Bedrock) or, once verified, from the account (Azure)."""
    return binding.spec.region or (binding.status.region if binding.status else None)


def binding_region_findings(binding: ProviderBinding, policy: ClusterPolicy) -> list[Finding]:
    """REGION_NOT_ALLOWED for a ProviderBinding outside the cluster policy's ``allowedRegions``."""
    return region_findings(binding_region(binding), policy)


def region_findings(region: str | None, policy: ClusterPolicy) -> list[Finding]:
    """REGION_NOT_ALLOWED when a provider's ``region`` is outside the cluster policy's ``allowedRegions``."""
    if region is None or not region_outside(region, policy):
        return []
    message = (
        f"the provider is in region {region}, not in allowedRegions [{', '.join(policy.allowed_regions)}]: "
        "no route may use it"
    )
    return [Finding(code=REGION_NOT_ALLOWED, severity=Severity.HIGH, message=message)]
