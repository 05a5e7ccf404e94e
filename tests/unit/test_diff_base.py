"""kopf's diff base kept in the operator's memory (controllers/runtime.RememberedDiffBase): no write."""

from __future__ import annotations

from typing import Any, cast

import kopf

from modelyard.controllers.runtime import RememberedDiffBase, _deleted


def body(uid: str, replicas: int) -> kopf.Body:
    raw = {
        "apiVersion": "modelyard.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "m", "namespace": "ns", "uid": uid, "managedFields": [{"manager": "x"}]},
        "spec": {"replicas": replicas},
        "status": {"phase": "Ready"},
    }
    return kopf.Body(cast(kopf.RawBody, raw))


def test_the_diff_base_is_remembered_per_object_and_never_patched() -> None:
    storage = RememberedDiffBase()
    first = body("u1", 1)
    assert storage.fetch(body=first) is None  # never seen: kopf calls the create handler
    essence = storage.build(body=first)
    patch = kopf.Patch()
    storage.store(body=first, patch=patch, essence=essence)
    assert not patch  # nothing is written to the object
    assert storage.fetch(body=first) == essence == {"spec": {"replicas": 1}}
    assert storage.fetch(body=body("u2", 1)) is None  # per uid
    storage.forget("u1")
    assert storage.fetch(body=first) is None and len(storage) == 0


def test_only_deletions_are_forgotten() -> None:
    seen: dict[str, Any] = {"type": "MODIFIED"}
    assert not _deleted(**seen)
    assert _deleted(type="DELETED")
