"""LoRA adapter findings of a ModelDeployment, from the spec alone (pure, like its other findings).

==================================  ========  ==========================================================
Code                                Severity  When
==================================  ========  ==========================================================
ADAPTER_CLASSIFICATION_ABOVE_BASE   high      an adapter's ``dataClassification`` is above the
                                              ModelDeployment's: routes would send it data the server,
                                              its NetworkPolicy and its cache were not cleared for. The
                                              API refuses such a spec (CEL); the audit still reports one
                                              stored before that rule, or read from a file it refuses.
UNPINNED_ADAPTER_REVISION           medium    an ``hf://`` adapter whose ``revision`` is absent or not a
                                              40-hex commit hash: the adapter's weights can change unseen.
==================================  ========  ==========================================================
"""

from __future__ import annotations

import re

from modelyard.api.common import Finding, Severity
from modelyard.api.model_deployment import ModelDeploymentSpec

ADAPTER_CLASSIFICATION_ABOVE_BASE = "ADAPTER_CLASSIFICATION_ABOVE_BASE"
UNPINNED_ADAPTER_REVISION = "UNPINNED_ADAPTER_REVISION"
COMMIT = re.compile(r"^[0-9a-f]{40}$")


def adapter_findings(spec: ModelDeploymentSpec) -> list[Finding]:
    """One finding per offending adapter, in the order of ``spec.adapters``."""
    found = []
    base = spec.data_classification
    for adapter in spec.adapters:
        cleared = adapter.data_classification
        if cleared is not None and cleared.rank > base.rank:
            message = (
                f"adapter {adapter.name} is cleared for {cleared} data, above its ModelDeployment's {base}: "
                "it runs on the same server, behind the same NetworkPolicy and cache"
            )
            found.append(
                Finding(code=ADAPTER_CLASSIFICATION_ABOVE_BASE, severity=Severity.HIGH, message=message)
            )
        if adapter.scheme == "hf" and not (adapter.revision and COMMIT.match(adapter.revision)):
            why = (
                "no revision"
                if adapter.revision is None
                else f"revision {adapter.revision!r} is not a commit hash"
            )
            message = (
                f"adapter {adapter.name} ({adapter.source}) has {why}: pin a 40-hex commit so the served "
                "fine-tune cannot change unreviewed"
            )
            found.append(Finding(code=UNPINNED_ADAPTER_REVISION, severity=Severity.MEDIUM, message=message))
    return found
