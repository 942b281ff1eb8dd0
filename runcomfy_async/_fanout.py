"""The fan-out engine: map() over many inputs, as_completed() over many requests."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterable, AsyncIterator, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio

from ._errors import (
    InvalidInputError,
    RequestCancelledError,
    RunComfyError,
    WaitTimeoutError,
)
from ._inputs import ModelInput, encode_inputs
from ._track import EXPIRED, Tracker, cancel_quietly
from ._wire import Result, State

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["Batch", "Change", "Item", "Progress"]

logger = logging.getLogger("runcomfy_async")

BatchInput = ModelInput | tuple[str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Item:
    """The outcome of one input of a batch: `result` on success, else `error`."""

    index: int
    key: Hashable
    input: Any
    request_id: str | None
    result: Result | None = None
    error: RunComfyError | None = None

    @property
    def ok(self) -> bool:
        """True when the request succeeded."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class Change:
    """A state change of one input of a batch; `state` is None until RunComfy is polled."""

    index: int
    key: Hashable
    request_id: str | None
    state: State | None


@dataclass(slots=True)
class Progress:
    """Live counts of a batch by where each input read so far stands (plain ints, cheap)."""

    pending: int = 0  # read, not yet accepted by RunComfy
    submitted: int = 0  # accepted, state not yet seen
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0  # failed runs, rejected inputs, unknown submissions, timeouts
    cancelled: int = 0

    @property
    def read(self) -> int:
        """Inputs taken from the iterable so far."""
        return self.pending + self.submitted + self.queued + self.running + self.done

    @property
    def done(self) -> int:
        """Inputs with a final item."""
        return self.succeeded + self.failed + self.cancelled

    def move(self, old: str | None, new: str | None) -> None:
        if old is not None:
            setattr(self, old, getattr(self, old) - 1)
        if new is not None:
            setattr(self, new, getattr(self, new) + 1)


_BUCKET = {State.IN_QUEUE: "queued", State.IN_PROGRESS: "running"}


class _Job:
    __slots__ = ("bucket", "index", "input", "key", "request_id")

    def __init__(self, index: int, key: Hashable, value: Any) -> None:
        self.index, self.key, self.input = index, key, value
        self.request_id: str | None = None
        self.bucket: str | None = "pending"


class Batch:
    """What `client.map()` returns: an async iterator of Items, in completion order.

    `progress` has live counts; `unfinished` lists the request_ids left running when the
    batch was ended early. End it early with `aclose()` or `async with client.map(...) as
    batch:`; a plain `break` ends it as soon as the iterator is dropped.
    """

    __slots__ = ("__weakref__", "_engine")

    def __init__(
        self,
        client: Client,
        inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
        *,
        max_in_flight: int,
        timeout: float | None,
        cancel_on_exit: bool,
        key: Callable[[Any], Hashable] | None,
        on_change: Callable[[Change], None] | None,
    ) -> None:
        # The engine is referenced by background tasks; this handle only by the caller, so
        # dropping it (a `break`) is seen at once.
        self._engine = _Engine(
            client,
            inputs,
            max_in_flight=max_in_flight,
            timeout=timeout,
            cancel_on_exit=cancel_on_exit,
            key=key,
            on_change=on_change,
        )

    @property
    def progress(self) -> Progress:
        """Live counts by state of the inputs read so far."""
        return self._engine.progress

    @property
    def unfinished(self) -> list[str]:
        """request_ids still running when the batch was ended early."""
        return self._engine.unfinished

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Item:
        return await self._engine.next()

    async def __aenter__(self) -> Self:
        self._engine.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self._engine.aclose()

    async def aclose(self) -> None:
        """End the batch: stop reading inputs, cancel what is still queued (cancel_on_exit),
        and list what is still running in `unfinished`."""
        await self._engine.aclose()

    def __del__(self) -> None:
        engine = self._engine
        if engine.started and not engine.closed:
            # The loop or the client may be gone already: then there is nothing to cancel.
            with contextlib.suppress(Exception):
                engine.client._spawn(engine.aclose)


