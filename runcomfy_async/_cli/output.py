"""What `runcomfy` prints and returns: errors and exit statuses, messages, JSON, amounts."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from .._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DownloadError,
    InsufficientBalanceError,
    InvalidInputError,
    NotFoundError,
    RequestFailedError,
    RunComfyError,
    ServerError,
    SubmissionUnknownError,
    TransportError,
    UnexpectedResponseError,
    WaitTimeoutError,
)
from .._wire import Result

__all__ = [
    "EPILOG",
    "EXIT_CODES",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_SAVED",
    "CommandError",
    "NotSavedError",
    "duration",
    "error",
    "exit_code",
    "leaf_error",
    "print_json",
    "result_json",
    "usd",
    "warn",
    "writable_folder",
]


class CommandError(Exception):
    """A problem the command line reports in one line and exits on, with its own exit status;
    `hint` is a second line saying what to do next (e.g. the command that waits again)."""

    def __init__(self, message: str, code: int = 2, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.hint = hint


EXIT_NOT_SAVED = 7
EXIT_INTERRUPTED = 130


class NotSavedError(CommandError):
    """The request succeeded (and was billed) but its outputs could not be saved."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, EXIT_NOT_SAVED, hint=hint)


#: Exit status by error class: the first class of an error's MRO found here decides.
EXIT_CODES: dict[type[BaseException], int] = {
    RunComfyError: 1,
    RequestFailedError: 1,  # failed or cancelled request (RequestCancelledError)
    InvalidInputError: 2,
    BadRequestError: 2,
    ConfigurationError: 2,  # also JournalMismatchError
    OSError: 2,  # a local file could not be read or written
    ValueError: 2,  # e.g. an empty or overlong request_id
    AuthenticationError: 3,  # also PermissionDeniedError
    InsufficientBalanceError: 3,
    APIError: 4,  # e.g. RateLimitError once retries are spent
    TransportError: 4,
    ServerError: 4,
    SubmissionUnknownError: 4,
    UnexpectedResponseError: 4,
    DownloadError: 4,
    NotFoundError: 5,
    WaitTimeoutError: 6,
    NotSavedError: EXIT_NOT_SAVED,  # succeeded, not saved: `runcomfy result ID --out DIR`
}

EPILOG = """\
exit status:
  0    ok
  1    job failure: a failed or cancelled request, or a batch with failures
  2    usage or invalid input (also a journal of another batch, a --max-cost refusal)
  3    authentication, permission or balance
  4    network, server, or a submit whose outcome is unknown
  5    not found (model or request_id)
  6    not finished in time (--timeout; result --out of an unfinished one): `runcomfy wait ID`
  7    succeeded, not saved: the outputs could not be written (`runcomfy result ID --out DIR`)
  130  interrupted (Ctrl-C)

The API key comes from RUNCOMFY_API_KEY (or RUNCOMFY_API_TOKEN) or --api-key-file PATH;
--simulate runs any command against an in-process simulator: no key, no network, no cost.
"""


def exit_code(exc: BaseException) -> int:
    """The exit status of an error, from EXIT_CODES."""
    if isinstance(exc, CommandError):
        return exc.code
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


def destination(text: str) -> Path | str:
    """Where `--out` saves outputs: an object-store prefix as it is (its URL and the
    [storage] extra checked now), else a writable folder (writable_folder)."""
    from .._store import is_store_url, open_store

    if is_store_url(text):
        open_store(text)
        return text
    return writable_folder(Path(text))


def writable_folder(path: Path, option: str = "--out") -> Path:
    """`path` as an absolute folder we can write into, created if missing; else CommandError,
    before anything is submitted (a result that cannot be saved is paid for and lost)."""
    refuse = f"nothing was submitted: {option} {path}"
    if path.exists() and not path.is_dir():
        raise CommandError(f"{refuse} is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"{refuse} cannot be created: {exc.strerror or exc}") from None
    try:  # the one sure test: os.access says yes to root on a read-only mount
        handle, probe = tempfile.mkstemp(prefix=".runcomfy-", suffix=".probe", dir=path)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise CommandError(f"{refuse} cannot be written: {exc.strerror or exc}") from None
    return path.resolve()


def leaf_error(exc: BaseException) -> BaseException:
    """The first error inside (nested) exception groups, from anyio task groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines too) made one space."""
    return " ".join(text.split())


def error(message: str) -> None:
    print(f"runcomfy: error: {one_line(message)}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(f"runcomfy: {one_line(message)}", file=sys.stderr, flush=True)


def print_json(value: Any) -> None:
    """One JSON object on one line of stdout."""
    print(json.dumps(value, ensure_ascii=False, default=str), flush=True)


def usd(amount: float) -> str:
    return f"${amount:,.4f}"


def duration(seconds: float) -> str:
    """`seconds` as `42.0 s`, `3m05s` or `2h04m`."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def result_json(result: Result) -> dict[str, Any]:
    """A Result as plain JSON data (`urls` lists every output URL)."""
    output = result.output
    return {
        "request_id": result.request_id,
        "state": result.state.value,
        "urls": output.urls if output is not None else [],
        "output": output.data if output is not None else None,
        "error": result.error,
        "cost": result.cost,
        "created_at": result.created_at.isoformat() if result.created_at else None,
        "finished_at": result.finished_at.isoformat() if result.finished_at else None,
    }
