"""Streams over the runtime's poller pool: as_completed() (results) and watch() (states)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable
from typing import TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from ._errors import RequestFailedError, RunComfyError, WaitTimeoutError
from ._request import Request
from ._runtime import Runtime
from ._track import EXPIRED, Tracker
from ._wire import Result, State

__all__ = ["BURST", "as_completed", "made", "watch"]

T = TypeVar("T")

BURST = 256  # things taken without a loop turn between two checkpoints


def made(receive: MemoryObjectReceiveStream[T], taken: int) -> T | None:
    """What `receive` holds already, taken without a turn of the event loop; None when it
    holds nothing yet, has ended, or `taken` is a multiple of BURST (then the caller awaits
    `receive()`, and the loop gets its turn: a consumer cannot hog it). On a loop busy with
    polls a turn takes milliseconds: one result a turn held finished requests from their
    consumer for up to 0.6 s (map() of 1,000 requests of 1-3 s)."""
    if taken % BURST == 0:
        return None
    try:
        return receive.receive_nowait()
    except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
        return None  # nothing made yet, or the end: the caller's await tells which


async def as_completed(
    runtime: Runtime,
    requests: Iterable[Request | str],
    *,
    timeout: float | None,
    return_exceptions: bool = False,
) -> AsyncIterator[Result | RunComfyError]:
    """Yield each request's Result as it finishes (see Client.as_completed)."""
    send, receive = anyio.create_memory_object_stream[Tracker](math.inf)
    deadline = None if timeout is None else runtime.clock() + timeout
    trackers = [runtime.tracker(request, deadline=deadline) for request in requests]
    for tracker in trackers:
        tracker.on_done = send.send_nowait
        runtime.track(tracker)
    errors: list[RunComfyError] = []  # about one request each: raised after the others
    try:
        for left in range(len(trackers), 0, -1):
            ready = made(receive, left)  # no loop turn a result already in
            tracker = ready if ready is not None else await receive.receive()
            outcome = tracker.outcome
            if outcome is EXPIRED:
                timed_out = WaitTimeoutError(
                    f"{left} requests did not finish within {timeout} s; they go on",
                    request_id=tracker.request_id,
                    timeout=timeout or 0.0,
                )
                _note_others(timed_out, errors)
                raise timed_out
            if isinstance(outcome, Result):
                yield outcome
            elif isinstance(outcome, RequestFailedError) and tracker.result is not None:
                yield tracker.result  # a failed or cancelled request is a state here
            elif isinstance(outcome, RunComfyError):
                if return_exceptions:
                    yield outcome
                else:
                    errors.append(outcome)
    finally:
        for tracker in trackers:
            runtime.forget(tracker)
        send.close()
        receive.close()
    if errors:
        first = errors[0]
        _note_others(first, errors[1:])
        raise first


def _note_others(exc: BaseException, others: list[RunComfyError]) -> None:
    if others:
        names = ", ".join(str(getattr(e, "request_id", None) or e) for e in others)
        exc.add_note(f"{len(others)} more requests could not be tracked: {names}")


async def watch(
    runtime: Runtime, request: Request | str, *, timeout: float | None
) -> AsyncIterator[State]:
    """Yield a request's state each time it changes (see Client.watch)."""
    send, receive = anyio.create_memory_object_stream[State](math.inf)
    deadline = None if timeout is None else runtime.clock() + timeout
    tracker = runtime.tracker(request, deadline=deadline)
    tracker.on_change = lambda _, state: send.send_nowait(state)
    tracker.on_done = lambda _: send.close()
    runtime.track(tracker)
    try:
        async for state in receive:
            yield state
    finally:
        runtime.forget(tracker)  # left early: stop polling (the request goes on)
        send.close()
        receive.close()
    outcome = tracker.outcome
    if outcome is EXPIRED:
        raise WaitTimeoutError(
            f"request {tracker.request_id} did not finish within {timeout} s; it goes on",
            request_id=tracker.request_id,
            timeout=timeout or 0.0,
        )
    if isinstance(outcome, RunComfyError) and not isinstance(outcome, RequestFailedError):
        raise outcome  # e.g. NotFoundError: no such request
