"""A client's one long-lived background task: the poller pool and batches' background work."""

from __future__ import annotations

import asyncio
import contextlib
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
    """

    def __init__(self, main: Work, *, name: str) -> None:
        self._main = main
        self._name = name
        self._task: asyncio.Task[None] | None = None
        self._send: MemoryObjectSendStream[Work] | None = None
        self._receive: MemoryObjectReceiveStream[Work] | None = None
        self.closed = False

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

    def spawn(self, work: Work) -> bool:
        """Run `work` in the service (starting it if needed); never blocks. False when it
        was dropped (the service is closing)."""
        self.start()
        if self.closed or self._send is None:
            logger.debug("the client is closing: background work %r dropped", work)
            return False
        self._send.send_nowait(work)
        return True

    async def close(self) -> None:
        """Cancel everything the service runs and wait until it has stopped."""
        self.closed = True  # before the first await: nothing may start from here on
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
