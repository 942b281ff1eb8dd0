"""Waiting on one request and cancelling many: deadlines, cancels on interrupt or timeout."""

from __future__ import annotations

from collections.abc import Iterable

import anyio

from ._errors import RunComfyError, WaitTimeoutError
from ._request import Request
from ._runtime import Runtime, request_id_of
from ._track import EXPIRED, cancel_quietly
from ._wire import CancelOutcome, Result, State

__all__ = ["cancel_all", "wait_for"]


async def wait_for(
    runtime: Runtime,
    request: Request | str,
    deadline: float | None,
    timeout: float | None,
    cancel_on_timeout: bool,
    interrupt: bool,
) -> Result:
    """Client.wait() up to a `deadline` on the runtime's clock (`timeout` is what the
    caller gave); `interrupt`: cancel the request if the wait is cancelled while queued."""
    rid = request_id_of(request)
    tracker = runtime.tracker(request, deadline=deadline)
    runtime.track(tracker)
    try:
        outcome = await tracker.wait()
    except anyio.get_cancelled_exc_class():
        runtime.forget(tracker)
        if interrupt and tracker.state in (None, State.IN_QUEUE):
            await cancel_quietly(runtime, rid, runtime.settings.cancel_grace)
        raise
    if outcome is EXPIRED:
        cancelled = None
        if cancel_on_timeout:
            cancelled = await cancel_quietly(runtime, rid, runtime.settings.cancel_grace)
        raise WaitTimeoutError(
            f"request {rid} did not finish within {timeout} s; it " + _after_cancel(cancelled),
            request_id=rid,
            timeout=timeout or 0.0,
            cancel_outcome=cancelled,
        )
    if isinstance(outcome, RunComfyError):
        raise outcome
    return outcome  # type: ignore[return-value]


async def cancel_all(
    runtime: Runtime, requests: Iterable[Request | str], timeout: float
) -> list[CancelOutcome]:
    """Client.cancel_many(): every cancel at once, all within `timeout` seconds."""
    rids = [request_id_of(request) for request in requests]
    outcomes: list[CancelOutcome | None] = [None] * len(rids)

    async def one(index: int) -> None:
        outcomes[index] = await cancel_quietly(runtime, rids[index], timeout)

    async with anyio.create_task_group() as group:
        for index in range(len(rids)):
            group.start_soon(one, index)
    return [
        outcome or CancelOutcome(request_id=rid, cancelled=False, outcome="unknown")
        for rid, outcome in zip(rids, outcomes, strict=True)
    ]


def _after_cancel(cancelled: CancelOutcome | None) -> str:
    if cancelled is not None and cancelled.cancelled:
        return "was cancelled"
    if cancelled is not None and cancelled.requested:
        return "has a cancellation requested (it may still run): wait again to learn its end"
    return "goes on: wait again"
