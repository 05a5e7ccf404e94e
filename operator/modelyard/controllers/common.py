"""What every controller does the same way: apply owned children only when their spec hash changed, and
write status as the Kubernetes API conventions want it, only when it changed, with one Event per
condition transition."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Collection, Hashable
from typing import Any, cast

import kopf

from modelyard.api.conditions import Cond, merge_conditions, now_rfc3339, summary
from modelyard.kube import ApiError, Kube
from modelyard.render.common import SPEC_HASH_ANNOTATION, Manifest

READY = "Ready"
MAX_EVENT_MESSAGE = 1024


class ObjectLocks:
    """One lock per object, so two triggers for one object (its own event and a child's) never reconcile it
    at the same time. Locks belong to the running event loop (a restarted operator runs a new one; an
    asyncio.Lock used on two loops raises) and are dropped once nobody holds or waits for them."""

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[Hashable, tuple[asyncio.Lock, list[int]]]
        ] = weakref.WeakKeyDictionary()

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        locks = self._by_loop.setdefault(asyncio.get_running_loop(), {})
        lock, users = locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del locks[key]

    def __len__(self) -> int:
        """Locks in use on the running loop (for tests)."""
        return len(self._by_loop.get(asyncio.get_running_loop(), {}))


class Owner:
    """One custom resource being reconciled: where it is, its last status, and how to write the next."""

    def __init__(self, kube: Kube, body: dict[str, Any], *, progress_reasons: Collection[str] = ()) -> None:
        self.kube = kube
        self.body = body
        self.api_version: str = body["apiVersion"]
        self.kind: str = body["kind"]
        self.namespace: str = body["metadata"]["namespace"]
        self.name: str = body["metadata"]["name"]
        self.generation: int | None = body["metadata"].get("generation")
        self.status: dict[str, Any] = dict(body.get("status") or {})
        self.kopf_body = kopf.Body(cast(kopf.RawBody, body))
        self._progress = set(progress_reasons)
        #: children as the API server returned them in this reconcile, by (kind, name): read once, reused
        self.children: dict[tuple[str, str], dict[str, Any]] = {}

    async def apply_children(self, objects: list[Manifest], failed_type: str = READY) -> Cond | None:
        """Server-side apply each child (owned by this object) whose spec hash differs from the cluster's;
        on failure, a False condition of ``failed_type`` whose reason names the child's kind."""
        for obj in objects:
            kopf.append_owner_reference(obj, owner=self.kopf_body)
            meta = obj["metadata"]
            try:
                current = await self.kube.get(
                    obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"]
                )
                have = (
                    ((current or {}).get("metadata") or {}).get("annotations", {}).get(SPEC_HASH_ANNOTATION)
                )
                if current is None or have != meta["annotations"][SPEC_HASH_ANNOTATION]:
                    current = await self.kube.apply(obj)
                self.children[(obj["kind"], meta["name"])] = current
            except ApiError as exc:
                kind = obj["kind"]
                return Cond.false(failed_type, f"{kind}Failed", f"{kind} {meta['name']}: {exc.message}")
        return None

    async def write_status(self, conds: list[Cond], fields: dict[str, Any]) -> list[dict[str, Any]]:
        """Status with ``conds`` (plus the summary Ready condition unless ``conds`` ends with one) and
        ``fields``; nothing is written when it would not change. Returns the merged conditions."""
        ready = conds[-1] if conds[-1].type == READY else summary(conds)
        merged = merge_conditions(
            self.status.get("conditions", []),
            [*(c for c in conds if c.type != READY), ready],
            self.generation,
            now_rfc3339(),
        )
        status = {"observedGeneration": self.generation, **fields, "conditions": merged}
        if all(_pruned(self.status.get(key)) == _pruned(value) for key, value in status.items()):
            return merged
        await self.kube.patch_status(self.api_version, self.kind, self.namespace, self.name, status)
        self._post_transitions(merged)
        self.status.update(status)
        return merged

    def _post_transitions(self, conditions: list[dict[str, Any]]) -> None:
        """One Event per condition whose status or reason changed, with the condition's reason. The summary
        Ready condition gets its own Event only when it says something the others do not."""
        before = {c.get("type"): c for c in self.status.get("conditions", [])}
        reasons = {c["reason"] for c in conditions if c["type"] != READY}
        for cond in conditions:
            old = before.get(cond["type"])
            if old is not None and (old.get("status"), old.get("reason")) == (cond["status"], cond["reason"]):
                continue
            if cond["type"] == READY and cond["status"] != "True" and cond["reason"] in reasons:
                continue
            normal = cond["status"] == "True" or cond["reason"] in self._progress
            message = f"{cond['type']}={cond['status']}: {cond['message']}"[:MAX_EVENT_MESSAGE]
            kopf.event(
                self.kopf_body, type="Normal" if normal else "Warning", reason=cond["reason"], message=message
            )


def _pruned(value: Any) -> Any:
    """``value`` without null map entries (a merge patch's null removes the key, so it reads back absent)."""
    if isinstance(value, dict):
        return {k: _pruned(v) for k, v in value.items() if v is not None}
    return value
