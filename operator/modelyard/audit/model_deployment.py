"""ModelDeployment findings, from the spec alone: pure, so the controller's ``status.findings`` and
``modelyard audit`` (files or cluster) give the same answer for the same spec.

==========================  ========  ==================================================================
Code                        Severity  When
==========================  ========  ==================================================================
UNPINNED_MODEL_REVISION     medium    ``hf://``: ``model.revision`` is absent or not a full 40-hex commit
                                      hash (a branch such as ``main`` or a tag can be moved to other
                                      weights; Hugging Face branch and tag names cannot be told apart, so
                                      only a commit counts as pinned). ``ngc://``: the source has no
                                      ``:TAG`` or the tag is ``latest``. ``ollama://``: always (the
                                      library's tags are moved to new builds, and Ollama cannot pull by
                                      digest: ollama/ollama#6886); a GGUF from ``hf://`` at a commit, or
                                      on a ``pvc://`` claim, is pinned. ``s3://`` and ``pvc://`` are the
                                      cluster owner's own storage, versioned by path: not applicable.
BROAD_NETWORK_ACCESS        high      an ``network.allowFrom`` peer admits every pod of every namespace:
                                      ``namespaceSelector`` with no labels and ``podSelector`` absent or
                                      with no labels.
BROAD_NETWORK_ACCESS        medium    any other peer that may match more than one namespace: a
                                      ``namespaceSelector`` whose labels do not include
                                      ``kubernetes.io/metadata.name`` (the only label that names exactly
                                      one namespace). Peers without ``namespaceSelector`` stay in the
                                      model's own namespace and are not flagged.
PLAINTEXT_MODEL_SOURCE      high      ``s3://`` with an ``http://`` ``model.endpointURL``: the download pod's
                                      web-identity token (at the store's STS), the role's session token
                                      and the weights cross the network unencrypted.
==========================  ========  ==================================================================

One BROAD_NETWORK_ACCESS finding per offending peer, naming its index in ``allowFrom``. LoRA adapters'
findings (ADAPTER_CLASSIFICATION_ABOVE_BASE, UNPINNED_ADAPTER_REVISION) are :mod:`.adapters`'.
"""

from __future__ import annotations

import re

from modelyard.api.common import Finding, Severity
from modelyard.api.model_deployment import LabelSelector, ModelDeploymentSpec, NetworkPeer, SourceScheme

from .adapters import adapter_findings

UNPINNED_MODEL_REVISION = "UNPINNED_MODEL_REVISION"
BROAD_NETWORK_ACCESS = "BROAD_NETWORK_ACCESS"
PLAINTEXT_MODEL_SOURCE = "PLAINTEXT_MODEL_SOURCE"
#: The label the API server sets on every namespace to its own name: the one selector of exactly one.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
COMMIT = re.compile(r"^[0-9a-f]{40}$")
FLOATING_TAG = "latest"


def model_deployment_findings(spec: ModelDeploymentSpec) -> list[Finding]:
    """Findings for one ModelDeployment spec, ordered by severity (high first), then code."""
    found = [*_revision(spec), *_network(spec), *_plaintext_source(spec), *adapter_findings(spec)]
    order = {Severity.HIGH: 0, Severity.MEDIUM: 1, Severity.LOW: 2}
    return sorted(found, key=lambda f: (order[f.severity], f.code))


def revision_pinned(spec: ModelDeploymentSpec) -> bool | None:
    """Whether the weights are pinned to an immutable revision; None where it does not apply."""
    scheme = spec.model.scheme
    if scheme is SourceScheme.HF:
        return spec.model.revision is not None and bool(COMMIT.match(spec.model.revision))
    if scheme is SourceScheme.NGC:
        _, _, tag = spec.model.location.partition(":")
        return tag not in ("", FLOATING_TAG)
    if scheme is SourceScheme.OLLAMA:
        return False
    return None


def _revision(spec: ModelDeploymentSpec) -> list[Finding]:
    if revision_pinned(spec) is not False:
        return []
    if spec.model.scheme is SourceScheme.NGC:
        why = f"the NGC source {spec.model.source} has no tag or the floating tag {FLOATING_TAG!r}"
    elif spec.model.scheme is SourceScheme.OLLAMA:
        why = (
            f"the Ollama library tag {spec.model.source} can be moved to a new build, and Ollama cannot pull "
            "by digest (serve the GGUF from hf:// at a commit revision, or from a pvc:// claim, to pin it)"
        )
    elif spec.model.revision is None:
        why = "no model.revision: the weights are whatever the default branch points to at download time"
    else:
        why = f"model.revision {spec.model.revision!r} is a branch or tag name, not a 40-hex commit hash"
    message = f"{why}; pin an immutable revision so the served weights cannot change unreviewed"
    return [Finding(code=UNPINNED_MODEL_REVISION, severity=Severity.MEDIUM, message=message)]


def _plaintext_source(spec: ModelDeploymentSpec) -> list[Finding]:
    endpoint = spec.model.endpoint_url
    if spec.model.scheme is not SourceScheme.S3 or endpoint is None or not endpoint.startswith("http://"):
        return []
    message = (
        f"model.endpointURL {endpoint} is plain HTTP: the download's web-identity token, the role's session "
        "token and the weights cross the network unencrypted; serve the store over https://"
    )
    return [Finding(code=PLAINTEXT_MODEL_SOURCE, severity=Severity.HIGH, message=message)]


def _network(spec: ModelDeploymentSpec) -> list[Finding]:
    found = []
    for index, peer in enumerate(spec.network.allow_from):
        severity = peer_breadth(peer)
        if severity is not None:
            message = f"spec.network.allowFrom[{index}] admits {describe_peer(peer)} to the model server"
            found.append(Finding(code=BROAD_NETWORK_ACCESS, severity=severity, message=message))
    return found


def peer_breadth(peer: NetworkPeer) -> Severity | None:
    """HIGH for every pod of every namespace, MEDIUM for a peer wider than one namespace, else None."""
    namespaces = peer.namespace_selector
    if namespaces is None or NAMESPACE_NAME_LABEL in namespaces.match_labels:
        return None
    if not namespaces.match_labels and _matches_all(peer.pod_selector):
        return Severity.HIGH
    return Severity.MEDIUM


def _matches_all(selector: LabelSelector | None) -> bool:
    return selector is None or not selector.match_labels


def describe_peer(peer: NetworkPeer) -> str:
    """The peer in words, e.g. ``pods {app: x} in namespaces {team: a}``."""
    pods = "every pod" if _matches_all(peer.pod_selector) else f"pods {_labels(peer.pod_selector)}"
    namespaces = peer.namespace_selector
    if namespaces is None:
        return f"{pods} of its own namespace"
    if not namespaces.match_labels:
        return f"{pods} in every namespace"
    return f"{pods} in namespaces {_labels(namespaces)}"


def _labels(selector: LabelSelector | None) -> str:
    labels = selector.match_labels if selector is not None else {}
    return "{" + ", ".join(f"{key}: {value}" for key, value in sorted(labels.items())) + "}"
