"""ProviderBinding -> identity wiring of the namespace's gateway: ServiceAccount annotations, pod labels,
container env and the egress the identity needs.

Keyless modes leave every credential to the platform: the EKS Pod Identity webhook injects
``AWS_ROLE_ARN`` and ``AWS_WEB_IDENTITY_TOKEN_FILE`` into pods whose ServiceAccount carries the IRSA role
annotation; the EKS Pod Identity Agent serves credentials to pods whose ServiceAccount has an association
(made with the EKS API, ``CreatePodIdentityAssociation``, outside the cluster: nothing to annotate); the Azure
Workload Identity webhook injects ``AZURE_CLIENT_ID``, ``AZURE_TENANT_ID`` and ``AZURE_FEDERATED_TOKEN_FILE``
into pods labelled ``azure.workload.identity/use: "true"``. Static secrets reach the gateway only as
``valueFrom.secretKeyRef``: a value is never read or copied here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from modelyard.api.common import SecretKeyRef
from modelyard.api.provider_binding import (
    DEFAULT_GATEWAY_SERVICE_ACCOUNT,
    AwsAuthType,
    AzureAuth,
    AzureAuthType,
    BedrockSpec,
    ProviderBinding,
)

from .common import MANAGED_BY, MANAGED_BY_LABEL, gateway_labels, https_egress

IRSA_ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
IRSA_REGIONAL_STS_ANNOTATION = "eks.amazonaws.com/sts-regional-endpoints"
AZURE_CLIENT_ID_ANNOTATION = "azure.workload.identity/client-id"
AZURE_TENANT_ID_ANNOTATION = "azure.workload.identity/tenant-id"
AZURE_USE_LABEL = "azure.workload.identity/use"
#: Keys a staticSecret Secret must hold (see AwsAuth.secret_ref and AzureAuth.secret_ref).
AWS_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
AZURE_SECRET_KEY = "AZURE_API_KEY"
#: The suffix of the env var carrying a public-API binding's key (public_api_key_env).
PUBLIC_API_KEY_SUFFIX = "API_KEY"
#: Env vars that only set an SDK default; bindings may disagree on them (each model names its region in the
#: gateway config), and then the variable is left out rather than picked arbitrarily.
SDK_DEFAULT_ENV = frozenset({"AWS_REGION"})
#: EKS Pod Identity Agent: a link-local address on every node (IPv4 and IPv6), HTTP.
POD_IDENTITY_AGENT_CIDRS = ("169.254.170.23/32", "fd00:ec2::23/128")

EnvVar = dict[str, Any]
EgressRule = dict[str, Any]


@dataclass(frozen=True, slots=True)
class IdentityWiring:
    """What the gateway ServiceAccount and pods need so the gateway can call the bound providers."""

    service_account: str = DEFAULT_GATEWAY_SERVICE_ACCOUNT
    sa_annotations: Mapping[str, str] = field(default_factory=dict)
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    env: tuple[EnvVar, ...] = ()
    #: NetworkPolicy egress rules the identity needs (token exchange, credential agent).
    egress: tuple[EgressRule, ...] = ()
    #: The ProviderBindings this wiring comes from, for error messages.
    sources: tuple[str, ...] = ()


def static_env_name(binding: str, key: str) -> str:
    """The gateway env var carrying ``key`` of a binding's static Secret, unique per binding:
    ``bedrock-eu`` + ``AWS_ACCESS_KEY_ID`` -> ``MODELYARD_BEDROCK_EU_AWS_ACCESS_KEY_ID``."""
    return f"MODELYARD_{re.sub(r'[^A-Za-z0-9]', '_', binding).upper()}_{key}"


def public_api_key_env(binding: str) -> str:
    """The gateway env var carrying a public-API binding's key: ``openrouter`` ->
    ``MODELYARD_OPENROUTER_API_KEY``."""
    return static_env_name(binding, PUBLIC_API_KEY_SUFFIX)


def identity_wiring(binding: ProviderBinding) -> IdentityWiring:
    """The wiring one ProviderBinding asks of the gateway."""
    spec = binding.spec
    name = binding.metadata.name
    if spec.public_api is not None:
        wiring = _public_api_wiring(name, spec.public_api.api_key_secret_ref)
    elif spec.bedrock is not None:
        wiring = _aws_wiring(name, spec.bedrock)
    else:
        assert spec.azure_open_ai is not None
        wiring = _azure_wiring(name, spec.azure_open_ai.auth)
    return replace(wiring, service_account=spec.service_account_name, sources=(name,))


def merge_wiring(wirings: Iterable[IdentityWiring]) -> IdentityWiring:
    """One ServiceAccount and pod template for every binding in a namespace.

    Raises ValueError naming both bindings when they ask for different ServiceAccounts or set one
    annotation, label or env var to different values: one ServiceAccount carries only one IAM role and one
    Azure client id. Input order does not matter."""
    ordered = sorted(wirings, key=lambda w: w.sources)
    if not ordered:
        return IdentityWiring()
    accounts = _merge_maps("serviceAccountName", [({"": w.service_account}, w.sources) for w in ordered])
    return IdentityWiring(
        service_account=accounts[""],
        sa_annotations=_merge_maps("annotation", [(w.sa_annotations, w.sources) for w in ordered]),
        pod_labels=_merge_maps("pod label", [(w.pod_labels, w.sources) for w in ordered]),
        env=_merge_env(ordered),
        egress=tuple(_unique(rule for w in ordered for rule in w.egress)),
        sources=tuple(source for w in ordered for source in w.sources),
    )


def _aws_wiring(name: str, bedrock: BedrockSpec) -> IdentityWiring:
    auth = bedrock.auth
    region = {"name": "AWS_REGION", "value": bedrock.region}
    if auth.type is AwsAuthType.IRSA:
        return IdentityWiring(
            sa_annotations={IRSA_ROLE_ANNOTATION: str(auth.role_arn), IRSA_REGIONAL_STS_ANNOTATION: "true"},
            env=(region,),
            egress=(https_egress(),),  # STS AssumeRoleWithWebIdentity
        )
    if auth.type is AwsAuthType.POD_IDENTITY:
        return IdentityWiring(env=(region,), egress=(_pod_identity_agent(),))
    assert auth.secret_ref is not None
    secret = auth.secret_ref.name
    return IdentityWiring(env=(region, *(_secret_env(name, secret, key) for key in AWS_SECRET_KEYS)))


def _azure_wiring(name: str, auth: AzureAuth) -> IdentityWiring:
    if auth.type is AzureAuthType.WORKLOAD_IDENTITY:
        return IdentityWiring(
            sa_annotations={
                AZURE_CLIENT_ID_ANNOTATION: str(auth.client_id),
                AZURE_TENANT_ID_ANNOTATION: str(auth.tenant_id),
            },
            pod_labels={AZURE_USE_LABEL: "true"},
            egress=(https_egress(),),  # the Entra ID token endpoint, which has no private endpoint
        )
    assert auth.secret_ref is not None
    return IdentityWiring(env=(_secret_env(name, auth.secret_ref.name, AZURE_SECRET_KEY),))


def _public_api_wiring(name: str, ref: SecretKeyRef) -> IdentityWiring:
    """The key as an env var from the Secret, marked optional: a binding whose Secret is missing (its
    CredentialsVerified says so) fails only its own requests, never the start of the namespace's gateway. The
    egress to the public internet is the gateway's, while such a backend is eligible (render.public_api)."""
    ref_ = {"name": ref.name, "key": ref.key, "optional": True}
    return IdentityWiring(env=({"name": public_api_key_env(name), "valueFrom": {"secretKeyRef": ref_}},))


