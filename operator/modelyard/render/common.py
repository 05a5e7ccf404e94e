"""Helpers every renderer shares: labels, the spec hash, deterministic YAML."""

from __future__ import annotations

import hashlib
import json
import marshal
from collections.abc import Mapping, Sequence
from typing import Any

from modelyard import __version__

from . import yamlout

PART_OF = "modelyard"
MANAGED_BY = "modelyard"
SPEC_HASH_ANNOTATION = "modelyard.dev/spec-hash"
OWNER_LABEL_PREFIX = "modelyard.dev/"
GATEWAY_COMPONENT = "gateway"

# The label keys every child carries. The controllers' watches select on them (managed-by, component, the
# owner label), so they import these names rather than spell the keys again.
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
PART_OF_LABEL = "app.kubernetes.io/part-of"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"

Manifest = dict[str, Any]


def owner_label(kind: str) -> str:
    """The label naming a child's owner: ``modelyard.dev/modeldeployment`` for a ModelDeployment's."""
    return f"{OWNER_LABEL_PREFIX}{kind.lower()}"


def label_selector(match: Mapping[str, str]) -> str:
    """A server-side label selector (``k=v,k2=v2``) matching every label of ``match``."""
    return ",".join(f"{key}={value}" for key, value in match.items())


def labels(kind: str, owner: str, component: str, name: str | None = None) -> dict[str, str]:
    """Recommended labels, plus ``modelyard.dev/<kind>: <owner>`` to select every child of one owner."""
    return {
        NAME_LABEL: name or component,
        INSTANCE_LABEL: owner,
        COMPONENT_LABEL: component,
        PART_OF_LABEL: PART_OF,
        MANAGED_BY_LABEL: MANAGED_BY,
        owner_label(kind): owner,
    }


def selector_labels(kind: str, owner: str, component: str) -> dict[str, str]:
    """The stable subset of :func:`labels` used in selectors (selectors are immutable)."""
    return {
        INSTANCE_LABEL: owner,
        COMPONENT_LABEL: component,
        owner_label(kind): owner,
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


# --- children every renderer builds alike ---------------------------------------------------------

HTTPS_PORT = 443


def gateway_labels() -> dict[str, str]:
    """The labels every modelyard gateway pod carries, whatever its RoutePolicy: model servers admit the
    pods that match them, and the namespace's gateway ServiceAccount carries them too."""
    return {COMPONENT_LABEL: GATEWAY_COMPONENT, PART_OF_LABEL: PART_OF}


def cluster_ip_service(meta: dict[str, Any], selector: dict[str, str], port: int) -> Manifest:
    """A ClusterIP Service exposing ``port`` on the selected pods' port named ``http``."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def network_policy(
    meta: dict[str, Any],
    selector: dict[str, str],
    *,
    egress: list[dict[str, Any]],
    ingress: list[dict[str, Any]] | None = None,
) -> Manifest:
    """A NetworkPolicy over both directions for the selected pods: only ``ingress`` and ``egress`` are
    allowed (no ingress rule at all: every connection to the pods is refused)."""
    spec: dict[str, Any] = {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress", "Egress"]}
    if ingress is not None:
        spec["ingress"] = ingress
    spec["egress"] = egress
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta, "spec": spec}


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


def tcp_egress(port: int, cidrs: Sequence[str] = ()) -> dict[str, Any]:
    """An egress rule allowing TCP ``port`` to ``cidrs``, or to any address when none is given (a
    NetworkPolicy cannot name a host)."""
    rule: dict[str, Any] = {}
    if cidrs:
        rule["to"] = [{"ipBlock": {"cidr": cidr}} for cidr in cidrs]
    rule["ports"] = [{"protocol": "TCP", "port": port}]
    return rule


def https_egress(cidrs: Sequence[str] = ()) -> dict[str, Any]:
    """An egress rule allowing HTTPS (TCP 443) to ``cidrs``, or to any address when none is given."""
    return tcp_egress(HTTPS_PORT, cidrs)


def pod_security_context(user: int, *, fs_group: bool = False) -> dict[str, Any]:
    """Pod security context: non-root as uid and gid ``user``, seccomp RuntimeDefault; with ``fs_group``
    the pod's volumes are made writable by that gid too."""
    context: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": user, "runAsGroup": user}
    if fs_group:
        context["fsGroup"] = user
    context["seccompProfile"] = {"type": "RuntimeDefault"}
    return context


def restricted_security_context(*, read_only_root_filesystem: bool = False) -> dict[str, Any]:
    """Container security context meeting the Pod Security "restricted" profile; optionally with a
    read-only root filesystem (the container then writes only to its volumes)."""
    context: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if read_only_root_filesystem:
        context["readOnlyRootFilesystem"] = True
    return context


def http_probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    """An HTTP GET probe of ``path`` on the container's port named ``http``, 5 s per attempt."""
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def tmp_volume() -> dict[str, Any]:
    """An emptyDir for /tmp: containers with a read-only root filesystem write their scratch files there."""
    return {"name": "tmp", "emptyDir": {}}


def tmp_mount() -> dict[str, Any]:
    return {"name": "tmp", "mountPath": "/tmp"}


def to_yaml(objects: list[Manifest]) -> str:
    """Deterministic multi-document YAML: same objects, byte-identical output."""
    return "".join("---\n" + yamlout.dump(obj) for obj in objects)
