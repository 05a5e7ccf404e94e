"""The active-peer rule the ProviderBinding re-verification loop applies (kopf's own rule)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from modelyard.controllers.peering import active

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def peer(priority: int, seen_ago_s: int = 5, lifetime: int = 60) -> dict[str, object]:
    return {
        "priority": priority,
        "lifetime": lifetime,
        "lastseen": (NOW - timedelta(seconds=seen_ago_s)).isoformat(),
    }


def test_highest_live_priority_is_active() -> None:
    peers = {"a": peer(10), "b": peer(20)}
    assert active(peers, "b", NOW)
    assert not active(peers, "a", NOW)


def test_a_dead_peer_does_not_count() -> None:
    peers = {"a": peer(10), "b": peer(20, seen_ago_s=120)}
    assert active(peers, "a", NOW)


def test_equal_priorities_pause_everyone_as_kopf_does() -> None:
    peers = {"a": peer(10), "b": peer(10)}
    assert not active(peers, "a", NOW) and not active(peers, "b", NOW)


def test_not_yet_registered_or_expired_self_is_not_active() -> None:
    assert not active({"b": peer(1)}, "a", NOW)
    assert not active({"a": peer(50, seen_ago_s=61)}, "a", NOW)
