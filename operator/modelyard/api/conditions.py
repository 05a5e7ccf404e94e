"""Status conditions as the Kubernetes API conventions define them, computed as pure functions.

``lastTransitionTime`` moves only when a condition's status moves; ``observedGeneration`` is always the
generation the condition was computed for. The clock is a parameter, so tests pin it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Status = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Cond:
    """A condition to set: type, status (True/False/Unknown), CamelCase reason and a message."""

    type: str
    status: str
    reason: str
    message: str = ""

    @classmethod
    def true(cls, type_: str, reason: str, message: str = "") -> Cond:
        return cls(type_, "True", reason, message)

    @classmethod
    def false(cls, type_: str, reason: str, message: str = "") -> Cond:
        return cls(type_, "False", reason, message)

    @classmethod
    def unknown(cls, type_: str, reason: str, message: str = "") -> Cond:
        return cls(type_, "Unknown", reason, message)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    current: list[dict[str, Any]], updates: list[Cond], generation: int | None, now: str
) -> list[dict[str, Any]]:
    """``current`` with ``updates`` applied, in the order of ``updates`` then any others kept as they were."""
    by_type = {c.get("type"): c for c in current}
    merged = []
    for cond in updates:
        previous = by_type.pop(cond.type, None)
        since = now if previous is None or previous.get("status") != cond.status else None
        entry = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message,
            "lastTransitionTime": since or (previous or {}).get("lastTransitionTime", now),
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        merged.append(entry)
    merged.extend(by_type.values())
    return merged


def condition(status: Status | None, type_: str) -> dict[str, Any] | None:
    for cond in (status or {}).get("conditions", []) or []:
        if cond.get("type") == type_:
            result: dict[str, Any] = cond
            return result
    return None


def summary(conds: list[Cond], ready_type: str = "Ready") -> Cond:
    """The summary ``Ready`` condition: True when every condition is True, else the first that is not."""
    for cond in conds:
        if cond.status != "True":
            return Cond(
                ready_type, "False" if cond.status == "False" else "Unknown", cond.reason, cond.message
            )
    return Cond.true(ready_type, "Ready", "all conditions are met")
