"""Adapters to the clouds a ProviderBinding names: AWS (boto3), Azure (azure-identity + httpx) and DNS.

Each verifier answers with plain verdicts (:class:`Check`) the controller turns into conditions; a cloud that
could not be asked (throttled, unreachable, timed out) raises :class:`CloudUnavailable` instead, so the caller
keeps its last verdict. Blocking SDK calls run in worker threads; nothing here knows of kopf or Kubernetes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Check:
    """The verdict of one verification: passed or not, a CamelCase reason and a message free of secrets."""

    passed: bool
    reason: str
    message: str

    @classmethod
    def ok(cls, reason: str, message: str) -> Check:
        return cls(True, reason, message)

    @classmethod
    def failed(cls, reason: str, message: str) -> Check:
        return cls(False, reason, message)


class CloudUnavailable(Exception):
    """The cloud gave no verdict (throttling, a timeout, an unreachable endpoint, a server error)."""


__all__ = ["Check", "CloudUnavailable"]