def _secret_env(binding: str, secret: str, key: str) -> EnvVar:
    return {
        "name": static_env_name(binding, key),
        "valueFrom": {"secretKeyRef": {"name": secret, "key": key}},
    }


def _pod_identity_agent() -> EgressRule:
    return {
        "to": [{"ipBlock": {"cidr": cidr}} for cidr in POD_IDENTITY_AGENT_CIDRS],
        "ports": [{"protocol": "TCP", "port": 80}],
    }


def _merge_maps(what: str, maps: list[tuple[Mapping[str, str], tuple[str, ...]]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    origin: dict[str, tuple[str, ...]] = {}
    for mapping, sources in maps:
        for key, value in mapping.items():
            if key in merged and merged[key] != value:
                subject = f"{what} {key}" if key else what
                raise ValueError(
                    f"{subject}: {_names(origin[key])} sets {merged[key]!r}, "
                    f"{_names(sources)} sets {value!r}; the namespace's gateway runs as one ServiceAccount, "
                    "which carries only one identity per provider"
                )
            merged.setdefault(key, value)
            origin.setdefault(key, sources)
    return dict(sorted(merged.items()))


def _merge_env(ordered: list[IdentityWiring]) -> tuple[EnvVar, ...]:
    by_name: dict[str, EnvVar] = {}
    origin: dict[str, tuple[str, ...]] = {}
    dropped: set[str] = set()
    for wiring in ordered:
        for var in wiring.env:
            name = var["name"]
            if name in by_name and by_name[name] != var:
                if name not in SDK_DEFAULT_ENV:
                    raise ValueError(
                        f"env {name}: {_names(origin[name])} and {_names(wiring.sources)} set it differently"
                    )
                dropped.add(name)
            by_name.setdefault(name, var)
            origin.setdefault(name, wiring.sources)
    return tuple(by_name[name] for name in sorted(by_name) if name not in dropped)


def _names(sources: tuple[str, ...]) -> str:
    return " and ".join(f"ProviderBinding {source}" for source in sources)


def _unique(rules: Iterable[EgressRule]) -> list[EgressRule]:
    seen: list[EgressRule] = []
    for rule in rules:
        if rule not in seen:
            seen.append(rule)
    return seen


def service_account(wiring: IdentityWiring, namespace: str | None) -> dict[str, Any]:
    """The namespace's gateway ServiceAccount carrying ``wiring``, as the bindings need it to exist (the
    operator mints its tokens to prove the cloud trust before any gateway runs)."""
    meta: dict[str, Any] = {"name": wiring.service_account}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = {**gateway_labels(), MANAGED_BY_LABEL: MANAGED_BY}
    if wiring.sa_annotations:
        meta["annotations"] = dict(sorted(wiring.sa_annotations.items()))
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta,
        "automountServiceAccountToken": False,
    }
