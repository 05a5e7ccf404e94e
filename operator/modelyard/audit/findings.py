"""ProviderBinding findings: stable codes and severities from the spec, the cluster policy and, when a
verification ran, what it observed. Pure: the controller and ``modelyard audit`` (offline, from manifests,
with nothing observed) share it."""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.api.common import Finding, Severity
from modelyard.api.policy import ClusterPolicy
from modelyard.api.provider_binding import ProviderBindingSpec
from modelyard.catalog.providers import check_azure_model, check_bedrock_model
from modelyard.catalog.public_apis import public_api

STATIC_CREDENTIALS = "STATIC_CREDENTIALS"
PUBLIC_ENDPOINT = "PUBLIC_ENDPOINT"
PRIVATE_LINK_UNVERIFIED = "PRIVATE_LINK_UNVERIFIED"
NO_INVOCATION_LOGGING = "NO_INVOCATION_LOGGING"
LOCAL_AUTH_ENABLED = "LOCAL_AUTH_ENABLED"
MODEL_UNAVAILABLE = "MODEL_UNAVAILABLE"
MODEL_ACCESS_UNVERIFIED = "MODEL_ACCESS_UNVERIFIED"
UNKNOWN_PROVIDER_MODEL = "UNKNOWN_PROVIDER_MODEL"
PUBLIC_API_BINDING = "PUBLIC_API_BINDING"
CLASSIFICATION_ABOVE_POLICY = "CLASSIFICATION_ABOVE_POLICY"
MAX_MESSAGE = 1024


@dataclass(frozen=True, slots=True)
class Observed:
    """What a verification of the binding found; None where it did not look."""

    private_connectivity: bool | None = None
    public_network_access: bool | None = None
    invocation_logging: bool | None = None
    local_auth_enabled: bool | None = None
    unavailable_models: tuple[str, ...] = ()
    models_unverified: str | None = None
    #: models of spec the provider's own models list does not hold (public APIs)
    unlisted_models: tuple[str, ...] = ()


def provider_binding_findings(
    spec: ProviderBindingSpec, policy: ClusterPolicy, observed: Observed | None = None
) -> list[Finding]:
    """Findings for one binding, ordered by severity (high first), then code."""
    seen = observed or Observed()
    if spec.public_api is not None:
        found = [*_credentials(spec, policy, seen), *public_api_findings(spec, policy, seen)]
    else:
        found = [
            *_credentials(spec, policy, seen),
            *_network(spec, policy, seen, verified=observed is not None),
            *_logging(spec, seen),
            *_models(spec, seen),
        ]
    order = {Severity.HIGH: 0, Severity.MEDIUM: 1, Severity.LOW: 2}
    return sorted(found, key=lambda f: (order[f.severity], f.code))


def _finding(code: str, severity: Severity, message: str) -> Finding:
    return Finding(code=code, severity=severity, message=message[:MAX_MESSAGE])


def _credentials(spec: ProviderBindingSpec, policy: ClusterPolicy, seen: Observed) -> list[Finding]:
    found = []
    if spec.public_api is not None:
        ref = spec.public_api.api_key_secret_ref
        found.append(
            _finding(
                STATIC_CREDENTIALS,
                Severity.HIGH,
                f"a long-lived API key from Secret {ref.name} (public model APIs take nothing else, so "
                "allowStaticCredentials does not gate it): a leaked value stays valid until rotated",
            )
        )
    elif spec.static_credentials:
        verdict = "allowed" if policy.allow_static_credentials else "refused"
        found.append(
            _finding(
                STATIC_CREDENTIALS,
                Severity.HIGH,
                f"long-lived static credentials from a Secret ({verdict} by the cluster policy): a leaked "
                "value stays valid until rotated; use keyless identity",
            )
        )
    elif seen.local_auth_enabled:
        found.append(
            _finding(
                LOCAL_AUTH_ENABLED,
                Severity.MEDIUM,
                "the Azure account accepts API keys (disableLocalAuth is not true): anyone with a key "
                "bypasses Entra ID",
            )
        )
    return found


