"""The InferencePool of a ModelDeployment (Gateway API Inference Extension), applied when
``spec.inferencePool.enabled`` and the cluster setting allow it, deleted when the option is turned off, and
read back so the gateways' ``Accepted`` and ``ResolvedRefs`` verdicts show in the ModelDeployment's status.

The pool is optional: its conditions never hold back ``Ready``, and a cluster without the extension's CRD
gets ``InferencePool=False/CRDNotInstalled`` instead of a failed reconcile. Deletion of the ModelDeployment
removes the pool through its owner reference, like every other child.
"""

from __future__ import annotations

import kopf

from modelyard.api.conditions import Cond, condition
from modelyard.api.model_deployment import ModelDeployment
from modelyard.kube import ApiError, Unreachable
from modelyard.render.common import SPEC_HASH_ANNOTATION
from modelyard.render.inference_pool import (
    API_VERSION,
    KIND,
    PARENT_CONDITIONS,
    POOL_CONDITION,
    pool_conditions,
    render_inference_pool,
)
from modelyard.render.model_deployment import PORT, SERVER

from .common import Owner

DISABLED = "Disabled"
NOT_INSTALLED = (
    "the InferencePool CRD (inference.networking.k8s.io/v1) is not installed in this cluster; install the "
    "Gateway API Inference Extension's CRDs, or set inferencePool.enabled: false"
)


async def sync_inference_pool(
    owner: Owner[ModelDeployment], md: ModelDeployment, *, allowed: bool
) -> list[Cond]:
    """Apply, or remove, ``md``'s InferencePool; the conditions to show (none when the option is off)."""
    name, namespace = owner.name, owner.namespace
    if not md.spec.inference_pool.enabled:
        before = condition(owner.status, POOL_CONDITION)
        if before is None:
            return []
        if before.get("reason") != DISABLED:  # one was applied before: remove it
            await owner.kube.delete(API_VERSION, KIND, namespace, name)
        message = "spec.inferencePool.enabled is false: no InferencePool"
        return [Cond.false(POOL_CONDITION, DISABLED, message)] + [
            Cond.unknown(ours, DISABLED, message) for ours in PARENT_CONDITIONS.values()
        ]
    if not allowed:
        return [
            Cond.false(
                POOL_CONDITION,
                "DisabledByClusterPolicy",
                "the operator's inferencePools setting is off (Helm value inferencePool.enabled)",
            )
        ]
    pool = render_inference_pool(md, owner_kind=ModelDeployment.KIND, component=SERVER, port=PORT)
    kopf.append_owner_reference(pool, owner=owner.kopf_body)
    want = pool["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    try:
        current = owner.watched.get(KIND, namespace, name) if owner.watched is not None else None
        if current is None:
            current = await owner.kube.get(API_VERSION, KIND, namespace, name)
        have = ((current or {}).get("metadata") or {}).get("annotations", {}).get(SPEC_HASH_ANNOTATION)
        if current is None or have != want:
            current = await owner.kube.apply(pool)
        if owner.watched is not None:
            owner.watched.put(current)
    except ApiError as exc:
        if exc.status == 404:
            return [Cond.false(POOL_CONDITION, "CRDNotInstalled", NOT_INSTALLED)]
        if exc.status == 422:
            return [Cond.false(POOL_CONDITION, "InferencePoolInvalid", f"InferencePool {name}: {exc}")]
        return [owner.failed(POOL_CONDITION, "InferencePoolFailed", f"InferencePool {name}", exc)]
    except Unreachable as exc:
        return [owner.failed(POOL_CONDITION, "InferencePoolFailed", f"InferencePool {name}", exc)]
    picker = md.spec.inference_pool.endpoint_picker_ref
    assert picker is not None
    created = Cond.true(
        POOL_CONDITION,
        "Applied",
        f"InferencePool {name} selects the serving pods on port {PORT}; endpoint picker Service "
        f"{picker.name}:{picker.port}",
    )
    return [created, *pool_conditions(current)]
