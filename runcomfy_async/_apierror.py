"""From an error answer to the typed APIError: RunComfy's error_code first, else the HTTP status."""

from __future__ import annotations

import msgspec

from . import _wire
from ._errors import APIError, error_class

__all__ = ["UNREADABLE", "api_error", "decode_error_body", "implied_status"]


# RunComfy's error_code picks the class first; the HTTP status decides when there is none.
def api_error(
    status_code: int,
    body: _wire.Body | None,
    raw: bytes,
    retry_after: float | None = None,
    reason: str = "",
) -> APIError:
    """Build the typed error for an answer (already scrubbed); the body may be unreadable."""
    code = _wire.error_code_of(body) if body is not None else None
    message = _wire.error_message_of(body) if body is not None else None
    text = raw.decode("utf-8", "replace")
    implied = implied_status(code) if 200 <= status_code < 300 else None
    cls = error_class(implied or status_code, code)
    default = f"RunComfy answered HTTP {status_code}" + (f" {reason}" if reason else "")
    return cls(
        message or default,
        status_code=status_code,
        error_code=code,
        body=text,
        retry_after=retry_after,
    )


def implied_status(code: int | str | None) -> int | None:
    """The HTTP status a RunComfy error_code implies (500001 -> 500, 400005 -> 400), if any:
    for an error inside a 2xx answer, it decides as that status would."""
    if isinstance(code, int) and 100_000 <= code <= 599_999:
        return code // 1000
    return None


def decode_error_body(raw: bytes) -> _wire.ErrorBody | None:
    """The error fields of an answer, or None when its body cannot be read."""
    try:
        return _ERROR_DECODER.decode(raw)
    except UNREADABLE:
        return None


_ERROR_DECODER = msgspec.json.Decoder(_wire.ErrorBody)
# What decoding a hostile body can raise (msgspec raises RecursionError on deep nesting).
UNREADABLE = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)
