"""Which failures of a reconcile are worth retrying, decided in one place, and how long to wait.

Transient (the object converges by itself once the cause is gone, so it is retried with capped exponential
back-off, and the cause is shown as a condition and one Event while it lasts):

- 409 Conflict, 429 TooManyRequests, every 5xx (the API server, etcd or a webhook's backend in trouble);
- no answer at all: connection refused or reset, timeouts (an API server restarting);
- 403 Forbidden from a ResourceQuota (``exceeded quota``) or an admission webhook's denial, and any other
  403/401 (RBAC or credentials an administrator fixes: nothing in the object would change);
- 404 on a kind the API server does not serve (yet): a CRD being installed.

Permanent (a condition, no loop: retrying sends the same request and gets the same answer):

- 422 Invalid and 400 BadRequest on a child modelyard rendered: the spec asks for something the API server
  refuses, or a bug in modelyard;
- an invalid spec (see ``Owner.reconcile``).

How each trigger retries: the object's own create/update/resume handlers raise ``kopf.TemporaryError`` with
``backoff(retry)``, kopf's own retry; its per-attempt log line is not posted as an Event (the condition's
transition already was). Event handlers (a child's or a backend's event) are never retried by kopf, so
``RetryLater`` runs the same reconcile again after the same back-off, one pending retry per object, dropped
as soon as any trigger reconciles the object without a transient failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

from modelyard.kube import ApiError, Unreachable

#: seconds before the first retry; doubled each attempt up to BACKOFF_CAP_S
BACKOFF_FIRST_S = 2.0
BACKOFF_CAP_S = 60.0

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Failure:
    """One classified failure: whether a retry can succeed, and the API server's words for it."""

    transient: bool
    message: str


def classify(exc: ApiError | Unreachable) -> Failure:
    """Transient or permanent, with a one-line message that names the cause (the API server's message)."""
    if isinstance(exc, Unreachable):  # no answer: refused, reset, timed out
        return Failure(True, f"API server unreachable ({exc})")
    if exc.status in (400, 422):
        return Failure(False, exc.message)
    return Failure(True, exc.message or f"{exc.status} {exc.reason}".strip())


def backoff(attempt: int) -> float:
    """Seconds before retry number ``attempt`` (0 for the first): 2, 4, 8, ... capped at 60."""
    return min(BACKOFF_CAP_S, BACKOFF_FIRST_S * float(2 ** max(attempt, 0)))


class RetryLater:
    """Delayed re-reconciles for the triggers kopf does not retry (event handlers): at most one pending
    retry per object, with back-off over consecutive failures."""

    def __init__(self) -> None:
        self._attempts: dict[Hashable, int] = {}
        self._pending: dict[Hashable, asyncio.Task[None]] = {}
        self._closed = False

    def schedule(self, key: Hashable, again: Callable[[], Awaitable[None]]) -> float:
        """Run ``again`` after the back-off for ``key``'s failures so far (unless one is pending already);
        returns the delay."""
        attempt = self._attempts.get(key, 0)
        delay = backoff(attempt)
        pending = self._pending.get(key)
        if self._closed or (pending is not None and not pending.done()):
            # closed: the operator stops (a pass still in flight failed), its client with it
            return delay
        self._attempts[key] = attempt + 1
        self._pending[key] = asyncio.create_task(self._later(key, delay, again))
        return delay

    def succeeded(self, key: Hashable) -> None:
        """The object reconciled without a transient failure: forget its back-off and any pending retry."""
        self._attempts.pop(key, None)
        pending = self._pending.pop(key, None)
        if pending is not None and pending is not asyncio.current_task():
            pending.cancel()

    def attempts(self, key: Hashable) -> int:
        return self._attempts.get(key, 0)

    async def close(self) -> None:
        """Cancel every pending retry (the operator stops) and wait for them; nothing is scheduled from
        here on."""
        self._closed = True
        tasks = list(self._pending.values())
        self._pending.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _later(self, key: Hashable, delay: float, again: Callable[[], Awaitable[None]]) -> None:
        await asyncio.sleep(delay)
        if self._pending.get(key) is asyncio.current_task():
            del self._pending[key]  # from here on, a failure of ``again`` schedules the next retry
        try:
            await again()
        except Exception:  # logged: a retry task has no caller to raise to
            logger.exception("retrying %s failed", key)
