"""The ProviderBinding controller's pure parts: verifyEvery with jitter, and merging the namespace's bindings
onto one gateway ServiceAccount, oldest first."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.controllers.gateway_account import merge_in_order
from modelyard.controllers.reverification import next_verification, parse_duration

ROLE = "arn:aws:iam::123456789012:role/llm-gateway"


@pytest.mark.parametrize(("text", "seconds"), [("5s", 5), ("10m", 600), ("1h30m", 5400), ("2h", 7200)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def entry(
    uid: str, verified: str | None, every: str = "10m", created: str = "2026-01-01T00:00:00Z"
) -> dict[str, Any]:
    return {
        "metadata": {"name": uid, "uid": uid, "creationTimestamp": created},
        "spec": {"verifyEvery": every},
        "status": {"lastVerifiedTime": verified},
    }


def test_due_one_interval_after_the_last_verification_plus_jitter() -> None:
    last = 1767225600.0 + 3600  # 2026-01-01T01:00:00Z
    dues = [next_verification(entry(f"uid-{i}", "2026-01-01T01:00:00Z")) - last for i in range(50)]
    assert all(600 <= due <= 660 for due in dues)
    assert len({round(d, 3) for d in dues}) > 40  # bindings spread out
    assert next_verification(entry("uid-0", "2026-01-01T01:00:00Z")) - last == dues[0]  # stable per interval


def test_an_attempt_without_verdict_also_waits_an_interval() -> None:
    attempt = 1767225600.0 + 7200
    due = next_verification(entry("u", "2026-01-01T01:00:00Z", every="5s"), last_attempt=attempt)
    assert attempt + 5 <= due <= attempt + 5.5


def test_never_verified_counts_from_creation() -> None:
    assert 1767225600.0 + 5 <= next_verification(entry("u", None, every="5s")) <= 1767225600.0 + 5.5


def binding(name: str, created: str, role: str = ROLE) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "team", "uid": name, "creationTimestamp": created},
        "spec": {
            "provider": "bedrock",
            "bedrock": {"region": "eu-central-1", "models": ["m"], "auth": {"type": "irsa", "roleArn": role}},
        },
    }


def test_the_older_binding_keeps_the_service_account() -> None:
    other = "arn:aws:iam::123456789012:role/other"
    bodies = [
        binding("newer", "2026-01-02T00:00:00Z", other),
        binding("older", "2026-01-01T00:00:00Z"),
        binding("same-role", "2026-01-03T00:00:00Z"),
        {
            "metadata": {"name": "broken", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"provider": "x"},
        },
    ]
    accepted, conflicts = merge_in_order(bodies)
    assert [b.metadata.name for b in accepted] == ["older", "same-role"]
    assert list(conflicts) == ["newer"]
    assert "ProviderBinding older" in conflicts["newer"] and other in conflicts["newer"]
