"""The Client: configuration, session lifecycle, and submit/status/result/wait/run/cancel."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, overload
from urllib.parse import quote

import anyio
import msgspec

from . import _wire
from ._config import Timeouts, environ, resolve_api_key, resolve_base_url
from ._errors import ConfigurationError, ResultNotReadyError
from ._inputs import ModelInput, check_model_id, encode_inputs
from ._poll import PollPolicy, WaitSettings, wait_for
from ._retry import Clock, RetryPolicy, Sleep
from ._transport import CallKind, Transport
from ._wire import CancelOutcome, ModelInfo, Result, Status

if TYPE_CHECKING:
    import aiohttp

__all__ = ["Client", "Request"]

_SUBMIT = msgspec.json.Decoder(_wire.SubmitBody)
_STATUS = msgspec.json.Decoder(_wire.StatusBody)
_RESULT = msgspec.json.Decoder(_wire.ResultBody)
_CANCEL = msgspec.json.Decoder(_wire.CancelBody)
_MODEL = msgspec.json.Decoder(_wire.ModelBody)


class Request:
    """A submitted request: its `request_id`, its `model_id`, and shortcuts to the client."""

    __slots__ = ("_client", "model_id", "request_id")

    def __init__(self, request_id: str, model_id: str | None, client: Client) -> None:
        self.request_id = request_id
        self.model_id = model_id
        self._client = client

    async def status(self) -> Status:
        """Same as `client.status(request_id)`."""
        return await self._client.status(self.request_id)

    async def result(self) -> Result:
        """Same as `client.result(request_id)`."""
        return await self._client.result(self.request_id)

    async def wait(
        self,
        *,
        timeout: float | None = None,
        cancel_on_timeout: bool = False,
        cancel_on_interrupt: bool | None = None,
    ) -> Result:
        """Same as `client.wait(request)`."""
        return await self._client.wait(
            self,
            timeout=timeout,
            cancel_on_timeout=cancel_on_timeout,
            cancel_on_interrupt=cancel_on_interrupt,
        )

    async def cancel(self) -> CancelOutcome:
        """Same as `client.cancel(request_id)`."""
        return await self._client.cancel(self.request_id)

    def __repr__(self) -> str:
        return f"Request(request_id={self.request_id!r}, model_id={self.model_id!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return (self.request_id, self.model_id) == (other.request_id, other.model_id)

    def __hash__(self) -> int:
        return hash(self.request_id)


class Client:
    """An async client of the RunComfy Model API; use it as `async with rc.Client() as c:`.

    The key comes from `api_key`, else RUNCOMFY_API_KEY, else RUNCOMFY_API_TOKEN; the base URL
    from `base_url`, else RUNCOMFY_BASE_URL (https, or http to loopback only). `timeout` is
    seconds per call (or a Timeouts). One aiohttp session per client, opened on enter with
    `max_connections`; a `session` passed in is used as it is and not closed. `sleep`,
    `clock` and `rng` exist so tests can run in virtual time.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | Timeouts = 60.0,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        max_connections: int = 100,
        session: aiohttp.ClientSession | None = None,
        cancel_on_interrupt: bool = True,
        not_found_grace: float = 15.0,
        cancel_grace: float = 5.0,
        sleep: Sleep | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        env = environ()
        key = resolve_api_key(api_key, env)
        self.base_url = resolve_base_url(base_url, env)
        if isinstance(timeout, int | float):
            timeout = Timeouts(total=float(timeout), connect=min(10.0, float(timeout)))
        if max_connections < 1:
            raise ConfigurationError("max_connections must be at least 1")
        self._sleep: Sleep = sleep or anyio.sleep
        self._clock: Clock = clock or time.monotonic
        self._rng = rng or random.Random()
        self._cancel_on_interrupt = cancel_on_interrupt
        self._wait = WaitSettings(
            policy=poll or PollPolicy(), not_found_grace=not_found_grace, cancel_grace=cancel_grace
        )
        self._fresh: dict[str, float] = {}  # request_id -> clock time its 404 grace ends
        from . import __version__

        self._transport = Transport(
            api_key=key,
            base_url=self.base_url,
            timeouts=timeout,
            retry=retry or RetryPolicy(),
            max_connections=max_connections,
            user_agent=f"runcomfy-async/{__version__}",
            session=session,
            sleep=self._sleep,
            clock=self._clock,
            rng=self._rng,
        )

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r}, api_key='********')"

    async def __aenter__(self) -> Self:
        await self._transport.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session this client opened (a borrowed session stays open)."""
        await self._transport.close()

    # ------------------------------------------------------------------ the API

    @overload
    async def submit(self, model: ModelInput, /) -> Request: ...
    @overload
    async def submit(self, model: str, inputs: Mapping[str, Any], /) -> Request: ...

    async def submit(
        self, model: ModelInput | str, inputs: Mapping[str, Any] | None = None, /
    ) -> Request:
        """Queue one request and return its handle at once.

        Inputs are checked before anything is sent (InvalidInputError). If the call fails
        after its bytes may have reached RunComfy, SubmissionUnknownError is raised and the
        submit is never resent: a second send could create, and bill, a second job.
        """
        return await self._submit(model, inputs)

    async def _submit(self, model: ModelInput | str, inputs: Mapping[str, Any] | None) -> Request:
        model_id, body = encode_inputs(model, inputs)
        answer = await self._transport.call(
            CallKind.SUBMIT,
            "POST",
            f"/v1/models/{model_id}",
            _SUBMIT,
            body=body,
            submit_of=(model_id, model if inputs is None else inputs),
        )
        now = self._clock()
        self._fresh = {rid: end for rid, end in self._fresh.items() if end > now}
        self._fresh[answer.request_id] = now + self._wait.not_found_grace
        return Request(answer.request_id, model_id, self)

    async def status(self, request: Request | str) -> Status:
        """The request's current state; a failed or cancelled request is a state, not an error."""
        rid = _request_id(request)
        body = await self._transport.call(
            CallKind.STATUS, "GET", f"/v1/requests/{quote(rid, safe='')}/status", _STATUS
        )
        return _wire.status_from(body, rid)

    async def result(self, request: Request | str, *, include_cost: bool = True) -> Result:
        """The request's outcome: output on success, `error` on failure, or the current state
        while unfinished. Never raises for a state."""
        rid = _request_id(request)
        try:
            body = await self._transport.call(
                CallKind.RESULT,
                "GET",
                f"/v1/requests/{quote(rid, safe='')}/result",
                _RESULT,
                params={"include_cost": "true"} if include_cost else None,
            )
        except ResultNotReadyError:
            # RunComfy's 400005: not ready. Report the state /status knows instead.
            status = await self.status(rid)
            return Result(request_id=rid, state=status.state)
        return _wire.result_from(body, rid)

    async def wait(
        self,
        request: Request | str,
        *,
        timeout: float | None = None,
        cancel_on_timeout: bool = False,
        cancel_on_interrupt: bool | None = None,
    ) -> Result:
        """Poll until the request is terminal, and return its Result on success.

        Raises RequestFailedError or RequestCancelledError otherwise, and WaitTimeoutError
        after `timeout` seconds (the request goes on unless `cancel_on_timeout`). Polls that
        fail on the network are retried until the deadline, never taken as failure. If the
        waiting task is cancelled while the request is queued, a bounded, shielded cancel is
        sent (`cancel_on_interrupt`, default from the client) and CancelledError propagates.
        """
        rid = _request_id(request)
        return await wait_for(
            self,
            rid,
            timeout=timeout,
            fresh_until=self._fresh.get(rid),
            cancel_on_timeout=cancel_on_timeout,
            cancel_on_interrupt=(
                self._cancel_on_interrupt if cancel_on_interrupt is None else cancel_on_interrupt
            ),
            settings=self._wait,
            sleep=self._sleep,
            clock=self._clock,
            rng=self._rng,
        )

    @overload
    async def run(
        self,
        model: ModelInput,
        /,
        *,
        timeout: float | None = None,
        cancel_on_timeout: bool = False,
    ) -> Result: ...
    @overload
    async def run(
        self,
        model: str,
        inputs: Mapping[str, Any],
        /,
        *,
        timeout: float | None = None,
        cancel_on_timeout: bool = False,
    ) -> Result: ...

    async def run(
        self,
        model: ModelInput | str,
        inputs: Mapping[str, Any] | None = None,
        /,
        *,
        timeout: float | None = None,
        cancel_on_timeout: bool = False,
    ) -> Result:
        """Submit and wait: `timeout` (seconds) covers both. Raises as submit() and wait() do."""
        started = self._clock()
        request = await self._submit(model, inputs)
        left = None if timeout is None else max(0.0, timeout - (self._clock() - started))
        return await self.wait(request, timeout=left, cancel_on_timeout=cancel_on_timeout)

    async def cancel(self, request: Request | str) -> CancelOutcome:
        """Ask RunComfy to cancel a queued request. A running or finished one cannot be
        (outcome `not_cancellable`, and it is billed); that is reported, not raised."""
        rid = _request_id(request)
        body = await self._transport.call(
            CallKind.CANCEL, "POST", f"/v1/requests/{quote(rid, safe='')}/cancel", _CANCEL
        )
        return _wire.cancel_from(body, rid)

    async def model_info(self, model_id: str) -> ModelInfo:
        """The catalog entry of a model: input schema, base price in USD and its unit."""
        check_model_id(model_id)
        body = await self._transport.call(CallKind.CATALOG, "GET", f"/v1/models/{model_id}", _MODEL)
        return _wire.model_info_from(body, model_id)


def _request_id(request: Request | str) -> str:
    rid = request.request_id if isinstance(request, Request) else request
    if not isinstance(rid, str) or not rid or len(rid) > 256:
        raise ValueError(f"not a request_id: {rid!r}")
    return rid
