"""The client's background service: what close() lets finish, what it cuts, and its bound."""

from __future__ import annotations

import asyncio

import anyio

from runcomfy_async._service import Service, Work


async def forever() -> None:
    await anyio.sleep_forever()


def noting(ended: list[str], what: str, after: float) -> Work:
    """Work that takes `after` s, then notes `what` in `ended`."""

    async def work() -> None:
        await anyio.sleep(after)
        ended.append(what)

    return work


async def test_close_lets_finish_work_end_even_if_it_had_not_started() -> None:
    service = Service(forever, name="t")
    ended: list[str] = []
    service.spawn(noting(ended, "polled", after=2.0))  # still polling when the cancel ended
    cancel = noting(ended, "cancelled", after=0.05)  # the cancel's round trip
    service.spawn(cancel, finish=True)  # not started yet at close()
    await service.close(linger=5.0)
    assert ended == ["cancelled"]  # the other work was cut, the cancel was not
    assert not service.running


async def test_finish_work_spawned_by_finish_work_ends_too() -> None:
    service = Service(forever, name="t")
    ended: list[str] = []

    async def batch_end() -> None:
        await anyio.sleep(0.02)
        late_cancel = noting(ended, "late cancel", after=0.02)
        service.spawn(late_cancel, finish=True)  # a submit that landed after the end
        ended.append("batch ended")

    service.spawn(batch_end, finish=True)
    await service.close(linger=5.0)
    assert ended == ["batch ended", "late cancel"]


async def test_close_waits_for_finish_work_at_most_its_linger_and_then_cuts_it() -> None:
    service = Service(forever, name="t")
    cut = asyncio.Event()

    async def stuck_cancel() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cut.set()

    service.spawn(stuck_cancel, finish=True)
    with anyio.fail_after(3.0):
        await service.close(linger=0.2)
    assert cut.is_set()
    assert not service.running
    assert not service.spawn(stuck_cancel, finish=True)  # closed: dropped
    service.open()  # entered again: nothing of the cut work is still counted
    service.spawn(forever)
    with anyio.fail_after(1.0):
        await service.close(linger=5.0)


async def test_close_cancelled_by_its_task_group_still_lets_finish_work_end() -> None:
    # Shielded: a task group cancelled mid-close must not cut a cancel.
    service = Service(forever, name="t")
    ended: list[str] = []
    service.spawn(noting(ended, "cancelled", after=0.1), finish=True)
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: service.close(linger=5.0))
        await anyio.sleep(0.02)
        group.cancel_scope.cancel()
    assert ended == ["cancelled"]
    assert not service.running
