"""Which API failures the controllers retry, the back-off, and the retries of triggers kopf does not retry."""

from __future__ import annotations

import asyncio

import kopf
import pytest

from modelyard.controllers.common import ObjectLocks, reconcile_guarded
from modelyard.controllers.errors import BACKOFF_CAP_S, RetryLater, backoff, classify
from modelyard.kube import ApiError, Unreachable

QUOTA = (
    'persistentvolumeclaims "llama-cache" is forbidden: exceeded quota: no-claims, requested: '
    "persistentvolumeclaims=1, used: persistentvolumeclaims=0, limited: persistentvolumeclaims=0"
)
WEBHOOK = 'admission webhook "validate.kyverno.svc" denied the request: resource Job was blocked'


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ApiError(409, "the object has been modified", "Conflict"), True),
        (ApiError(429, "storage is (re)initializing", "TooManyRequests"), True),
        (ApiError(500, "etcdserver: request timed out", "InternalError"), True),
        (ApiError(503, "service unavailable", "ServiceUnavailable"), True),
        (ApiError(403, QUOTA, "Forbidden"), True),
        (ApiError(403, WEBHOOK, "Forbidden"), True),
        (ApiError(404, "the server could not find the requested resource", "NotFound"), True),
        (Unreachable("cannot connect to 10.96.0.1:443: Connection refused"), True),
        (Unreachable("no answer within 30 s"), True),
        (Unreachable("ServerDisconnectedError: Server disconnected"), True),
        (ApiError(422, 'Job.batch "x" is invalid: spec.template: Required value', "Invalid"), False),
        (ApiError(400, "the body of the request was in an unknown format", "BadRequest"), False),
    ],
)
def test_only_a_refusal_of_what_was_sent_is_permanent(error: ApiError | Unreachable, transient: bool) -> None:
    failure = classify(error)
    assert failure.transient is transient
    assert failure.message  # the API server's words (or the transport's) reach the condition


def test_the_quota_message_reaches_the_condition_unchanged() -> None:
    assert classify(ApiError(403, QUOTA, "Forbidden")).message == QUOTA


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n) for n in range(7)] == [2, 4, 8, 16, 32, 60, 60]
    assert backoff(100) == BACKOFF_CAP_S


def test_one_pending_retry_per_object_with_growing_delays() -> None:
    async def main() -> list[str]:
        retries, ran = RetryLater(), []

        async def again() -> None:
            ran.append("a")

        first = retries.schedule("a", again)
        assert retries.schedule("a", again) == backoff(1)  # already pending: not scheduled twice
        assert first == backoff(0) and retries.attempts("a") == 1
        await asyncio.sleep(first + 0.2)
        await retries.close()
        return ran

    assert asyncio.run(main()) == ["a"]


def test_a_success_cancels_the_pending_retry_and_resets_the_backoff() -> None:
    async def main() -> list[str]:
        retries, ran = RetryLater(), []

        async def again() -> None:
            ran.append("a")

        retries.schedule("a", again)
        retries.succeeded("a")
        assert retries.attempts("a") == 0
        await asyncio.sleep(backoff(0) + 0.2)
        await retries.close()
        return ran

    assert asyncio.run(main()) == []


def test_nothing_is_scheduled_once_the_operator_stops() -> None:
    """The cleanup closes the retries and then the API client: a pass still in flight that fails afterwards
    must not schedule a retry that would run on the closed client."""

    async def main() -> list[str]:
        retries, ran = RetryLater(), []

        async def again() -> None:
            ran.append("a")

        await retries.close()
        retries.schedule("a", again)
        await asyncio.sleep(backoff(0) + 0.2)
        return ran

    assert asyncio.run(main()) == []


def test_a_failed_pass_of_the_objects_own_handler_is_retried_even_if_kopf_cannot_record_it() -> None:
    """kopf retries its handler only after recording the attempt on the object, which fails while the API
    server cannot write (etcd away): the failed pass also leaves a retry of the operator's own."""

    async def main() -> list[str]:
        retries, ran = RetryLater(), []

        async def failing_pass() -> None:
            raise ApiError(500, "etcdserver: request timed out", "InternalError")

        async def again() -> None:
            ran.append("again")

        with pytest.raises(kopf.TemporaryError):
            await reconcile_guarded(
                retries,
                ObjectLocks(),
                ("ModelDeployment", "ml", "llama"),
                failing_pass,
                strict=True,
                again=again,
            )
        assert retries.attempts(("ModelDeployment", "ml", "llama")) == 1
        await asyncio.sleep(backoff(0) + 0.2)
        await retries.close()
        return ran

    assert asyncio.run(main()) == ["again"]
