"""The only module that touches aiohttp: auth, retries, and mapping failures to the error tree."""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import msgspec
from yarl import URL

from . import _wire
from ._apierror import UNREADABLE, api_error, decode_error_body, implied_status
from ._config import Secret, Timeouts
from ._errors import (
    RunComfyError,
    SubmissionUnknownError,
    TransportError,
    TransportTimeoutError,
    UnexpectedResponseError,
)
from ._limiter import AdaptiveRate, RateLimiter
from ._retry import (
    RATE_LIMITED,
    CallKind,
    Clock,
    Decision,
    Happened,
    RetryBudget,
    RetryPolicy,
    Sleep,
    decide,
    delay_before,
    parse_retry_after,
    rate_limited_delay,
)
from ._telemetry import CallProbe, NoTelemetry, Telemetry, about, route_of

logger = logging.getLogger("runcomfy_async")

T = TypeVar("T", bound=_wire.Body)


@dataclass(slots=True)
class _Reply:
    """An HTTP answer as read, its text already scrubbed of the key."""

    status: int
    reason: str
    raw: bytes
    retry_after: str | None


@dataclass(slots=True)
class _Lost:
    """An attempt that got no answer: how far it got, and what aiohttp said (scrubbed)."""

    happened: Happened
    text: str
    timeout: bool


@dataclass(slots=True)
class _Judged:
    """A failed attempt, ready for the decision table."""

    failure: RunComfyError
    happened: Happened
    status: int | None = None
    retry_after: float | None = None
    timeout: bool = False

    @property
    def rate_limited(self) -> bool:
        return self.status == RATE_LIMITED and self.happened in _ANSWERS


_ANSWERS = (Happened.ANSWERED, Happened.EMBEDDED_ERROR)


def _describe(exc: BaseException) -> str:
    # ClientResponseError and kin carry request headers (the token) in their repr and
    # request_info: name them only by type.
    if isinstance(exc, aiohttp.ClientResponseError):
        return type(exc).__name__
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _about_path(path: str) -> dict[str, str | None]:
    _, request_id, model_id = route_of(path)
    return about(request_id, model_id)


@functools.lru_cache(maxsize=64)
def _query_string(params: tuple[tuple[str, str], ...]) -> str:
    """`params` encoded as yarl's `with_query` encodes them, once per distinct set: the
    encoding cost each /result call (its include_cost) ~3 us."""
    return URL("http://query").with_query(params).raw_query_string


def _scope(kind: CallKind) -> str:
    """The pace a call shares: RunComfy may limit submits apart from everything else."""
    return "submit" if kind is CallKind.SUBMIT else "other"


