"""A client's one long-lived background task: the poller pool and batches' background work."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

Work = Callable[[], Coroutine[Any, Any, object]]

logger = logging.getLogger("runcomfy_async")


class Service:
    """Runs `main` and whatever `spawn()` is given in one task group, in a task of its own.

    A task of its own, started on first use, so that a client may be entered and closed in
    different tasks (as web frameworks' startup and cleanup hooks and test fixtures do);
    close() cancels it and waits for it, so nothing outlives the client. From close() until
    open(), nothing starts: work handed over meanwhile is dropped (it is logged).

    Work spawned with `finish` (a cancel of a request still queued, a batch's own end) is
    let run to its end by close() first, within close()'s `linger`: cut, it would leave a
    billed request running that nobody tracks.
    """

    def __init__(self, main: Work, *, name: str) -> None:
        self._main = main
        self._name = name
        self._task: asyncio.Task[None] | None = None
        self._send: MemoryObjectSendStream[Work] | None = None
        self._receive: MemoryObjectReceiveStream[Work] | None = None
        self.closed = False
        self._finishing = 0  # `finish` work spawned and not ended
        self._finished: anyio.Event | None = None  # set when _finishing drops to 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def open(self) -> None:
        """Allow starting again after close() (the client was entered again)."""
        self.closed = False

    def start(self) -> None:
        """Start the task if it is not running (needs a running event loop)."""
        if self.running or self.closed:
            return
        self._send, self._receive = anyio.create_memory_object_stream[Work](math.inf)
        self._task = asyncio.get_running_loop().create_task(
            self._run(self._receive), name=self._name
        )

    def spawn(self, work: Work, *, finish: bool = False) -> bool:
        """Run `work` in the service (starting it if needed); never blocks. False when it
        was dropped (the service is closing). With `finish`, close() waits for it."""
        self.start()
        if self.closed or self._send is None:
            logger.debug("the client is closing: background work %r dropped", work)
            return False
        if finish:
            self._finishing += 1
            work = functools.partial(self._to_the_end, work)
        self._send.send_nowait(work)
        return True

    async def _to_the_end(self, work: Work) -> None:
        try:
            await work()
        finally:
            self._finishing -= 1
            if not self._finishing and self._finished is not None:
                self._finished.set()

    async def close(self, *, linger: float = 0.0) -> None:
        """Let the `finish` work end (at most `linger` s, shielded), then cancel everything
        the service runs and wait until it has stopped."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(linger):
            while self._finishing and self.running:  # it may spawn more such work
                self._finished = anyio.Event()
                await self._finished.wait()
        self.closed = True  # nothing may start from here on
        task = self._task
        try:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            for stream in (self._send, self._receive):
                if stream is not None:
                    stream.close()  # the receive side too, in case the task never ran
            self._send = self._receive = None
            self._task = None
            self._finishing = 0  # what was cut never ends

    async def _run(self, receive: MemoryObjectReceiveStream[Work]) -> None:
        try:
            async with anyio.create_task_group() as group, receive:
                group.start_soon(self._main)
                async for work in receive:
                    group.start_soon(_guarded, work)
        except Exception:  # the pool itself broke (a bug): say so; the next use restarts it
            logger.exception("the client's background service stopped")


async def _guarded(work: Work) -> None:
    """One piece of background work; its bug is logged and stops nothing else."""
    try:
        await work()
    except Exception:
        logger.exception("background work of the client failed")
