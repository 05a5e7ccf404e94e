"""The one rule both controllers apply the gateway ServiceAccount by (controllers/gateway_account.py): write
unless the applier's last server-side apply was exactly what it wants now, as managedFields record it."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from modelyard.controllers.gateway_account import applied_already, policy_field_manager

ROLE = "arn:aws:iam::123456789012:role/llm-gateway"
MANAGER = policy_field_manager("gw")
LABELS = {"app.kubernetes.io/name": "modelyard-gateway", "app.kubernetes.io/managed-by": "modelyard"}
ANNOTATIONS = {"eks.amazonaws.com/role-arn": ROLE, "azure.workload.identity/client-id": "client"}


def want(
    annotations: dict[str, str] = ANNOTATIONS, uids: tuple[str, ...] = ("policy-uid",)
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "modelyard-gateway", "namespace": "team", "labels": dict(LABELS)}
    if annotations:
        meta["annotations"] = dict(annotations)
    meta["ownerReferences"] = [{"kind": "RoutePolicy", "name": "gw", "uid": uid} for uid in uids]
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta,
        "automountServiceAccountToken": False,
    }


def applied(body: dict[str, Any], manager: str = MANAGER) -> dict[str, Any]:
    """``body`` as the API server returns it after ``manager`` applied it: managedFields name what it owns."""
    meta = body["metadata"]
    owned = {
        "f:labels": {f"f:{k}": {} for k in meta.get("labels", {})},
        "f:annotations": {f"f:{k}": {} for k in meta.get("annotations", {})},
        "f:ownerReferences": {
            "k:" + json.dumps({"uid": ref["uid"]}, separators=(",", ":")): {}
            for ref in meta["ownerReferences"]
        },
    }
    current = copy.deepcopy(body)
    current["metadata"]["managedFields"] = [
        {"manager": "modelyard-providerbinding", "operation": "Apply", "fieldsV1": {"f:metadata": {}}},
        {
            "manager": manager,
            "operation": "Apply",
            "fieldsV1": {"f:metadata": owned, "f:automountServiceAccountToken": {}},
        },
    ]
    return current


def test_the_same_apply_again_writes_nothing() -> None:
    assert applied_already(applied(want()), want(), MANAGER)


def test_another_managers_apply_does_not_count() -> None:
    assert not applied_already(applied(want(), manager="someone-else"), want(), MANAGER)


@pytest.mark.parametrize(
    "now",
    [
        pytest.param(want({"azure.workload.identity/client-id": "client"}), id="a binding deleted"),
        pytest.param(want({**ANNOTATIONS, "eks.amazonaws.com/role-arn": f"{ROLE}-2"}), id="a role changed"),
        pytest.param(want({**ANNOTATIONS, "new": "x"}), id="a binding added"),
        pytest.param(want(uids=("policy-uid", "other")), id="another owner"),
    ],
)
def test_a_change_of_what_the_applier_wants_is_applied(now: dict[str, Any]) -> None:
    assert not applied_already(applied(want()), now, MANAGER)


def test_a_value_changed_by_someone_else_is_applied_again() -> None:
    current = applied(want())
    current["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] = "arn:aws:iam::1:role/other"
    assert not applied_already(current, want(), MANAGER)


def test_an_owner_reference_removed_by_someone_else_is_applied_again() -> None:
    current = applied(want())
    current["metadata"]["ownerReferences"] = []
    assert not applied_already(current, want(), MANAGER)


def test_field_managers_are_per_policy_and_fit_the_api_limit() -> None:
    assert policy_field_manager("gw") != policy_field_manager("other")
    assert len(policy_field_manager("x" * 300)) == 128
