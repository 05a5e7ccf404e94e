"""Cluster policy: the operator-wide rules a platform team sets once (Helm values, read by
:mod:`modelyard.config`), which every route and binding is judged against. Knows nothing of kopf or clouds."""

from __future__ import annotations

from dataclasses import dataclass

from .common import DataClassification


@dataclass(frozen=True, slots=True)
class ClusterPolicy:
    """Operator-wide rules (Helm values): what any route may use."""

    allow_static_credentials: bool = False
    #: Routes carrying this class or higher need private connectivity and keyless identity.
    require_private_connectivity_from: DataClassification = DataClassification.CONFIDENTIAL
    #: Regions managed providers may be in; empty allows every region.
    allowed_regions: tuple[str, ...] = ()
    #: The highest class public model APIs (ProviderBinding provider publicAPI) may receive, whatever a
    #: binding declares.
    public_api_max_classification: DataClassification = DataClassification.PUBLIC
    #: The cluster's own IPv4 ranges (Service and pod CIDRs) outside the private and shared ranges the
    #: gateway's public-API egress always excludes (render.public_api.ALWAYS_EXCLUDED).
    cluster_cidrs: tuple[str, ...] = ()
    #: A Gateway of the Gateway API Inference Extension (its URL, e.g.
    #: http://inference-gateway.gateway-system.svc:80): routes to a ModelDeployment with an InferencePool go
    #: through it instead of the model's Service; None sends every route to the Services.
    inference_gateway_url: str | None = None

    def public_api_class(self, declared: DataClassification) -> DataClassification:
        """What a public-API binding declaring ``declared`` is cleared for: capped at the policy's class."""
        cap = self.public_api_max_classification
        return declared if declared.rank <= cap.rank else cap
