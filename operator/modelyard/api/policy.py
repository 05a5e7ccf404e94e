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
