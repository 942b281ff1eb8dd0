"""One request from the command line: its id as soon as known, the wait (with Ctrl-C and
--timeout), and its outputs printed and saved, with the command that picks it up again."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import anyio

from .._client import Client
from .._errors import DownloadError, WaitTimeoutError
from .._wire import Result
from .interrupt import catch_ctrl_c
from .output import (
    EXIT_INTERRUPTED,
    CommandError,
    NotSavedError,
    print_json,
    result_json,
    usd,
    warn,
)

__all__ = ["again", "deliver", "wait_for"]

EXIT_TIMEOUT = 6
CANCEL_GRACE = 10.0  # seconds the cancel after a Ctrl-C may take


def again(args: argparse.Namespace, command: str, request_id: str, out: Path | str | None) -> str:
    """The `runcomfy` command line that picks the request up again, with this run's options
    of where to reach it (never the key itself: --api-key-file names a file)."""
    words = ["runcomfy", command, request_id]
    if out is not None:
        words += ["--out", str(out)]
    if getattr(args, "base_url", None):
        words += ["--base-url", args.base_url]
    if getattr(args, "api_key_file", None):
        words += ["--api-key-file", args.api_key_file]
    return shlex.join(words)


def submitted(request_id: str) -> None:
    """The request_id on stderr the moment it exists: whatever happens next, the user has it."""
    warn(f"submitted request {request_id}")


async def wait_for(
    args: argparse.Namespace,
    client: Client,
    request_id: str,
    *,
    timeout: float | None,
    out: Path | str | None,
    announce: bool = False,
) -> Result:
    """Wait for the request's Result; a timeout or Ctrl-C is a CommandError saying what became
    of the request (cancelled while queued, or running and billed) and how to wait again.
    `announce` prints the request_id as just submitted, once Ctrl-C is ours to handle."""
    wait_again = f"to wait for it again, run: {again(args, 'wait', request_id, out)}"
    with catch_ctrl_c(
        f"interrupted: cancelling request {request_id} if it is still queued "
        "(Ctrl-C again to quit at once)"
    ) as ctrl_c:
        if announce:
            submitted(request_id)
        with ctrl_c.scope:
            try:
                return await client.wait(request_id, timeout=timeout, cancel_on_interrupt=False)
            except WaitTimeoutError:
                raise CommandError(
                    f"request {request_id} did not finish within {args.timeout:g} s; it goes on",
                    EXIT_TIMEOUT,
                    hint=wait_again,
                ) from None
        with anyio.CancelScope(shield=True):
            [outcome] = await client.cancel_many([request_id], timeout=CANCEL_GRACE)
    if outcome.cancelled:
        raise CommandError(
            f"request {request_id} was cancelled while queued: it will not run or be billed",
            EXIT_INTERRUPTED,
        )
    if outcome.outcome == "unknown":
        message = f"request {request_id}: the cancel got no answer, so it may go on (billed)"
    else:
        message = f"request {request_id} was already running: it goes on and is billed"
    raise CommandError(message, EXIT_INTERRUPTED, hint=wait_again)


async def deliver(
    args: argparse.Namespace, client: Client, result: Result, out: Path | str | None
) -> int:
    """Print a successful Result (URLs, or one JSON object) and save its outputs into `out`.

    A save that fails is NotSavedError (exit 7) naming the command that fetches them again:
    the request was paid for, so its outputs must not be lost with the error.
    """
    rid = result.request_id
    failure: str | None = None
    files = []
    if out is not None:
        try:
            files = await client.download(result, out)
        except (DownloadError, OSError) as exc:
            failure = str(exc) if isinstance(exc, DownloadError) else (exc.strerror or str(exc))
    if args.json:
        saved = [
            {"url": f.url, "path": f.location or str(f.path), "size": f.size, "sha256": f.sha256}
            for f in files
        ]
        print_json({**result_json(result), "files": saved, "saved": failure is None})
    else:
        for url in result.output.urls if result.output is not None else []:
            print(url, flush=True)
        for f in files:
            warn(f"saved {f.location or f.path} ({f.size} bytes)")
    cost = f", cost {usd(result.cost)}" if result.cost is not None else ""
    if failure is not None:
        raise NotSavedError(
            f"request {rid} succeeded{cost} but its outputs were not saved: {failure}",
            hint=f"to fetch them again, run: {again(args, 'result', rid, out)}",
        )
    warn(f"request {rid} succeeded{cost}")
    return 0