def _network(
    spec: ProviderBindingSpec, policy: ClusterPolicy, seen: Observed, *, verified: bool
) -> list[Finding]:
    public = (spec.bedrock is not None and spec.bedrock.vpc_endpoint is None) or bool(
        seen.public_network_access
    )
    if public:
        sensitive = spec.data_classification.allows(policy.require_private_connectivity_from)
        return [
            _finding(
                PUBLIC_ENDPOINT,
                Severity.HIGH if sensitive else Severity.MEDIUM,
                f"requests can reach the provider over the public internet; the binding is cleared for "
                f"{spec.data_classification.value} data",
            )
        ]
    if verified and not seen.private_connectivity:
        return [
            _finding(
                PRIVATE_LINK_UNVERIFIED,
                Severity.MEDIUM,
                "the private network path could not be verified (see the PrivateConnectivityVerified "
                "condition)",
            )
        ]
    return []


def _logging(spec: ProviderBindingSpec, seen: Observed) -> list[Finding]:
    if spec.bedrock is None:
        return []
    if not spec.bedrock.require_invocation_logging:
        return [
            _finding(
                NO_INVOCATION_LOGGING,
                Severity.LOW,
                "Bedrock model invocation logging is not required (requireInvocationLogging: false)",
            )
        ]
    if seen.invocation_logging is False:
        return [
            _finding(
                NO_INVOCATION_LOGGING,
                Severity.MEDIUM,
                f"Bedrock model invocation logging is not configured in {spec.bedrock.region}",
            )
        ]
    return []


def _models(spec: ProviderBindingSpec, seen: Observed) -> list[Finding]:
    kind = "models" if spec.bedrock is not None else "deployments"
    found = []
    unknown = _unknown_models(spec)
    if unknown:
        found.append(
            _finding(
                UNKNOWN_PROVIDER_MODEL, Severity.MEDIUM, f"the provider would refuse: {'; '.join(unknown)}"
            )
        )
    if seen.unavailable_models:
        found.append(
            _finding(
                MODEL_UNAVAILABLE,
                Severity.MEDIUM,
                f"listed {kind} not available to the account: {', '.join(seen.unavailable_models)}",
            )
        )
    if seen.models_unverified:
        found.append(
            _finding(MODEL_ACCESS_UNVERIFIED, Severity.LOW, f"{kind} not verified: {seen.models_unverified}")
        )
    return found


def public_api_findings(spec: ProviderBindingSpec, policy: ClusterPolicy, seen: Observed) -> list[Finding]:
    """A public-API binding: PUBLIC_API_BINDING always (low: security teams see every one),
    CLASSIFICATION_ABOVE_POLICY when it declares more than the policy's publicAPIMaxClassification, and
    UNKNOWN_PROVIDER_MODEL / MODEL_ACCESS_UNVERIFIED from what verification saw of the vendor's models
    list."""
    assert spec.public_api is not None
    api = public_api(spec.public_api.vendor.value)
    declared, cap = spec.data_classification, policy.public_api_max_classification
    effective = policy.public_api_class(declared)
    found = [
        _finding(
            PUBLIC_API_BINDING,
            Severity.LOW,
            f"prompts go over the public internet to {api.title} with an API key; cleared for "
            f"{effective.value} data (cluster policy publicAPIMaxClassification: {cap.value})",
        )
    ]
    if declared.rank > cap.rank:
        found.append(
            _finding(
                CLASSIFICATION_ABOVE_POLICY,
                Severity.HIGH,
                f"dataClassification {declared.value} is above the cluster policy's "
                f"publicAPIMaxClassification {cap.value}: capped, routes carrying more than {cap.value} "
                "never use it",
            )
        )
    if seen.unlisted_models:
        found.append(
            _finding(
                UNKNOWN_PROVIDER_MODEL,
                Severity.MEDIUM,
                f"{api.title}'s models list does not hold: {', '.join(seen.unlisted_models)}",
            )
        )
    if seen.models_unverified:
        found.append(
            _finding(MODEL_ACCESS_UNVERIFIED, Severity.LOW, f"models not verified: {seen.models_unverified}")
        )
    return found


def _unknown_models(spec: ProviderBindingSpec) -> list[str]:
    """Why each listed model is not one the provider accepts, judged offline from the catalog: Bedrock ids
    (or inference profiles of them callable from the binding's region), Azure deployments' model names."""
    if spec.bedrock is not None:
        checks = [check_bedrock_model(model, spec.bedrock.region) for model in spec.bedrock.models]
        return [check.reason for check in checks if not check.known]
    assert spec.azure_open_ai is not None
    return [
        f"deployment {deployment.name}: {check.reason}"
        for deployment in spec.azure_open_ai.deployments
        if not (check := check_azure_model(deployment.model)).known
    ]
