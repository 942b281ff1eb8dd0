"""The only module that touches aiohttp: auth, retries, and mapping failures to the error tree."""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Mapping
from typing import Any, TypeVar

import aiohttp
import msgspec
from yarl import URL

from . import _wire
from ._config import Secret, Timeouts
from ._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    InsufficientBalanceError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResultNotReadyError,
    RunComfyError,
    ServerError,
    SubmissionUnknownError,
    TransportError,
    TransportTimeoutError,
    UnexpectedResponseError,
)
from ._limiter import RateLimiter
from ._retry import (
    Backpressure,
    Clock,
    RetryBudget,
    RetryPolicy,
    Sleep,
    backoff,
    parse_retry_after,
    retry_after_delay,
)

logger = logging.getLogger("runcomfy_async")

T = TypeVar("T", bound=_wire._Body)


class CallKind(enum.Enum):
    """What an API call does; decides whether it may be retried after the bytes left."""

    SUBMIT = "submit"
    STATUS = "status"
    RESULT = "result"
    CANCEL = "cancel"
    CATALOG = "catalog"


# RunComfy's error_code picks the class first; the HTTP status decides when there is none.
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
_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


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


def api_error(
    status_code: int, body: _wire._Body | None, raw: bytes, retry_after: float | None = None
) -> APIError:
    """Build the typed error for an answer; the body may be unreadable."""
    code = _wire.error_code_of(body) if body is not None else None
    message = _wire.error_message_of(body) if body is not None else None
    text = raw.decode("utf-8", "replace")
    cls = error_class(_implied_status(status_code, code), code)
    return cls(
        message or f"RunComfy answered HTTP {status_code}",
        status_code=status_code,
        error_code=code,
        body=text,
        retry_after=retry_after,
    )


def _implied_status(status_code: int, code: int | str | None) -> int:
    """For an error inside an HTTP 2xx answer, the status its RunComfy code implies
    (500001 -> 500), so a server error there is retried like one, not taken as final."""
    if 200 <= status_code < 300 and isinstance(code, int) and 100_000 <= code <= 599_999:
        return code // 1000
    return status_code


def _embedded(error: APIError) -> APIError:
    """An error inside a 2xx answer: a server error goes the way of a 5xx (retried, or an
    unknown outcome for a submit); any other is final."""
    if isinstance(error, ServerError):
        return error
    raise error


def _decode_error_body(raw: bytes) -> _wire.ErrorBody | None:
    try:
        return _ERROR_DECODER.decode(raw)
    except _UNREADABLE:
        return None


_ERROR_DECODER = msgspec.json.Decoder(_wire.ErrorBody)
# What decoding a hostile body can raise (msgspec raises RecursionError on deep nesting).
_UNREADABLE = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)


class _Attempt(enum.Enum):
    """How far a failed attempt got: this decides whether a submit may be retried."""

    NOT_SENT = "not sent"  # nothing reached the server: always safe to retry
    MAYBE_SENT = "maybe sent"  # the server may have acted on it


def _classify(exc: BaseException) -> _Attempt:
    # Connector errors (DNS, refused, TLS, connect timeout, pool wait) happen before a byte
    # of the request is written; everything else may follow a request the server has read.
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return _Attempt.NOT_SENT
    return _Attempt.MAYBE_SENT


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, asyncio.TimeoutError | TimeoutError)


def _describe(exc: BaseException) -> str:
    # ClientResponseError and kin carry request headers (the token) in their repr and
    # request_info: name them only by type.
    if isinstance(exc, aiohttp.ClientResponseError):
        return type(exc).__name__
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _cause(exc: BaseException) -> BaseException | None:
    return None if isinstance(exc, aiohttp.ClientResponseError) else exc


