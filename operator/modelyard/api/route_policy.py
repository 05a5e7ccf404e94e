"""RoutePolicy: one OpenAI-compatible gateway over self-hosted and managed backends."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from pydantic import ConfigDict, Field, model_validator

from .adapters import ADAPTER_NAME
from .common import (
    AGE_COLUMN,
    DNS_1035_LABEL,
    DNS_SUBDOMAIN,
    ApiModel,
    Condition,
    DataClassification,
    Finding,
    Resource,
    Rule,
    cel_rules,
    condition_column,
)

ONE_BACKEND_REF = Rule(
    "has(self.modelDeploymentRef) != has(self.providerBindingRef)",
    "set exactly one of modelDeploymentRef and providerBindingRef",
)
ADAPTER_WITH_MODEL_DEPLOYMENT = Rule(
    "!has(self.adapter) || has(self.modelDeploymentRef)",
    "adapter: only with modelDeploymentRef",
    ".adapter",
)
MODEL_WITH_PROVIDER = Rule(
    "has(self.providerBindingRef) == has(self.model)",
    "model: required with providerBindingRef, and only allowed with it",
    ".model",
)
WEIGHTS_WITH_WEIGHTED = Rule(
    "self.strategy == 'weighted' ? self.backends.all(b, has(b.weight))"
    " : self.backends.all(b, !has(b.weight))",
    "backends: the weighted strategy needs a weight on every backend, and weights need the weighted strategy",
    ".backends",
)


class Strategy(StrEnum):
    FALLBACK = "fallback"
    WEIGHTED = "weighted"


class Backend(ApiModel):
    """One backend of a route: a ModelDeployment or a model of a ProviderBinding, in this namespace."""

    model_config = cel_rules(ONE_BACKEND_REF, MODEL_WITH_PROVIDER, ADAPTER_WITH_MODEL_DEPLOYMENT)

    model_deployment_ref: str | None = Field(
        default=None, description="Name of a ModelDeployment.", max_length=253, pattern=DNS_SUBDOMAIN
    )
    provider_binding_ref: str | None = Field(
        default=None, description="Name of a ProviderBinding.", max_length=253, pattern=DNS_SUBDOMAIN
    )
    model: str | None = Field(
        default=None,
        description="With providerBindingRef: the Bedrock model id or Azure deployment name to call.",
        max_length=256,
    )
    adapter: str | None = Field(
        default=None,
        description="With modelDeploymentRef: one of its spec.adapters by name; requests then ask the model "
        "server for that LoRA adapter, and the adapter's dataClassification decides eligibility.",
        min_length=1,
        max_length=128,
        pattern=ADAPTER_NAME,
    )
    weight: int | None = Field(
        default=None, description="Share of traffic; only with the weighted strategy.", ge=1, le=1000
    )

    @model_validator(mode="after")
    def _one_reference(self) -> Backend:
        if (self.model_deployment_ref is None) == (self.provider_binding_ref is None):
            raise ValueError(ONE_BACKEND_REF.message)
        if (self.provider_binding_ref is None) != (self.model is None):
            raise ValueError(MODEL_WITH_PROVIDER.message)
        if self.adapter is not None and self.model_deployment_ref is None:
            raise ValueError(ADAPTER_WITH_MODEL_DEPLOYMENT.message)
        return self

    @property
    def key(self) -> str:
        """How status and the audit name this backend, e.g. ModelDeployment/llama-8b."""
        if self.model_deployment_ref is not None:
            adapter = f"/{self.adapter}" if self.adapter is not None else ""
            return f"ModelDeployment/{self.model_deployment_ref}{adapter}"
        return f"ProviderBinding/{self.provider_binding_ref}/{self.model}"


class Route(ApiModel):
    """A model name clients send, and the backends that may serve it."""

    model_config = cel_rules(WEIGHTS_WITH_WEIGHTED)

    model: str = Field(
        description="The model name clients send, e.g. chat.",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$",
    )
    data_classification: DataClassification = Field(
        default=DataClassification.INTERNAL,
        description="Class of data on this route; only backends cleared for it are eligible.",
    )
    strategy: Strategy = Field(
        default=Strategy.FALLBACK, description="fallback (in priority order) or weighted (split by weight)."
    )
    backends: list[Backend] = Field(
        description="Backends, highest priority first.", min_length=1, max_length=16
    )
    retries: int = Field(default=1, description="Retries on one backend before falling back.", ge=0, le=10)
    timeout_seconds: int = Field(default=60, description="Timeout of one request, seconds.", ge=1, le=3600)

    @model_validator(mode="after")
    def _weights_match_strategy(self) -> Route:
        weighted = [b.weight is not None for b in self.backends]
        if not (all(weighted) if self.strategy is Strategy.WEIGHTED else not any(weighted)):
            raise ValueError(WEIGHTS_WITH_WEIGHTED.message)
        return self


class Limits(ApiModel):
    """Rate limits applied by the gateway to each route."""

    requests_per_minute: int | None = Field(default=None, description="Requests per minute.", ge=1)
    tokens_per_minute: int | None = Field(default=None, description="Tokens per minute.", ge=1)


class GatewaySpec(ApiModel):
    """The LiteLLM proxy Deployment serving the routes."""

    replicas: int = Field(default=2, description="Gateway replicas.", ge=1, le=100)
    image: str | None = Field(
        default=None, description="Override of the pinned LiteLLM image.", max_length=512
    )


class RoutePolicySpec(ApiModel):
    """Routes, fallbacks, weights and data-classification rules compiled into a gateway."""

    routes: list[Route] = Field(
        description="Routes, one per model name.",
        min_length=1,
        max_length=256,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["model"]},
    )
    limits: Limits = Field(default_factory=Limits, description="Rate limits.")
    gateway: GatewaySpec = Field(default_factory=GatewaySpec, description="The gateway Deployment.")

    @model_validator(mode="after")
    def _unique_models(self) -> RoutePolicySpec:
        seen: set[str] = set()
        for route in self.routes:
            if route.model in seen:
                raise ValueError(f"routes: model {route.model!r} appears twice")
            seen.add(route.model)
        return self


class RejectedBackend(ApiModel):
    """A backend left out of a route, and why."""

    backend: str = Field(
        description="The backend, e.g. ProviderBinding/bedrock-eu/meta.llama3-1-70b-instruct-v1:0."
    )
    reason: str = Field(description="Why it is not eligible.")


class RouteStatus(ApiModel):
    """Resolution of one route."""

    model: str = Field(description="The route's model name.")
    eligible: list[str] = Field(default_factory=list, description="Backends the gateway uses, in order.")
    rejected: list[RejectedBackend] = Field(default_factory=list, description="Backends left out.")


class RoutePolicyStatus(ApiModel):
    """Observed state, written by the operator."""

    model_config = ConfigDict(extra="ignore")  # status.kopf holds the operator framework's own state

    observed_generation: int | None = Field(default=None, description="Generation this status is for.")
    endpoint: str | None = Field(default=None, description="The gateway's OpenAI-compatible base URL.")
    served: str | None = Field(
        default=None,
        description="Routes the gateway serves, comma-separated (routes with no eligible backend are not).",
    )
    routes: list[RouteStatus] = Field(default_factory=list, description="Per-route resolution.")
    findings: list[Finding] = Field(default_factory=list, description="Security findings.")
    conditions: list[Condition] = Field(
        default_factory=list, description="BackendsResolved, Compliant, GatewayReady and Ready."
    )


class RoutePolicy(Resource):
    """Routes, fallbacks, weights and data-classification rules, served by a LiteLLM proxy gateway."""

    KIND: ClassVar[str] = "RoutePolicy"
    PLURAL: ClassVar[str] = "routepolicies"
    #: its gateway's Service is NAME-gateway (RFC 1035, at most 63)
    NAME_PATTERN: ClassVar[str | None] = DNS_1035_LABEL
    NAME_MAX_LENGTH: ClassVar[int | None] = 63 - len("-gateway")
    SHORT_NAMES: ClassVar[list[str]] = ["rp"]
    PRINTER_COLUMNS: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "Served",
            "type": "string",
            "jsonPath": ".status.served",
            "description": "Routes the gateway serves (model names clients can send).",
        },
        {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint"},
        condition_column("Compliant", "Compliant", priority=1),
        condition_column("Ready", "Ready"),
        AGE_COLUMN,
    ]

    kind: str = Field(default="RoutePolicy")
    spec: RoutePolicySpec
    status: RoutePolicyStatus | None = None
