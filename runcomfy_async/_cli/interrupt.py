"""Ctrl-C in `runcomfy`: the first ends the command cleanly through a cancel scope, a second
exits at once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator

import anyio

from .output import EXIT_INTERRUPTED, warn

__all__ = ["Interrupts", "catch_ctrl_c"]


class Interrupts:
    """The SIGINT handler: the first prints `message` and cancels `scope`; a second exits at
    once, without cleanup (e.g. while cancels are slow to answer)."""

    def __init__(self, message: str) -> None:
        self.scope = anyio.CancelScope()
        self.message = message
        self.count = 0

    def __call__(self) -> None:
        self.count += 1
        if self.count == 1:
            warn(self.message)
            self.scope.cancel()
            return
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os.write(2, b"runcomfy: interrupted again: exiting without cleanup\n")
        os._exit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def catch_ctrl_c(message: str) -> Iterator[Interrupts]:
    """Ctrl-C in the running loop goes to an Interrupts (wrap the work in its `scope`)."""
    handler = Interrupts(message)
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, handler)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread; Windows
        yield handler
        return
    try:
        yield handler
    finally:
        loop.remove_signal_handler(signal.SIGINT)
