"""The modelyard API: pydantic models, the single source of the CRDs. Knows nothing of kopf or clouds."""

from .common import API_VERSION, GROUP, VERSION, Condition, DataClassification, Finding, Severity
from .model_deployment import ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus
from .provider_binding import ProviderBinding, ProviderBindingSpec, ProviderBindingStatus
from .route_policy import RoutePolicy, RoutePolicySpec, RoutePolicyStatus

KINDS: dict[str, type[ModelDeployment] | type[ProviderBinding] | type[RoutePolicy]] = {
    cls.KIND: cls for cls in (ModelDeployment, ProviderBinding, RoutePolicy)
}

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "Condition",
    "DataClassification",
    "Finding",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "ProviderBinding",
    "ProviderBindingSpec",
    "ProviderBindingStatus",
    "RoutePolicy",
    "RoutePolicySpec",
    "RoutePolicyStatus",
    "Severity",
]
