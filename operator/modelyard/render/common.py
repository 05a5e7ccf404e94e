"""Helpers every renderer shares: labels, the spec hash, deterministic YAML."""

from __future__ import annotations

import hashlib
import json
import marshal
from typing import Any

from modelyard import __version__

from . import yamlout

PART_OF = "modelyard"
MANAGED_BY = "modelyard"
SPEC_HASH_ANNOTATION = "modelyard.dev/spec-hash"
OWNER_LABEL_PREFIX = "modelyard.dev/"
GATEWAY_COMPONENT = "gateway"

Manifest = dict[str, Any]


def labels(kind: str, owner: str, component: str, name: str | None = None) -> dict[str, str]:
    """Recommended labels, plus ``modelyard.dev/<kind>: <owner>`` to select every child of one owner."""
    return {
        "app.kubernetes.io/name": name or component,
        "app.kubernetes.io/instance": owner,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        f"{OWNER_LABEL_PREFIX}{kind.lower()}": owner,
    }


def selector_labels(kind: str, owner: str, component: str) -> dict[str, str]:
    """The stable subset of :func:`labels` used in selectors (selectors are immutable)."""
    return {
        "app.kubernetes.io/instance": owner,
        "app.kubernetes.io/component": component,
        f"{OWNER_LABEL_PREFIX}{kind.lower()}": owner,
    }


def spec_hash(*parts: Any) -> str:
    """A short, stable hash of JSON-able inputs and the operator version: children carry it so a resync
    with no change writes nothing."""
    payload = json.dumps([__version__, *parts], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def stamp_content_hashes(objects: list[Manifest]) -> list[Manifest]:
    """Set each object's spec hash from its own content: a change of spec re-applies only the children it
    changes (a new ``maxModelLen`` touches the Deployment, not the Service or the claim)."""
    for obj in objects:
        annotations = obj["metadata"].setdefault("annotations", {})
        annotations.pop(SPEC_HASH_ANNOTATION, None)
        annotations[SPEC_HASH_ANNOTATION] = _content_hash(obj)
    return objects


def _content_hash(obj: Manifest) -> str:
    """marshal's version 0 (no back-references, no interning marks: equal content, equal bytes) is five
    times faster than JSON here, and renders keep their key order; JSON for anything marshal refuses."""
    try:
        payload = marshal.dumps((__version__, obj), 0)
    except ValueError:
        payload = json.dumps([__version__, obj], sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def metadata(
    name: str,
    namespace: str | None,
    child_labels: dict[str, str],
    digest: str,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = dict(child_labels)
    meta["annotations"] = {**(annotations or {}), SPEC_HASH_ANNOTATION: digest}
    return meta


def dns_egress() -> dict[str, Any]:
    """An egress rule allowing DNS to the cluster resolver only."""
    return {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }


def restricted_security_context() -> dict[str, Any]:
    """Container security context meeting the Pod Security "restricted" profile."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def to_yaml(objects: list[Manifest]) -> str:
    """Deterministic multi-document YAML: same objects, byte-identical output."""
    return "".join("---\n" + yamlout.dump(obj) for obj in objects)
