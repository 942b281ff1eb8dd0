"""The blocking side of SyncClient: its event loop thread, and plain iterators over async ones."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any, Generic, Self, TypeVar

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._batch import Batch
from ._errors import RunComfyError
from ._items import Item, Progress

__all__ = ["BlockingBatch", "BlockingIterator", "Loop"]

T = TypeVar("T")
_SLACK = 5.0  # seconds past the cancel grace that Ctrl-C waits for the cancels to land


class Loop:
    """An event loop of its own in a daemon thread (anyio's blocking portal), and calls
    into it that Ctrl-C cancels there before re-raising."""

    def __init__(self, cancel_grace: float) -> None:
        self.cancel_grace = cancel_grace
        self._lock = threading.Lock()
        self._portal_cm = start_blocking_portal("asyncio", name="runcomfy-sync-client")
        self.portal: BlockingPortal | None = self._portal_cm.__enter__()

    def close(self, aclose: Callable[[], Awaitable[object]] | None = None) -> None:
        """Run `aclose` in the loop (if given), then stop its thread. Idempotent."""
        with self._lock:
            portal, self.portal = self.portal, None
        if portal is None:
            return
        try:
            if aclose is not None:
                portal.call(aclose)
        finally:
            self._portal_cm.__exit__(None, None, None)

    def running(self) -> BlockingPortal:
        portal = self.portal
        if portal is None:
            raise RunComfyError("the client was closed")
        return portal

    def call(self, function: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run `function(*args, **kwargs)` in the loop and wait for it. Ctrl-C
        cancels it there (its shielded cancels included), waits for that, and re-raises."""
        portal = self.running()
        done = threading.Event()

        async def run() -> T:
            try:
                return await function(*args, **kwargs)
            finally:
                done.set()

        future = portal.start_task_soon(run)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            done.wait(self.cancel_grace + _SLACK)
            raise


class _Raised:
    """An exception the async iterator raised, carried to the consuming thread."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class BlockingIterator(Generic[T]):
    """A plain iterator over one of the Client's async iterators (watch, as_completed, map).

    A task in the client's loop reads the async iterator and hands each value over as it is
    taken, so nothing is read ahead. Leaving early (`close()`, `with`, or dropping it) ends
    that task, as leaving the async iteration would; Ctrl-C does the same, then re-raises.
    """

    def __init__(self, owner: Loop, source: AsyncIterable[T]) -> None:
        self._owner, self._source = owner, source
        self._stream: Any = None
        self._future: Any = None
        self._done = threading.Event()
        self._finished = False

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        if self._stream is None:
            self._start()
        try:
            value = self._owner.call(self._stream.receive)
        except anyio.EndOfStream:
            self.close()
            raise StopIteration from None
        except BaseException:
            self.close()
            raise
        if isinstance(value, _Raised):
            self.close()
            raise value.error
        return value  # type: ignore[no-any-return]

    def _start(self) -> None:
        portal = self._owner.running()
        send, self._stream = portal.call(anyio.create_memory_object_stream[object], 0)
        self._future = portal.start_task_soon(self._pump, send)

    async def _pump(self, send: Any) -> None:
        try:
            async with send, contextlib.AsyncExitStack() as stack:
                source = self._source
                if hasattr(source, "__aenter__"):
                    source = await stack.enter_async_context(source)  # type: ignore[arg-type]
                elif hasattr(source, "aclose"):
                    stack.push_async_callback(source.aclose)
                try:
                    async for value in source:
                        await send.send(value)
                except Exception as exc:  # the consumer gets it at its next step
                    await send.send(_Raised(exc))
        except anyio.BrokenResourceError:
            pass  # the consumer left
        finally:
            self._done.set()

    def close(self) -> None:
        """Stop iterating: end the reading task (a batch cancels what it queued) and wait."""
        self._finished = True
        if self._future is not None and not self._done.is_set():
            self._future.cancel()
            self._done.wait(self._owner.cancel_grace + _SLACK)
        stream, self._stream = self._stream, None
        if stream is not None:
            portal = self._owner.portal
            if portal is None:
                stream.close()
            else:
                with contextlib.suppress(RuntimeError):  # the loop is gone: nothing to close
                    portal.call(stream.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        future = getattr(self, "_future", None)
        if future is not None:  # dropped mid-iteration (a `break`): end it, never block here
            future.cancel()


class BlockingBatch(BlockingIterator[Item]):
    """What `SyncClient.map()` returns: a plain iterator of Items, in completion order."""

    def __init__(self, owner: Loop, batch: Batch) -> None:
        super().__init__(owner, batch)
        self._batch = batch

    @property
    def progress(self) -> Progress:
        """Live counts by state of the inputs read so far."""
        return self._batch.progress

    @property
    def unfinished(self) -> list[str]:
        """request_ids still running when the batch was ended early."""
        return self._batch.unfinished
