"""Request: the handle of one submitted request, delegating every call to its client."""

from __future__ import annotations

from typing import Protocol

from ._wire import CancelOutcome, Result, Status

__all__ = ["Request"]


class Calls(Protocol):
    """What a Request's shortcuts call (the Client provides them)."""

    async def status(self, request: Request | str) -> Status: ...
    async def result(self, request: Request | str, *, include_cost: bool = True) -> Result: ...
    async def wait(
        self,
        request: Request | str,
        *,
        timeout: float | None = None,
        cancel_on_timeout: bool = False,
        cancel_on_interrupt: bool | None = None,
    ) -> Result: ...
    async def cancel(self, request: Request | str) -> CancelOutcome: ...


class Request:
    """A submitted request: its `request_id`, its `model_id`, and shortcuts to the client."""

    __slots__ = ("_client", "model_id", "request_id", "submitted_at")

    def __init__(
        self,
        request_id: str,
        model_id: str | None,
        client: Calls,
        *,
        submitted_at: float | None = None,
    ) -> None:
        self.request_id = request_id
        self.model_id = model_id
        self.submitted_at = submitted_at  # client clock seconds, when this client submitted it
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