class Transport:
    """Sends API calls with auth, timeouts, retries, the learnt pace and the retry budget.

    Server text (bodies, reason phrases, aiohttp's messages) is scrubbed of the key the
    moment it arrives, so nothing built from it can show the key. aiohttp's own exceptions
    are never chained (their frames hold the request headers): their type and message are
    kept in ours.
    """

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
        telemetry: Telemetry | None = None,
    ) -> None:
        self._telemetry: Telemetry = telemetry or NoTelemetry()
        self._key = api_key
        base = URL(base_url, encoded=True)  # checked by resolve_base_url
        self._scheme, self._authority = base.scheme, base.raw_authority
        self._prefix = base.raw_path.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeouts.total, connect=timeouts.connect)
        self._retry = retry
        self._max_connections = max_connections
        self._user_agent = user_agent
        self._session = session
        self._owns_session = session is None
        self._limiter = limiter
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self.budget = RetryBudget(retry)
        self.submits = 0  # submits in call(): while any is, pollers let them go first
        self.pace = AdaptiveRate(clock=clock, sleep=sleep)

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

    def scrub(self, text: str) -> str:
        """`text` without the client's key in any form (see Secret.scrub)."""
        return self._key.scrub(text)

    @property
    def connections(self) -> int:
        """The connection pool's size (`max_connections`)."""
        return self._max_connections

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
        rate_limit_until: float | None = None,
    ) -> T:
        """Make one API call (retrying where the decision table allows) and decode its 2xx.

        `path` is already quoted. For a submit, `submit_of` is (model_id, inputs), carried by
        SubmissionUnknownError if the outcome cannot be known. 429s are waited out until
        `rate_limit_until` (client clock; default: the policy's patience from now).
        """
        submit = kind is CallKind.SUBMIT
        if submit:
            self.submits += 1
        try:
            with self._telemetry.call(kind.value, method, path) as probe:
                return await self._call(
                    kind, method, path, decoder, body, params, submit_of, rate_limit_until, probe
                )
        finally:
            if submit:
                self.submits -= 1

    async def _call(
        self,
        kind: CallKind,
        method: str,
        path: str,
        decoder: msgspec.json.Decoder[T],
        body: bytes | None,
        params: Mapping[str, str] | None,
        submit_of: tuple[str, Any] | None,
        rate_limit_until: float | None,
        probe: CallProbe,
    ) -> T:
        session = self.check_open()
        url = URL.build(  # parsing the joined string cost each call ~1.5 us more
            scheme=self._scheme,
            authority=self._authority,
            path=self._prefix + path,
            query_string=_query_string(tuple(params.items())) if params else "",
            encoded=True,
        )
        headers = {
            "Authorization": self._key.bearer(),  # its repr hides the key
            "Accept": "application/json",
            "User-Agent": self._user_agent,
        }
        if body is not None:
            headers["Content-Type"] = "application/json"
        if rate_limit_until is None:
            rate_limit_until = self._clock() + self._retry.rate_limit_patience
        retry = 0  # retries after failures (429s are never budgeted)
        while True:
            if self._limiter is not None:
                await self._limiter.acquire()
            ticket = await self.pace.acquire(_scope(kind))
            reply = await self._exchange(session, method, url, body, headers)
            if isinstance(reply, _Lost):
                judged = _Judged(
                    (TransportTimeoutError if reply.timeout else TransportError)(
                        f"{method} {path}: {reply.happened.value}: {reply.text}"
                    ),
                    reply.happened,
                    timeout=reply.timeout,
                )
            else:
                if logger.isEnabledFor(logging.DEBUG):  # its `extra` parses the path
                    logger.debug(
                        "%s %s -> HTTP %d (%d bytes)",
                        *(method, path, reply.status, len(reply.raw)),
                        extra=_about_path(path),
                    )
                probe.answered(reply.status)
                decoded = self._judge(kind, method, path, reply, decoder)
                if not isinstance(decoded, _Judged):
                    self.pace.answered(ticket, rate_limited=False)
                    self.budget.refund()
                    return decoded
                judged = decoded
                self.pace.answered(
                    ticket,
                    rate_limited=judged.rate_limited,
                    retry_after=judged.retry_after if judged.rate_limited else None,
                )
            failure = judged.failure
            decision = decide(kind, judged.happened, judged.status)
            if decision is Decision.RAISE:
                raise failure
            if decision is Decision.UNKNOWN_OUTCOME:
                raise self._unknown(submit_of, failure) from failure
            if judged.rate_limited:  # nothing was done: wait, while the whole pace adapts
                delay = rate_limited_delay(self._retry, judged.retry_after, self._rng)
                if self._clock() + delay > rate_limit_until:
                    raise failure
            else:
                if retry + 1 >= self._retry.max_attempts or not self.budget.try_spend(
                    timeout=judged.timeout
                ):
                    raise failure
                delay = delay_before(self._retry, judged.retry_after, retry, self._rng)
                retry += 1
            logger.info(
                "%s %s failed (%s); again in %.2fs",
                *(method, path, failure, delay),
                extra=_about_path(path),
            )
            probe.retrying(delay, rate_limited=judged.rate_limited)
            await self._sleep(delay)

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        body: bytes | None,
        headers: Mapping[str, str],
    ) -> _Reply | _Lost:
        """One attempt on the wire. Nothing raised here is kept: its frames hold the headers."""
        try:
            async with session.request(
                method,
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                raw = await response.read()
                return _Reply(
                    response.status,
                    self._key.scrub(response.reason or ""),
                    self._key.scrub_bytes(raw),
                    response.headers.get("Retry-After"),
                )
        except aiohttp.ClientError as exc:
            # Connector errors (DNS, refused, TLS, connect timeout, pool wait) happen before
            # a byte of the call is written; anything else may follow a call the server read.
            timeout = isinstance(exc, TimeoutError)
            if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
                happened = Happened.CONNECT_FAILED
            else:
                happened = Happened.TIMED_OUT if timeout else Happened.SEND_FAILED
            return _Lost(happened, self._key.scrub(_describe(exc)), timeout)
        except TimeoutError:  # aiohttp's total timeout is a bare TimeoutError
            return _Lost(Happened.TIMED_OUT, "TimeoutError", True)

    def _judge(
        self,
        kind: CallKind,
        method: str,
        path: str,
        reply: _Reply,
        decoder: msgspec.json.Decoder[T],
    ) -> T | _Judged:
        """The decoded 2xx answer, or what went wrong, for the decision table."""
        status, raw = reply.status, reply.raw
        if 200 <= status < 300:
            try:
                decoded = decoder.decode(raw)
            except UNREADABLE as exc:
                # An embedded error in a body of the wrong shape is still an error answer.
                embedded = decode_error_body(raw)
                if embedded is not None and _wire.error_code_of(embedded) is not None:
                    return self._embedded(status, embedded, raw)
                failure = UnexpectedResponseError(
                    f"{kind.value} answer could not be read: {self._key.scrub(str(exc))}",
                    status_code=status,
                    body=raw.decode("utf-8", "replace"),
                )
                failure.__cause__ = exc
                return _Judged(failure, Happened.UNREADABLE, status)
            if _wire.error_code_of(decoded) is not None:
                return self._embedded(status, decoded, raw)  # some APIs answer 200 + error
            return decoded
        if 300 <= status < 400:
            failure = UnexpectedResponseError(
                f"{method} {path}: RunComfy answered a redirect (HTTP {status}); "
                "API calls never follow redirects",
                status_code=status,
            )
            return _Judged(failure, Happened.ANSWERED, status)
        retry_after = parse_retry_after(reply.retry_after)
        error = api_error(status, decode_error_body(raw), raw, retry_after, reply.reason)
        return _Judged(error, Happened.ANSWERED, status, retry_after)

    def _embedded(self, status: int, body: _wire.Body, raw: bytes) -> _Judged:
        error = api_error(status, body, raw)
        implied = implied_status(error.error_code)
        return _Judged(error, Happened.EMBEDDED_ERROR, implied)

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
