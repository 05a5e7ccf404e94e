"""The reconcile pass slots (common.PassSlots): a bound on passes, served to objects underway first."""

from __future__ import annotations

import asyncio

from modelyard.controllers.common import PassSlots


def test_a_pass_for_an_object_underway_takes_the_next_slot_before_new_objects() -> None:
    async def main() -> list[str]:
        slots, order = PassSlots(1), []
        release = asyncio.Event()

        async def run(name: str, *, urgent: bool) -> None:
            async with slots.slot(urgent=urgent):
                order.append(name)
                if name == "holder":
                    await release.wait()

        holder = asyncio.create_task(run("holder", urgent=False))
        await asyncio.sleep(0)
        new = [asyncio.create_task(run(f"new-{i}", urgent=False)) for i in range(3)]
        await asyncio.sleep(0)
        underway = asyncio.create_task(run("underway", urgent=True))  # asked last
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(holder, *new, underway)
        return order

    assert asyncio.run(main()) == ["holder", "underway", "new-0", "new-1", "new-2"]


def test_at_most_size_passes_run_and_a_cancelled_waiter_loses_no_slot() -> None:
    async def main() -> tuple[int, int]:
        slots, running, most = PassSlots(2), 0, 0

        async def run() -> None:
            nonlocal running, most
            async with slots.slot(urgent=False):
                running += 1
                most = max(most, running)
                await asyncio.sleep(0.01)
                running -= 1

        first = [asyncio.create_task(run()) for _ in range(2)]
        await asyncio.sleep(0)
        doomed = asyncio.create_task(run())  # waits for a slot, then is cancelled
        await asyncio.sleep(0)
        doomed.cancel()
        rest = [asyncio.create_task(run()) for _ in range(10)]
        await asyncio.gather(*first, *rest)
        ran = 0
        async with slots.slot(urgent=True), slots.slot(urgent=False):  # both slots are free again
            ran += 2
        return most, ran

    assert asyncio.run(main()) == (2, 2)
