"""ModelDeployment -> InferencePool (Gateway API Inference Extension, ``inference.networking.k8s.io/v1``): the
serving pods, selected by their labels, on the engine's port, with the endpoint picker the user names. A
Gateway whose implementation supports the extension routes to the pool (through an HTTPRoute the platform
team writes) and asks the endpoint picker which pod takes each request.

Pure: the pool's shape follows the v1 API types of sigs.k8s.io/gateway-api-inference-extension (pinned in
hack/sandbox/inference-pool/crd.sh): ``spec.selector.matchLabels``, ``spec.targetPorts[].number`` and
``spec.endpointPickerRef`` (a Service: ``name`` and ``port.number``; ``kind`` and ``group`` default to
Service in the core group). Its status is written by gateways, one entry per parent in ``status.parents``,
each with ``Accepted`` and ``ResolvedRefs`` conditions; :func:`pool_conditions` folds them into the
ModelDeployment's conditions.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from modelyard.api.conditions import Cond
from modelyard.api.model_deployment import ModelDeployment

from .common import Manifest, labels, metadata, selector_labels, stamp_content_hashes

API_VERSION = "inference.networking.k8s.io/v1"
KIND = "InferencePool"
PLURAL = "inferencepools"
#: The pool's conditions as a gateway reports them, and the ModelDeployment conditions that mirror them.
PARENT_CONDITIONS = {"Accepted": "InferencePoolAccepted", "ResolvedRefs": "InferencePoolResolvedRefs"}
#: The ModelDeployment's condition about the pool object itself (created, refused, CRD missing).
POOL_CONDITION = "InferencePool"


def render_inference_pool(md: ModelDeployment, *, owner_kind: str, component: str, port: int) -> Manifest:
    """The InferencePool of ``md``'s serving pods (labelled as ``owner_kind``'s ``component``) on ``port``."""
    picker = md.spec.inference_pool.endpoint_picker_ref
    if picker is None:
        raise ValueError("inferencePool.endpointPickerRef is required")
    name = md.metadata.name
    pool: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata(
            name, md.metadata.namespace, labels(owner_kind, name, component, md.spec.engine.value), ""
        ),
        "spec": {
            "selector": {"matchLabels": selector_labels(owner_kind, name, component)},
            "targetPorts": [{"number": port}],
            "endpointPickerRef": {"name": picker.name, "port": {"number": picker.port}},
        },
    }
    stamp_content_hashes([pool])
    return pool


def inference_gateway_egress(url: str) -> dict[str, Any]:
    """The RoutePolicy gateway's egress to the inference Gateway at ``url``: its port, in its namespace when
    the host is a Service name (``NAME.NAMESPACE.svc[.cluster.local]``), at its address when it is an IP,
    else anywhere (a NetworkPolicy cannot name a host)."""
    parsed = urlsplit(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host = parsed.hostname or ""
    rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": port}]}
    labels = host.split(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        rule["to"] = [{"ipBlock": {"cidr": f"{address}/{address.max_prefixlen}"}}]
    elif len(labels) >= 3 and labels[2] == "svc":
        rule["to"] = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": labels[1]}}}]
    return rule


def pool_conditions(pool: dict[str, Any] | None) -> list[Cond]:
    """``Accepted`` and ``ResolvedRefs`` of the pool, over every parent (Gateway) that reports on it: True
    when every parent says True, False when one says False (its reason, and which parent), Unknown while no
    gateway has taken the pool up."""
    parents = ((pool or {}).get("status") or {}).get("parents") or []
    conds = []
    for upstream, ours in PARENT_CONDITIONS.items():
        reports = []
        for parent in parents:
            ref = parent.get("parentRef") or {}
            who = f"{ref.get('kind', 'Gateway')} {ref.get('name', '?')}"
            found = next((c for c in parent.get("conditions") or [] if c.get("type") == upstream), None)
            if found is not None:
                reports.append((who, found))
        if not reports:
            conds.append(Cond.unknown(ours, "NoParent", "no gateway reports on the InferencePool yet"))
            continue
        failing = [(who, c) for who, c in reports if c.get("status") != "True"]
        if failing:
            who, c = failing[0]
            status = "False" if c.get("status") == "False" else "Unknown"
            message = f"{who}: {c.get('message') or c.get('reason', '')}".strip()
            conds.append(Cond(ours, status, str(c.get("reason") or upstream), message))
        else:
            names = ", ".join(who for who, _ in reports)
            conds.append(
                Cond.true(ours, str(reports[0][1].get("reason") or upstream), f"{upstream} by {names}")
            )
    return conds
