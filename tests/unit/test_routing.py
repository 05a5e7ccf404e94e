"""Backend eligibility: data classification and cluster policy, one case per rule."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.api.common import Condition
from modelyard.api.common import DataClassification as DC
from modelyard.api.model_deployment import ModelDeployment
from modelyard.api.policy import ClusterPolicy
from modelyard.api.provider_binding import ProviderBinding
from modelyard.api.route_policy import Route, RoutePolicy
from modelyard.render.routing import (
    BackendFacts,
    condition_true,
    evaluate_route,
    model_deployment_facts,
    provider_binding_facts,
    resolve_routes,
)
from modelyard.render.targets import BedrockTarget

LLAMA = "ModelDeployment/llama-8b"
BEDROCK = "ProviderBinding/bedrock-eu/anthropic.claude-sonnet-4-5"
POLICY = ClusterPolicy()


def route(data: DC = DC.CONFIDENTIAL, **extra: Any) -> Route:
    body: dict[str, Any] = {
        "model": "chat",
        "dataClassification": data,
        "backends": [
            {"modelDeploymentRef": "llama-8b"},
            {"providerBindingRef": "bedrock-eu", "model": "anthropic.claude-sonnet-4-5"},
        ],
        **extra,
    }
    return Route.model_validate(body)


def self_hosted(**overrides: Any) -> BackendFacts:
    return BackendFacts(
        **{"ready": True, "data_classification": DC.RESTRICTED, "self_hosted": True, **overrides}
    )


def provider(**overrides: Any) -> BackendFacts:
    facts = {
        "ready": True,
        "data_classification": DC.CONFIDENTIAL,
        "private_connectivity_verified": True,
        "region": "eu-central-1",
        **overrides,
    }
    return BackendFacts(**facts)


def rejected(r: Route, facts: dict[str, BackendFacts], policy: ClusterPolicy = POLICY) -> dict[str, str]:
    return dict(evaluate_route(r, policy, facts).rejected)


def test_all_eligible_keeps_priority_order() -> None:
    result = evaluate_route(route(), POLICY, {LLAMA: self_hosted(), BEDROCK: provider()})
    assert [b.key for b in result.eligible] == [LLAMA, BEDROCK]
    assert result.rejected == ()


def test_missing_backend_is_not_found() -> None:
    assert rejected(route(), {LLAMA: self_hosted()}) == {BEDROCK: "not found"}


def test_backend_not_ready() -> None:
    assert rejected(route(), {LLAMA: self_hosted(ready=False), BEDROCK: provider()}) == {LLAMA: "not Ready"}


@pytest.mark.parametrize(
    ("cleared", "data", "eligible"),
    [
        (DC.PUBLIC, DC.PUBLIC, True),
        (DC.INTERNAL, DC.PUBLIC, True),
        (DC.INTERNAL, DC.INTERNAL, True),
        (DC.INTERNAL, DC.CONFIDENTIAL, False),
        (DC.CONFIDENTIAL, DC.CONFIDENTIAL, True),
        (DC.CONFIDENTIAL, DC.RESTRICTED, False),
        (DC.RESTRICTED, DC.RESTRICTED, True),
        (DC.PUBLIC, DC.RESTRICTED, False),
    ],
)
def test_classification(cleared: DC, data: DC, eligible: bool) -> None:
    facts = {
        LLAMA: self_hosted(data_classification=cleared),
        BEDROCK: provider(data_classification=DC.RESTRICTED),
    }
    reasons = rejected(route(data), facts)
    if eligible:
        assert LLAMA not in reasons
    else:
        assert reasons[LLAMA] == f"cleared for {cleared}, route carries {data}"


def test_confidential_route_rejects_internal_provider() -> None:
    reasons = rejected(route(), {LLAMA: self_hosted(), BEDROCK: provider(data_classification=DC.INTERNAL)})
    assert reasons == {BEDROCK: "cleared for internal, route carries confidential"}


def test_private_connectivity_required_from_threshold() -> None:
    facts = {LLAMA: self_hosted(), BEDROCK: provider(private_connectivity_verified=False)}
    assert rejected(route(DC.CONFIDENTIAL), facts) == {
        BEDROCK: "private connectivity not verified (route carries confidential, cluster policy requires "
        "private connectivity from confidential)"
    }
    assert rejected(route(DC.INTERNAL), facts) == {}


def test_private_connectivity_threshold_is_policy() -> None:
    facts = {LLAMA: self_hosted(), BEDROCK: provider(private_connectivity_verified=False)}
    strict = ClusterPolicy(require_private_connectivity_from=DC.INTERNAL)
    assert BEDROCK in rejected(route(DC.INTERNAL), facts, strict)
    lax = ClusterPolicy(require_private_connectivity_from=DC.RESTRICTED)
    assert rejected(route(DC.CONFIDENTIAL), facts, lax) == {}


def test_self_hosted_needs_no_private_connectivity_or_region() -> None:
    policy = ClusterPolicy(allowed_regions=("eu-central-1",))
    assert rejected(route(DC.RESTRICTED), {LLAMA: self_hosted()}, policy) == {BEDROCK: "not found"}


def test_static_credentials_refused_by_default() -> None:
    facts = {LLAMA: self_hosted(), BEDROCK: provider(static_credentials=True)}
    assert rejected(route(DC.INTERNAL), facts) == {
        BEDROCK: "static credentials not allowed by cluster policy"
    }


def test_static_credentials_allowed_below_threshold_only() -> None:
    facts = {LLAMA: self_hosted(), BEDROCK: provider(static_credentials=True)}
    policy = ClusterPolicy(allow_static_credentials=True)
    assert rejected(route(DC.INTERNAL), facts, policy) == {}
    assert rejected(route(DC.CONFIDENTIAL), facts, policy) == {
        BEDROCK: "static credentials (route carries confidential, cluster policy requires keyless identity "
        "from confidential)"
    }


def test_region_not_allowed() -> None:
    policy = ClusterPolicy(allowed_regions=("eu-central-1",))
    facts = {LLAMA: self_hosted(), BEDROCK: provider(region="us-east-1")}
    assert rejected(route(DC.INTERNAL), facts, policy) == {
        BEDROCK: "region us-east-1 not in allowedRegions [eu-central-1]"
    }
    facts[BEDROCK] = provider(region=None)
    assert rejected(route(DC.INTERNAL), facts, policy) == {
        BEDROCK: "region unknown not in allowedRegions [eu-central-1]"
    }
    assert rejected(route(DC.INTERNAL), {LLAMA: self_hosted(), BEDROCK: provider()}, policy) == {}


def test_model_not_listed_in_binding() -> None:
    facts = {LLAMA: self_hosted(), BEDROCK: provider(model_listed=False)}
    assert rejected(route(), facts) == {
        BEDROCK: "model anthropic.claude-sonnet-4-5 not listed in the binding"
    }


def test_every_reason_is_reported() -> None:
    facts = {
        LLAMA: self_hosted(),
        BEDROCK: provider(ready=False, data_classification=DC.INTERNAL, private_connectivity_verified=False),
    }
    assert rejected(route(), facts)[BEDROCK].split("; ") == [
        "not Ready",
        "cleared for internal, route carries confidential",
        "private connectivity not verified (route carries confidential, cluster policy requires private "
        "connectivity from confidential)",
    ]


def test_no_eligible_backend() -> None:
    result = evaluate_route(
        route(DC.RESTRICTED), POLICY, {LLAMA: self_hosted(ready=False), BEDROCK: provider()}
    )
    assert result.eligible == ()
    assert [key for key, _ in result.rejected] == [LLAMA, BEDROCK]


# --- facts from the API objects, and whole policies ----------------------------------------------

NS = "llm"


def condition(kind: str, status: str = "True", generation: int | None = 1) -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": "Checked", "observedGeneration": generation}


def llama_md(*conditions: dict[str, Any], data: DC = DC.RESTRICTED) -> ModelDeployment:
    spec = {
        "model": {"name": "llama-3.1-8b-instruct", "source": "pvc://weights/llama"},
        "gpu": {"type": "nvidia-l4"},
        "dataClassification": data,
    }
    meta = {"name": "llama-8b", "namespace": NS, "generation": 1}
    return ModelDeployment.model_validate(
        {"metadata": meta, "spec": spec, "status": {"conditions": conditions}}
    )


def bedrock_pb(*conditions: dict[str, Any], endpoint: str | None = None) -> ProviderBinding:
    spec = {
        "provider": "bedrock",
        "bedrock": {
            "region": "eu-central-1",
            "models": ["anthropic.claude-sonnet-4-5"],
            "auth": {"type": "irsa", "roleArn": "arn:aws:iam::123456789012:role/gw"},
        },
        "dataClassification": "confidential",
    }
    status: dict[str, Any] = {"conditions": conditions, **({"endpoint": endpoint} if endpoint else {})}
    meta = {"name": "bedrock-eu", "namespace": NS, "generation": 1}
    return ProviderBinding.model_validate({"metadata": meta, "spec": spec, "status": status})


def rp(*routes: Route) -> RoutePolicy:
    body = {"routes": [r.to_wire() for r in routes]}
    return RoutePolicy.model_validate({"metadata": {"name": "gw", "namespace": NS}, "spec": body})


READY = condition("Ready")
PRIVATE = condition("PrivateConnectivityVerified")


def test_condition_must_be_true_and_current() -> None:
    assert condition_true([Condition.model_validate(READY)], "Ready", 1)
    assert not condition_true([Condition.model_validate(condition("Ready", "False"))], "Ready", 1)
    assert not condition_true([Condition.model_validate(condition("Ready", generation=1))], "Ready", 2)
    assert not condition_true([], "Ready", 1)


def test_model_deployment_facts() -> None:
    assert model_deployment_facts(llama_md(READY, data=DC.INTERNAL)) == BackendFacts(
        ready=True, data_classification=DC.INTERNAL, self_hosted=True
    )
    assert not model_deployment_facts(llama_md()).ready


def test_provider_binding_facts() -> None:
    facts = provider_binding_facts(bedrock_pb(READY, PRIVATE), "anthropic.claude-sonnet-4-5")
    assert facts == BackendFacts(
        ready=True,
        data_classification=DC.CONFIDENTIAL,
        private_connectivity_verified=True,
        region="eu-central-1",
    )
    assert not provider_binding_facts(bedrock_pb(READY), "meta.llama3-1-70b-instruct-v1:0").model_listed


def test_resolve_routes_gives_gateway_routes_and_status() -> None:
    runtime = "https://vpce-1.bedrock-runtime.eu-central-1.vpce.amazonaws.com"
    mds = {"llama-8b": llama_md(READY)}
    pbs = {"bedrock-eu": bedrock_pb(READY, endpoint=runtime)}  # private link not verified
    resolved, statuses = resolve_routes(
        rp(route(), route(DC.INTERNAL, model="general")), POLICY, mds, pbs, namespace=NS
    )
    assert [b.key for b in resolved[0].backends] == [LLAMA]
    assert statuses[0].eligible == [LLAMA]
    assert statuses[0].rejected[0].backend == BEDROCK
    assert statuses[0].rejected[0].reason.startswith("private connectivity not verified")
    assert [b.key for b in resolved[1].backends] == [LLAMA, BEDROCK]
    target = resolved[1].backends[1].target
    assert isinstance(target, BedrockTarget) and target.runtime_endpoint == runtime


def test_resolve_routes_fails_closed() -> None:
    resolved, statuses = resolve_routes(rp(route()), POLICY, {}, {"bedrock-eu": bedrock_pb()}, namespace=NS)
    assert resolved[0].backends == ()
    assert [(r.backend, r.reason) for r in statuses[0].rejected] == [
        (LLAMA, "not found"),
        (
            BEDROCK,
            "not Ready; private connectivity not verified (route carries confidential, cluster policy "
            "requires private connectivity from confidential)",
        ),
    ]


def test_resolve_routes_offline_assumes_ready_and_verified_but_keeps_classification() -> None:
    mds = {"llama-8b": llama_md(data=DC.INTERNAL)}
    resolved, statuses = resolve_routes(
        rp(route()), POLICY, mds, {"bedrock-eu": bedrock_pb()}, namespace=NS, assume_verified=True
    )
    assert [b.key for b in resolved[0].backends] == [BEDROCK]
    assert statuses[0].rejected[0].reason == "cleared for internal, route carries confidential"
