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


def test_the_essence_is_kopfs_own_without_copying_the_whole_body() -> None:
    """The essence built from the spec, labels and annotations alone equals kopf's, which deep-copies the
    whole body (status, managedFields) first: the same diff, without the copy."""
    raw = {
        "apiVersion": "modelyard.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {
            "name": "m",
            "namespace": "ns",
            "uid": "u1",
            "generation": 3,
            "labels": {"team": "a"},
            "annotations": {
                "note": "kept",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
            },
            "managedFields": [{"manager": "x", "fieldsV1": {"f:spec": {}}}] * 20,
        },
        "spec": {"replicas": 2, "model": {"name": "llama"}},
        "status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    storage = RememberedDiffBase()
    whole = kopf.Body(cast(kopf.RawBody, raw))
    assert storage.build(body=whole) == kopf.DiffBaseStorage.build(storage, body=whole)
    assert storage.build(body=whole) == {
        "spec": {"replicas": 2, "model": {"name": "llama"}},
        "metadata": {"labels": {"team": "a"}, "annotations": {"note": "kept"}},
    }
