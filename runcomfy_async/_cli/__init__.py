"""The `runcomfy` command line: commands, batch, output, codegen, wait, interrupt, manifest."""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

from .commands import main

__all__ = ["console", "main"]


def console() -> NoReturn:
    """The `runcomfy` script: main(), then the process's end.

    Once obstore (`--out s3://…`, `uploads=`) has run, its Tokio runtime's threads outlive
    the work and can abort the interpreter's shutdown (SIGABRT, exit status 134, after
    everything was written: seen about 1 run in 5 of a 96 MiB upload). Then the process
    ends here, its output flushed and its logs closed, without that shutdown.
    """
    code = main()
    if "obstore" in sys.modules:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        logging.shutdown()
        os._exit(code)
    raise SystemExit(code)