class _Engine:
    """Submits inputs with at most `max_in_flight` outstanding and emits an Item per input."""

    def __init__(
        self,
        client: Client,
        inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
        *,
        max_in_flight: int,
        timeout: float | None,
        cancel_on_exit: bool,
        key: Callable[[Any], Hashable] | None,
        on_change: Callable[[Change], None] | None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.progress = Progress()
        self.unfinished: list[str] = []  # request_ids left running when the batch ended early
        self.client = client
        self._inputs = inputs
        self._slots = anyio.Semaphore(max_in_flight)
        self._timeout = timeout
        self._deadline: float | None = None
        self._cancel_on_exit = cancel_on_exit
        self._key = key
        self._on_change = on_change
        self._send, self._receive = anyio.create_memory_object_stream[Item](math.inf)
        self._live: dict[Tracker, _Job] = {}
        self._reading = anyio.CancelScope()
        self._fed = anyio.Event()
        self.started = self.closed = False
        self._reads = self._emitted = 0

    async def next(self) -> Item:
        self.start()
        try:
            item = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self.closed = True  # every item was taken: nothing left to end
            self._receive.close()
            raise StopAsyncIteration from None
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self.aclose()
            raise
        self._slots.release()
        return item

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._reading.cancel()
        if not self.started:
            self._send.close()
            self._receive.close()
            return
        grace = self.client._track.cancel_grace
        leftover = list(self._live.items())
        self._live.clear()
        async with anyio.create_task_group() as group:
            for tracker, job in leftover:
                self.client._scheduler.forget(tracker)
                group.start_soon(self._abandon, tracker.request_id, tracker.state, job)
        with anyio.move_on_after(grace):  # submits already sent: let them land, then abandon
            await self._fed.wait()
        if self.unfinished:
            logger.warning(
                "batch ended early; %d requests still running: %s",
                len(self.unfinished),
                ", ".join(self.unfinished),
            )
        self._send.close()
        self._receive.close()

    # ------------------------------------------------------------------ background work

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        if self._timeout is not None:
            self._deadline = self.client._clock() + self._timeout
        self.client._spawn(self._feed)

    async def _feed(self) -> None:
        try:
            async with anyio.create_task_group() as submits:
                with self._reading:
                    if self._deadline is not None:  # stop reading inputs at the deadline
                        left = self._deadline - self.client._clock()
                        self._reading.deadline = anyio.current_time() + left
                    index = 0
                    async for value in _each(self._inputs, self._slots):
                        self._reads += 1
                        submits.start_soon(self._run_one, index, value)
                        index += 1
        finally:
            self._fed.set()
            self._end_if_done()

    async def _run_one(self, index: int, value: Any) -> None:
        job = _Job(index, index, value)
        self.progress.pending += 1
        try:
            if self._key is not None:
                job.key = self._key(value)
            model_id, body = _encode(value)
            request = await self.client._post(model_id, body, value)
        except RunComfyError as exc:
            self._emit(job, error=exc)
            return
        except Exception as exc:  # the caller's key function failed: that input's error
            self._emit(job, error=InvalidInputError(f"input {index}: key() raised {exc!r}"))
            return
        job.request_id = request.request_id
        if self.closed:  # the batch ended while this submit was in flight
            await self._abandon(request.request_id, None, job)
            return
        self._move(job, "submitted", None)
        tracker = self.client._tracker(request, timeout=None)
        tracker.deadline = self._deadline
        tracker.on_change = self._changed
        tracker.on_done = self._finished
        self._live[tracker] = job
        self.client._track_request(tracker)

    def _changed(self, tracker: Tracker, state: State) -> None:
        job = self._live.get(tracker)
        if job is not None:
            self._move(job, _BUCKET.get(state), state)

    def _finished(self, tracker: Tracker) -> None:
        job = self._live.pop(tracker, None)
        if job is None:
            return  # abandoned by aclose()
        outcome = tracker.outcome
        if outcome is EXPIRED:
            queued = tracker.state in (None, State.IN_QUEUE)
            if queued and self._cancel_on_exit:
                self.client._spawn(lambda: self._cancel(tracker.request_id))
            where = "was queued: cancelled" if queued and self._cancel_on_exit else "goes on"
            error: RunComfyError = WaitTimeoutError(
                f"request {tracker.request_id} did not finish within the batch timeout of "
                f"{self._timeout} s; it {where}",
                request_id=tracker.request_id,
                timeout=self._timeout or 0.0,
            )
            self._emit(job, error=error)
        elif isinstance(outcome, Result):
            self._emit(job, result=outcome)
        elif isinstance(outcome, RunComfyError):
            self._emit(job, error=outcome)

    def _emit(
        self, job: _Job, *, result: Result | None = None, error: RunComfyError | None = None
    ) -> None:
        if error is None:
            final: State | None = State.SUCCEEDED
            bucket = "succeeded"
        elif isinstance(error, RequestCancelledError):
            final, bucket = State.CANCELLED, "cancelled"
        else:
            final, bucket = (State.FAILED if job.request_id else None), "failed"
        self._move(job, bucket, final)
        item = Item(job.index, job.key, job.input, job.request_id, result, error)
        self._emitted += 1
        if not self.closed:
            self._send.send_nowait(item)
        self._end_if_done()

    def _move(self, job: _Job, bucket: str | None, state: State | None) -> None:
        if bucket is not None and bucket != job.bucket:
            self.progress.move(job.bucket, bucket)
            job.bucket = bucket
        if self._on_change is not None:
            self._on_change(Change(job.index, job.key, job.request_id, state))

    def _end_if_done(self) -> None:
        if self._fed.is_set() and self._emitted == self._reads:
            self._send.close()

    async def _abandon(self, request_id: str, state: State | None, job: _Job) -> None:
        if state in (None, State.IN_QUEUE) and self._cancel_on_exit:
            outcome = await self._cancel(request_id)
            if outcome is not None and outcome.cancelled:
                return
        self.unfinished.append(request_id)

    async def _cancel(self, request_id: str) -> Any:
        return await cancel_quietly(self.client, request_id, self.client._track.cancel_grace)


def _encode(value: Any) -> tuple[str, bytes]:
    if isinstance(value, ModelInput):
        return encode_inputs(value, None)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return encode_inputs(value[0], value[1])
    raise InvalidInputError(
        f"a batch input must be a typed model input or a (model_id, inputs) pair, got {value!r}"
    )


async def _each(
    inputs: Iterable[BatchInput] | AsyncIterable[BatchInput], slots: anyio.Semaphore
) -> AsyncIterator[Any]:
    """Each input, read lazily, only once a slot is free for it."""
    if isinstance(inputs, AsyncIterable):
        iterator = aiter(inputs)
        while True:
            await slots.acquire()
            try:
                value = await anext(iterator)
            except StopAsyncIteration:
                slots.release()
                return
            yield value
    else:
        items = iter(inputs)
        while True:
            await slots.acquire()
            try:
                value = next(items)
            except StopIteration:
                slots.release()
                return
            yield value