class Transport:
    """Sends API calls with auth, timeouts, retries, the 429 gate and the retry budget."""

    def __init__(
        self,
        *,
        api_key: Secret,
        base_url: str,
        timeouts: Timeouts,
        retry: RetryPolicy,
        max_connections: int,
        user_agent: str,
        session: aiohttp.ClientSession | None,
        limiter: RateLimiter | None,
        sleep: Sleep,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self._key = api_key
        self._base = base_url
        self._timeout = aiohttp.ClientTimeout(total=timeouts.total, connect=timeouts.connect)
        self._retry = retry
        self._max_connections = max_connections
        self._user_agent = user_agent
        self._session = session
        self._owns_session = session is None
        self._limiter = limiter
        self._sleep = sleep
        self._rng = rng
        self.budget = RetryBudget(retry)
        self.backpressure = Backpressure(clock=clock, sleep=sleep, rng=rng)

    async def open(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, limit_per_host=self._max_connections
            )
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    def check_open(self) -> aiohttp.ClientSession:
        """The session, or a RuntimeError telling how to open the client."""
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("the client is not open: use `async with Client() as client:`")
        return session

    async def call(
        self,
        kind: CallKind,
        method: str,
        path: str,
        decoder: msgspec.json.Decoder[T],
        *,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
        submit_of: tuple[str, Any] | None = None,
    ) -> T:
        """Make one API call (retrying where safe) and decode its 2xx answer.

        `path` is already quoted. For a submit, `submit_of` is (model_id, inputs), carried by
        SubmissionUnknownError if the outcome cannot be known.
        """
        session = self.check_open()
        url = URL(self._base + path, encoded=True)
        if params:
            url = url.with_query(params)
        headers = {
            "Authorization": f"Bearer {self._key.reveal()}",
            "Accept": "application/json",
            "User-Agent": self._user_agent,
        }
        if body is not None:
            headers["Content-Type"] = "application/json"
        retry = 0
        while True:
            await self.backpressure.wait()  # after a 429, every call waits its turn
            if self._limiter is not None:
                await self._limiter.acquire()
            failure: RunComfyError
            retry_after: float | None = None
            timed_out = False
            try:
                async with session.request(
                    method,
                    url,
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                    timeout=self._timeout,
                ) as response:
                    status = response.status
                    raw = await response.read()
                    header_retry_after = response.headers.get("Retry-After")
            except aiohttp.ClientError as exc:
                stage = _classify(exc)
                timed_out = _is_timeout(exc)
                cls = TransportTimeoutError if timed_out else TransportError
                failure = cls(f"{method} {path}: {stage.value}: {_describe(exc)}")
                failure.__cause__ = _cause(exc)
            except TimeoutError as exc:  # aiohttp's total timeout is a bare TimeoutError
                stage, timed_out = _Attempt.MAYBE_SENT, True
                failure = TransportTimeoutError(f"{method} {path}: timed out after sending")
                failure.__cause__ = exc
            else:
                logger.debug("%s %s -> HTTP %d (%d bytes)", method, path, status, len(raw))
                if 200 <= status < 300:
                    decoded = self._decode_ok(status, raw, decoder, kind, path, submit_of)
                    if isinstance(decoded, RunComfyError):
                        failure, stage = decoded, _Attempt.MAYBE_SENT
                    else:
                        self.budget.refund()
                        return decoded
                elif 300 <= status < 400:
                    failure = UnexpectedResponseError(
                        f"{method} {path}: RunComfy answered a redirect (HTTP {status}); "
                        "API calls never follow redirects",
                        status_code=status,
                    )
                    if kind is CallKind.SUBMIT:  # the server read it: a job may exist
                        raise self._unknown(submit_of, failure) from failure
                    raise failure
                else:
                    retry_after = parse_retry_after(header_retry_after)
                    failure = api_error(status, _decode_error_body(raw), raw, retry_after)
                    if status not in _RETRYABLE_STATUS:
                        raise failure
                    # A 429 is an explicit refusal: no job exists. A 5xx may follow one.
                    stage = _Attempt.NOT_SENT if status == 429 else _Attempt.MAYBE_SENT

            if kind is CallKind.SUBMIT and stage is _Attempt.MAYBE_SENT:
                raise self._unknown(submit_of, failure) from failure
            if retry + 1 >= self._retry.max_attempts or not self.budget.try_spend(
                timeout=timed_out
            ):
                raise failure
            if retry_after is not None:
                delay = retry_after_delay(self._retry, retry_after, retry, self._rng)
            else:
                delay = backoff(self._retry, retry, self._rng)
            logger.info(
                "%s %s failed (%s); retry %d in %.2fs", method, path, failure, retry + 1, delay
            )
            if isinstance(failure, RateLimitError):
                self.backpressure.pause(delay)  # the whole client slows down
            else:
                await self._sleep(delay)
            retry += 1

    def _decode_ok(
        self,
        status: int,
        raw: bytes,
        decoder: msgspec.json.Decoder[T],
        kind: CallKind,
        path: str,
        submit_of: tuple[str, Any] | None,
    ) -> T | RunComfyError:
        try:
            decoded = decoder.decode(raw)
        except _UNREADABLE as exc:
            # An embedded error in a body of the wrong shape is still an error answer.
            embedded = _decode_error_body(raw)
            if embedded is not None and _wire.error_code_of(embedded) is not None:
                return _embedded(api_error(status, embedded, raw))
            failure = UnexpectedResponseError(
                f"{kind.value} answer could not be read: {exc}",
                status_code=status,
                body=raw.decode("utf-8", "replace"),
            )
            failure.__cause__ = exc
            return failure
        if _wire.error_code_of(decoded) is not None:
            # Some RunComfy APIs answer HTTP 200 with an error body.
            return _embedded(api_error(status, decoded, raw))
        return decoded

    def _unknown(
        self, submit_of: tuple[str, Any] | None, failure: RunComfyError
    ) -> SubmissionUnknownError:
        model_id, inputs = submit_of if submit_of is not None else ("?", None)
        return SubmissionUnknownError(
            f"submit to {model_id} may have reached RunComfy ({failure}); it was not resent, "
            "so as not to pay twice: check your requests before submitting these inputs again",
            model_id=model_id,
            inputs=inputs,
        )
