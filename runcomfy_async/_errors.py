"""The exception tree: every error a public method raises is one of these.

    RunComfyError
    ├── ConfigurationError (ValueError)         bad key, base URL or option
    │   ├── JournalMismatchError                a batch journal of another batch
    │   └── JournalBusyError                    a batch journal another run holds
    ├── InvalidInputError (ValueError)          inputs rejected before any call was made
    │   └── PreflightError                      a file input broke the model's media rules
    ├── TransportError                          the call failed on the network
    │   └── TransportTimeoutError (TimeoutError)
    ├── SubmissionUnknownError                  a submit may have reached RunComfy: never resent
    ├── UnexpectedResponseError                 an answer we could not read
    ├── APIError                                RunComfy answered with an error
    │   ├── AuthenticationError                 401, 400004
    │   │   └── PermissionDeniedError           403, 403001
    │   ├── InsufficientBalanceError            402, 400002
    │   ├── NotFoundError (LookupError)         404, 404001
    │   │   └── UnknownModelError               a model id the catalog lacks (.suggestions)
    │   ├── BadRequestError                     400, 400001, 422 and other 4xx
    │   ├── RateLimitError                      429 (.retry_after), after the rate-limit patience
    │   └── ServerError                         5xx, 408: RunComfy could not answer (transient)
    ├── RequestFailedError                      the request ran and produced no output
    │   ├── RequestCancelledError               the request was cancelled
    │   └── ModelMismatchError                  its result is of another model than submitted
    ├── WaitTimeoutError (TimeoutError)         wait()/run() deadline passed; the request lives on
    ├── DownloadError                           an output file was refused or could not be saved
    └── UploadError                             a local file input could not be uploaded

Messages never contain the API key. error_class() is the one table from an HTTP status and
RunComfy's error_code to the class of the error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "DownloadError",
    "InsufficientBalanceError",
    "InvalidInputError",
    "JournalBusyError",
    "JournalMismatchError",
    "ModelMismatchError",
    "NotFoundError",
    "PermissionDeniedError",
    "PreflightError",
    "RateLimitError",
    "RequestCancelledError",
    "RequestFailedError",
    "RunComfyError",
    "ServerError",
    "SubmissionUnknownError",
    "TransportError",
    "TransportTimeoutError",
    "UnexpectedResponseError",
    "UnknownModelError",
    "UploadError",
    "WaitTimeoutError",
]

_BODY_LIMIT = 2_000  # characters of a raw body kept on an error


def _truncate(text: str) -> str:
    if len(text) <= _BODY_LIMIT:
        return text
    return text[:_BODY_LIMIT] + f"… [{len(text) - _BODY_LIMIT} more characters]"


class RunComfyError(Exception):
    """Base class of every error raised by runcomfy_async."""


class ConfigurationError(RunComfyError, ValueError):
    """The client was configured wrongly (missing key, unsafe base URL, bad option)."""


class JournalMismatchError(ConfigurationError):
    """The journal belongs to another batch: a key it holds has different inputs now."""


class JournalBusyError(ConfigurationError):
    """Another run holds the journal. `holder` says which process, on which host, since when
    (epoch seconds), as far as it wrote it down."""

    def __init__(self, message: str, *, holder: dict[str, Any]) -> None:
        super().__init__(message)
        self.holder = holder


class InvalidInputError(RunComfyError, ValueError):
    """Inputs broke a rule of the model's schema; nothing was sent or paid for."""

    def __init__(self, message: str, *, model_id: str | None = None, field: str | None = None):
        super().__init__(message)
        self.model_id = model_id
        self.field = field


class PreflightError(InvalidInputError):
    """File inputs broke the model's media rules or could not be fetched; nothing was submitted.

    `problems` has one line per failure, each starting with the input's name; `field` is the
    first failing input.
    """

    def __init__(
        self, problems: Sequence[str], *, model_id: str | None = None, field: str | None = None
    ) -> None:
        self.problems = tuple(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            lines = "".join(f"\n  - {line}" for line in self.problems)
            message = f"pre-flight found {len(self.problems)} problems with file inputs:{lines}"
        super().__init__(message, model_id=model_id, field=field)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems,), {"model_id": self.model_id, "field": self.field})


class TransportError(RunComfyError):
    """The call could not be completed on the network (after any retries)."""


class TransportTimeoutError(TransportError, TimeoutError):
    """The call timed out (after any retries)."""


class SubmissionUnknownError(RunComfyError):
    """A submit failed after its bytes may have reached RunComfy.

    A job may or may not exist, and may be billed. The SDK never resends such a submit on its
    own: check your RunComfy dashboard, or resubmit `inputs` deliberately.
    """

    def __init__(self, message: str, *, model_id: str, inputs: Any) -> None:
        super().__init__(message)
        self.model_id = model_id
        self.inputs = inputs


