"""The work queue that runs reconciles asked for by other objects' watch events (common.WorkQueue)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from modelyard.controllers.common import WorkQueue


def test_a_key_already_waiting_is_not_added_twice_and_passes_are_bounded() -> None:
    async def main() -> tuple[list[str], int]:
        queue = WorkQueue(workers=2)
        ran: list[str] = []
        running, most = 0, 0
        release = asyncio.Event()

        def job(key: str) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                nonlocal running, most
                running += 1
                most = max(most, running)
                await release.wait()
                ran.append(key)
                running -= 1

            return run

        for key in ("a", "b", "c", "c", "c", "d"):
            queue.add(key, job(key))
        await asyncio.sleep(0.01)  # two passes started (a, b); c and d wait, c once
        assert len(queue) == 2
        queue.add("c", job("c"))  # still waiting: not added again
        release.set()
        while len(ran) < 4:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.01)
        await queue.close()
        return ran, most

    ran, most = asyncio.run(main())
    assert sorted(ran) == ["a", "b", "c", "d"]  # each once
    assert most == 2


def test_a_failing_pass_is_logged_and_the_queue_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> list[str]:
        queue = WorkQueue(workers=1)
        ran: list[str] = []

        async def broken() -> None:
            raise RuntimeError("a bug")

        async def fine() -> None:
            ran.append("fine")

        queue.add("broken", broken)
        queue.add("fine", fine)
        while not ran:
            await asyncio.sleep(0.01)
        await queue.close()
        return ran

    assert asyncio.run(main()) == ["fine"]
    assert "reconcile of broken failed" in caplog.text and "a bug" in caplog.text


def test_nothing_is_added_once_the_operator_stops() -> None:
    async def main() -> list[str]:
        queue, ran = WorkQueue(workers=1), []

        async def run() -> None:
            ran.append("a")

        queue.add("first", run)
        while not ran:
            await asyncio.sleep(0.01)
        await queue.close()
        queue.add("late", run)
        await asyncio.sleep(0.1)
        return ran

    assert asyncio.run(main()) == ["a"]
