"""The namespace's gateway ServiceAccount: one object, written by two controllers, with one rule.

The ProviderBinding controller applies it with the merged identity wiring of every binding in the namespace
(field manager ``modelyard-providerbinding``, each binding it serves a non-controller owner); each RoutePolicy
applies the same object (render/identity.service_account, so the appliers agree on every field) as a field
manager of its own, adding only its own non-controller owner reference. It is garbage-collected with the last
of its owners; no finalizer is needed.

Both write it through :func:`apply_service_account`, which skips the write when the applier's last apply
already was exactly this object (:func:`applied_already`): an idle re-verification or policy resync writes
nothing, and an applier whose wiring changed (a binding deleted, a role changed) applies again, so no
manager keeps holding an annotation it no longer wants.

When bindings disagree (two IAM roles on one ServiceAccount) the older binding wins (:func:`merge_in_order`)
and the newer one reports the conflict.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from modelyard.api import GROUP, VERSION
from modelyard.api.provider_binding import ProviderBinding
from modelyard.kube import Kube
from modelyard.render.identity import IdentityWiring, identity_wiring, merge_wiring, service_account

#: the ProviderBinding controller's field manager on the gateway ServiceAccount
BINDINGS_FIELD_MANAGER = "modelyard-providerbinding"
MAX_FIELD_MANAGER = 128


def policy_field_manager(policy: str) -> str:
    """A RoutePolicy's own field manager on the gateway ServiceAccount (one per policy: policies never take
    fields from one another)."""
    return f"modelyard-routepolicy-{policy}"[:MAX_FIELD_MANAGER]


async def apply_service_account(kube: Kube, account: dict[str, Any], manager: str) -> bool:
    """Server-side apply ``account`` as ``manager`` unless ``manager``'s last apply already was exactly this;
    returns whether it wrote."""
    meta = account["metadata"]
    current = await kube.get("v1", "ServiceAccount", meta["namespace"], meta["name"])
    if current is not None and applied_already(current, account, manager):
        return False
    await kube.apply(account, field_manager=manager)
    return True


def applied_already(current: dict[str, Any], want: dict[str, Any], manager: str) -> bool:
    """Whether ``manager``'s last server-side apply to ``current`` was ``want``'s labels, annotations and
    owner references, exactly (the fields it owns, from managedFields, and their values), so applying
    ``want`` again would change nothing."""
    entries = (current.get("metadata") or {}).get("managedFields") or []
    entry = next((m for m in entries if m.get("manager") == manager and m.get("operation") == "Apply"), None)
    if entry is None:
        return False
    owned = (entry.get("fieldsV1") or {}).get("f:metadata") or {}
    have, wanted = current["metadata"], want["metadata"]
    for field in ("labels", "annotations"):
        keys = {key[2:] for key in owned.get(f"f:{field}") or {} if key.startswith("f:")}
        values = wanted.get(field) or {}
        if keys != set(values) or any((have.get(field) or {}).get(k) != v for k, v in values.items()):
            return False
    refs = {
        json.loads(key[2:])["uid"] for key in owned.get("f:ownerReferences") or {} if key.startswith("k:")
    }
    present = {ref.get("uid") for ref in have.get("ownerReferences") or []}
    wanted_refs = {ref["uid"] for ref in wanted.get("ownerReferences") or []}
    return refs == wanted_refs <= present and current.get("automountServiceAccountToken") == want.get(
        "automountServiceAccountToken"
    )


async def sync_for_bindings(kube: Kube, namespace: str, bindings: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Apply the gateway ServiceAccount with the wiring of ``bindings`` as the bindings' field manager;
    returns the bindings left out, by name, with why (a conflict with an older binding)."""
    accepted, conflicts = merge_in_order(bindings)
    if accepted:
        account = service_account(merge_wiring(identity_wiring(b) for b in accepted), namespace)
        account["metadata"]["ownerReferences"] = [_owner_reference(b) for b in accepted]
        await apply_service_account(kube, account, BINDINGS_FIELD_MANAGER)
    return conflicts


def namespace_wiring(bindings: Iterable[dict[str, Any]]) -> IdentityWiring:
    """The wiring the gateway ServiceAccount carries for ``bindings`` (those that merge, oldest first)."""
    accepted, _ = merge_in_order(bindings)
    return merge_wiring(identity_wiring(b) for b in accepted)


def merge_in_order(bodies: Iterable[dict[str, Any]]) -> tuple[list[ProviderBinding], dict[str, str]]:
    """Valid bindings, oldest first, each kept only if its wiring merges with those kept before it."""
    parsed = []
    for body in bodies:
        try:
            parsed.append(ProviderBinding.model_validate(body))
        except ValidationError:
            continue  # its own reconcile reports it
    parsed.sort(
        key=lambda b: (str((b.metadata.model_extra or {}).get("creationTimestamp") or ""), b.metadata.name)
    )
    accepted: list[ProviderBinding] = []
    wirings: list[IdentityWiring] = []
    conflicts: dict[str, str] = {}
    for binding in parsed:
        wiring = identity_wiring(binding)
        try:
            merge_wiring([*wirings, wiring])
        except ValueError as exc:
            conflicts[binding.metadata.name] = str(exc)
            continue
        accepted.append(binding)
        wirings.append(wiring)
    return accepted, conflicts


def _owner_reference(binding: ProviderBinding) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": ProviderBinding.KIND,
        "name": binding.metadata.name,
        "uid": binding.metadata.uid,
        "controller": False,
        "blockOwnerDeletion": False,
    }