class UnexpectedResponseError(RunComfyError):
    """RunComfy answered with something the SDK could not read."""

    def __init__(self, message: str, *, status_code: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = _truncate(body)


class APIError(RunComfyError):
    """RunComfy answered with an error: HTTP status, RunComfy `error_code` and message."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        error_code: int | str | None = None,
        body: str = "",
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.error_code = error_code
        self.body = _truncate(body)
        self.retry_after = retry_after
        #: The request the call was about (status, result, cancel), named in the message too.
        self.request_id = request_id

    def __str__(self) -> str:
        code = f", error_code {self.error_code}" if self.error_code is not None else ""
        about = f"request {self.request_id}: " if self.request_id is not None else ""
        return f"{about}{self.message} (HTTP {self.status_code}{code})"


class AuthenticationError(APIError):
    """The API key is missing, wrong, expired, or the account is inactive."""


class PermissionDeniedError(AuthenticationError):
    """The key is valid but may not use this model or request."""


class InsufficientBalanceError(APIError):
    """The account balance does not cover the request."""


class NotFoundError(APIError, LookupError):
    """The model or request_id does not exist (or the request expired)."""


class UnknownModelError(NotFoundError):
    """The model id is not in RunComfy's catalog (it answered 404, or 400001); nothing was
    submitted. `suggestions` holds the closest ids the catalog does list, best first."""

    def __init__(
        self, message: str, *, model_id: str, suggestions: tuple[str, ...] = (), **answer: Any
    ) -> None:
        super().__init__(message, **answer)  # RunComfy's: status_code, error_code, body
        self.model_id = model_id
        self.suggestions = suggestions


class BadRequestError(APIError):
    """RunComfy rejected the call's content (invalid model id, inputs, parameters)."""


class ResultNotReadyError(BadRequestError):
    """RunComfy's 400005: the result is not ready yet (result() turns it into a state)."""


class RateLimitError(APIError):
    """Too many calls, for longer than `RetryPolicy.rate_limit_patience`; nothing was created.
    `retry_after` is the wait RunComfy last asked for in seconds, if any."""


class ServerError(APIError):
    """RunComfy could not answer: HTTP 5xx, or 408 (it timed out reading the call).

    Transient: reads are retried and polling goes on; a submit that got one is an unknown
    outcome (SubmissionUnknownError), since the job may exist.
    """


class RequestFailedError(RunComfyError):
    """The request reached a terminal state without output; `error` is RunComfy's own."""

    def __init__(self, message: str, *, request_id: str, error: Any = None) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.error = error


class RequestCancelledError(RequestFailedError):
    """The request was cancelled before it produced output."""


class ModelMismatchError(RequestFailedError):
    """RunComfy's result names another model than the one submitted (`model_id` against
    `submitted_model_id`): it ran and is billed, but its output is not taken as a success
    of the input. `result` is the Result as read."""

    def __init__(
        self,
        message: str,
        *,
        request_id: str,
        model_id: str,
        submitted_model_id: str,
        result: Any = None,
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.model_id = model_id
        self.submitted_model_id = submitted_model_id
        self.result = result


class WaitTimeoutError(RunComfyError, TimeoutError):
    """The wait's deadline passed; the request goes on and can be waited on again."""

    def __init__(
        self, message: str, *, request_id: str, timeout: float, cancel_outcome: Any = None
    ) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.timeout = timeout
        #: The CancelOutcome when `cancel_on_timeout=True` sent a cancel, else None.
        self.cancel_outcome = cancel_outcome


class DownloadError(RunComfyError):
    """An output file was refused (unsafe URL, size, name clash) or could not be saved.

    `url` is the URL asked for without its query string or user info (a signature may hide
    there); `reason` says what went wrong. No partial file is left behind.
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"download of {url} failed: {reason}")
        self.url = url
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.url, self.reason))


class UploadError(RunComfyError):
    """A local file input could not be uploaded to the client's `uploads` store; the submit
    that needed it was not sent."""


# ---------------------------------------------------------------- which class an answer is

_BY_ERROR_CODE: dict[int | str, type[APIError]] = {
    400001: BadRequestError,
    400002: InsufficientBalanceError,
    400004: AuthenticationError,
    400005: ResultNotReadyError,
    403001: PermissionDeniedError,
    404001: NotFoundError,
}
_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientBalanceError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: ServerError,
    422: BadRequestError,
    429: RateLimitError,
}


def error_class(status_code: int, error_code: int | str | None) -> type[APIError]:
    """The exception class for an error answer (the one table, tested row by row)."""
    if error_code is not None and error_code in _BY_ERROR_CODE:
        return _BY_ERROR_CODE[error_code]
    if status_code in _BY_STATUS:
        return _BY_STATUS[status_code]
    if status_code >= 500:
        return ServerError
    if 400 <= status_code < 500:
        return BadRequestError
    return APIError
