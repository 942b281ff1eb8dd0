"""The batch engine that map() builds: its handle (Batch) and its lifecycle, start to end."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.lowlevel

from ._batch_core import Core, Phase
from ._batch_submit import Submits
from ._batch_track import Tracking
from ._errors import RunComfyError, WaitTimeoutError
from ._items import BatchInput, Item, MapOptions, Progress
from ._journals import open_journal
from ._runtime import Runtime
from ._streams import BURST, made
from ._telemetry import BatchProbe

__all__ = ["Batch"]

logger = logging.getLogger("runcomfy_async")


class Batch:
    """What `client.map()` returns: an async iterator of Items, in completion order.

    `progress` has live counts; `unfinished` lists the request_ids left running when the
    batch was ended early. End it early with `aclose()` or `async with client.map(...) as
    batch:`; a plain `break` ends it as soon as the iterator is dropped.
    """

    __slots__ = ("__weakref__", "_engine")

    def __init__(
        self,
        runtime: Runtime,
        inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
        options: MapOptions,
    ) -> None:
        # The engine is referenced by background tasks; this handle only by the caller, so
        # dropping it (a `break`) is seen at once.
        self._engine = Engine(runtime, inputs, options)

    @property
    def progress(self) -> Progress:
        """Live counts by state of the inputs read so far."""
        return self._engine.core.progress

    @property
    def unfinished(self) -> list[str]:
        """request_ids still running when the batch was ended early."""
        return self._engine.core.unfinished

    async def open(self) -> None:
        """Open the journal and start the batch, now rather than at the first item, so that a
        journal that cannot be used (ConfigurationError) or is in use by another run
        (JournalBusyError) is reported before anything else; `async with` does the same."""
        await self._engine.start()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Item:
        return await self._engine.next()

    async def __aenter__(self) -> Self:
        await self._engine.start()
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
        if engine.core.phase in (Phase.RUNNING, Phase.CUT):
            # The loop or the client may be gone already: then there is nothing to cancel.
            with contextlib.suppress(Exception):
                engine.core.runtime.spawn(engine.aclose, finish=True)


class Engine:
    """Submits inputs with at most `max_in_flight` outstanding and emits an Item per input.

    Two ways to end: aclose() (the consumer is done: nothing more is taken) and interrupt()
    (the client closes under a consumer that still reads: every input read gets an item).
    """

    def __init__(
        self,
        runtime: Runtime,
        inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
        options: MapOptions,
    ) -> None:
        self.core = Core(runtime, inputs, options)
        self.tracking = Tracking(self.core)
        self.submits = Submits(self.core, self.tracking)
        self._input_error: Exception | None = None  # the caller's iterable raised it
        self._traced: BatchProbe | None = None  # the batch's span, from start() on
        self._handed = 0  # items handed out

    async def start(self) -> None:
        core = self.core
        if core.phase is not Phase.NEW:
            return
        core.phase = Phase.RUNNING  # before the first await: a second start() does nothing
        try:
            options = core.options
            core.journal = await open_journal(
                options.journal,
                batch=options.batch,
                max_in_flight=options.max_in_flight,
                saves_files=options.download_to is not None,
            )
            await core.run_times.load(core.journal)
        except BaseException:
            core.phase = Phase.NEW  # nothing started: release the streams, then say why
            core.send.close()
            core.receive.close()
            raise
        if core.options.timeout is not None:
            core.deadline = core.runtime.clock() + core.options.timeout
        self._traced = core.runtime.telemetry.batch()
        core.runtime.spawn(self._traced.inside(self._feed))
        core.runtime.batches.add(self)

    async def next(self) -> Item:
        await self.start()
        core = self.core
        while True:
            if core.fatal is not None:
                with anyio.CancelScope(shield=True):
                    await self.aclose()
                raise core.fatal
            self._handed += 1
            ready = made(core.receive, self._handed)  # no loop turn an item already made
            if ready is not None:
                core.slots.release()
                return ready
            try:
                with anyio.move_on_after(self._patience()) as waited:
                    item = await core.receive.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                if core.fatal is not None:
                    continue
                cut = core.phase is Phase.CUT
                await self._ended()
                break
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True):
                    await self.aclose()
                raise
            if not waited.cancelled_caught:
                core.slots.release()
                return item
            self._expire()  # the deadline and its grace passed: nothing left may hold us
        if self._input_error is not None:  # after the items of the inputs read before it
            raise self._input_error
        if cut:
            raise RunComfyError(
                "the client was closed during the batch: inputs not read by then were not sent"
            )
        raise StopAsyncIteration

    def _patience(self) -> float:
        """Seconds next() may wait for an item: unbounded without a timeout, else until the
        deadline plus the cancel grace (for the last items and cancels to land)."""
        deadline = self.core.deadline
        if deadline is None:
            return math.inf
        grace = 2 * self.core.runtime.settings.cancel_grace + 1.0
        return max(deadline - self.core.runtime.clock(), 0.0) + grace

    def _expire(self) -> None:
        """Give every input still without an item its timeout now (a stuck download, a
        tracker that never ended): the batch timeout bounds the whole batch."""
        core = self.core
        timeout = core.options.timeout
        stuck = [job for job in core.open if not job.settled]
        if not stuck:
            return
        logger.error("batch timeout passed with %d inputs unsettled: ending them", len(stuck))
        for tracker, job in list(core.live.items()):
            if job in stuck:
                del core.live[tracker]
                core.runtime.forget(tracker)
        for job in stuck:
            rid = job.request_id
            error: RunComfyError
            if rid is not None:
                error = WaitTimeoutError(
                    f"request {rid} had no outcome within the batch timeout of {timeout} s",
                    request_id=rid,
                    timeout=timeout or 0.0,
                )
                core.unfinished.append(rid)
            else:
                error = RunComfyError(
                    f"input {job.index}: no outcome within the batch timeout of {timeout} s"
                )
            core.emit(job, error=error)
        if core.emitted >= core.reads:  # reading stopped at the deadline: that is all
            core.send.close()

    async def _ended(self) -> None:
        """Every item was taken: nothing left to end."""
        core = self.core
        core.phase = Phase.WOUND_UP
        core.runtime.batches.discard(self)
        core.receive.close()
        await core.close_journal()
        self._end_trace()

    async def aclose(self) -> None:
        core = self.core
        if core.closed:
            return
        started = core.phase is not Phase.NEW
        core.phase = Phase.CLOSED
        core.runtime.batches.discard(self)
        core.reading.cancel()
        if not started:
            core.send.close()
            core.receive.close()
            return
        await self.tracking.release_all(tell=False)
        # Submits already sent: let them land (then they are let go of), within the grace.
        with anyio.move_on_after(core.runtime.settings.cancel_grace):
            await core.fed.wait()
            await core.quiet()
        if core.unfinished:
            logger.warning(
                "batch ended early; %d requests still running: %s",
                len(core.unfinished),
                ", ".join(core.unfinished),
            )
        core.send.close()
        core.receive.close()
        core.phase = Phase.WOUND_UP
        await core.close_journal()
        self._end_trace()

    def _end_trace(self) -> None:
        if self._traced is not None:
            self._traced.end(dataclasses.asdict(self.core.progress))

    async def interrupt(self) -> None:
        """The client is closing under this batch, whose consumer still reads: let the
        submits on the wire land (within the cancel grace), cancel what is queued
        (`cancel_on_exit`), give every input read an item, then end with RunComfyError."""
        core = self.core
        if core.phase is not Phase.RUNNING:
            return
        core.phase = Phase.CUT
        core.reading.cancel()
        with anyio.move_on_after(core.runtime.settings.cancel_grace):
            await core.fed.wait()
            await core.quiet()
        await self.tracking.release_all(tell=True)
        # Submits still on the wire are cancelled with the client's service: see run_one.

    async def _feed(self) -> None:
        core = self.core
        try:
            async with anyio.create_task_group() as submits:
                with core.reading:
                    if core.deadline is not None:  # stop reading inputs at the deadline
                        left = core.deadline - core.runtime.clock()
                        core.reading.deadline = anyio.current_time() + left
                    position = 0
                    try:
                        async for value in _each(core.inputs, core.slots, core.sending):
                            core.reads += 1
                            submits.start_soon(self.submits.run_one, position, value)
                            position += 1
                    except Exception as exc:
                        # The caller's iterable raised: stop reading, but the inputs read
                        # go on (their submits may be billed already) and next() raises it
                        # after their items.
                        self._input_error = exc
        except Exception as exc:  # a bug of the engine: end the batch, never hang it
            logger.exception("the batch's feeder failed")
            core.fail(RunComfyError(f"the batch failed: {type(exc).__name__}: {exc}"), exc)
        finally:
            core.fed.set()
            if core.phase is Phase.WOUND_UP:  # the last submit landed after the batch ended
                await core.close_journal()
            core.end_if_done()


async def _each(
    inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
    slots: anyio.Semaphore,
    sending: anyio.Semaphore,
) -> AsyncIterator[Any]:
    """Each input, read lazily, only once a slot is free for it, and handed out once it may
    be sent (`sending`, released by its submit's task).

    Free semaphores are taken without yielding to the event loop (a checkpoint every
    `BURST` inputs keeps the loop responsive and the reading cancellable): with polls of the
    inputs already sent ready on every loop turn, one input read a turn held 10,000 submits
    to about 3 on the wire at a time, and their span to twice a raw loop's."""
    taken = 0

    async def take(semaphore: anyio.Semaphore) -> None:
        # Cancelled (the reading stopped) at either await, nothing was taken or read.
        nonlocal taken
        taken += 1
        if taken % BURST == 0:
            await anyio.lowlevel.checkpoint()
        try:
            semaphore.acquire_nowait()
        except anyio.WouldBlock:
            await semaphore.acquire()

    if isinstance(inputs, AsyncIterable):
        iterator = aiter(inputs)
        while True:
            await take(slots)
            await take(sending)
            try:
                value = await anext(iterator)
            except StopAsyncIteration:
                slots.release()
                sending.release()
                return
            yield value
    else:
        items = iter(inputs)
        while True:
            await take(slots)
            await take(sending)
            try:
                value = next(items)
            except StopIteration:
                slots.release()
                sending.release()
                return
            yield value
