"""Per-object reconcile locks: exclusive per object, usable by a restarted operator (a new event loop), and
forgotten once released."""

from __future__ import annotations

import asyncio

from modelyard.controllers.common import ObjectLocks


def test_one_reconcile_per_object_at_a_time() -> None:
    locks = ObjectLocks()
    inside: list[str] = []
    overlaps: list[str] = []

    async def reconcile(key: str, tag: str) -> None:
        async with locks.hold(key):
            if key in inside:
                overlaps.append(tag)
            inside.append(key)
            await asyncio.sleep(0.01)
            inside.remove(key)

    async def main() -> int:
        await asyncio.gather(*(reconcile(k, f"{k}{i}") for i in range(5) for k in ("a", "b")))
        return len(locks)

    assert asyncio.run(main()) == 0  # released locks are dropped
    assert overlaps == []


def test_a_restarted_operator_on_a_new_event_loop_can_lock_the_same_object() -> None:
    """A lock contended on one loop is bound to it; a restarted operator (a new loop, as in the controller
    tests, which run the operator once per test) must still reconcile that object."""
    locks = ObjectLocks()

    async def contend() -> None:
        async def hold() -> None:
            async with locks.hold("x"):
                await asyncio.sleep(0.05)

        await asyncio.gather(hold(), hold())  # contention binds an asyncio.Lock to this loop

    asyncio.run(contend())

    asyncio.run(contend())


def test_a_burst_of_child_events_costs_at_most_two_passes() -> None:
    """While one pass runs, the first trigger waits and the rest give way to it: it reads the object afresh
    when its turn comes. The object's own handlers (coalesce=False) always run."""
    locks = ObjectLocks()
    passes: list[str] = []

    async def trigger(tag: str, coalesce: bool) -> None:
        async with locks.hold("md", coalesce=coalesce) as turn:
            if turn:
                passes.append(tag)
                await asyncio.sleep(0.02)

    async def main() -> None:
        first = asyncio.create_task(trigger("first", True))
        await asyncio.sleep(0.005)  # the first pass is running
        await asyncio.gather(
            *(trigger(f"child-{i}", True) for i in range(10)), trigger("own-update", False), first
        )
        assert len(locks) == 0

    asyncio.run(main())
    assert passes == ["first", "child-0", "own-update"]
