"""Client configuration read once at construction: key, base URL policy, timeouts."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, quote_plus, urlsplit

from ._errors import ConfigurationError

__all__ = ["DEFAULT_BASE_URL", "Timeouts"]

DEFAULT_BASE_URL = "https://model-api.runcomfy.net"
KEY_ENV_VARS = ("RUNCOMFY_API_KEY", "RUNCOMFY_API_TOKEN")
BASE_URL_ENV_VAR = "RUNCOMFY_BASE_URL"


@dataclass(frozen=True)
class Timeouts:
    """Per-call limits in seconds: `total` for the whole call, `connect` to get a connection
    (including the wait for a free one in the pool)."""

    total: float = 60.0
    connect: float = 10.0

    def __post_init__(self) -> None:
        if not (self.total > 0 and self.connect > 0):
            raise ConfigurationError("timeouts must be positive numbers of seconds")


class Secret:
    """Holds the API key; its repr and str never show it.

    `scrub` removes the key from text a server sent, in every form a server or gateway
    may echo it: as it is (any case), URL-quoted, JSON-escaped, hex, and base64 (standard
    and URL-safe, at any alignment inside a longer base64 text) of the key, of
    "Bearer <key>" and of "<key>:" or ":<key>" (HTTP Basic). Keys shorter than 8
    characters are not scrubbed: they would mangle ordinary words.
    """

    __slots__ = ("_bytes", "_probe", "_text", "_value")

    def __init__(self, value: str) -> None:
        self._value = value
        self._text, self._bytes, self._probe = _scrubbers(value)

    def reveal(self) -> str:
        return self._value

    def bearer(self) -> Bearer:
        """The Authorization header value, in a str whose repr hides the key."""
        return Bearer(f"Bearer {self._value}")

    def scrub(self, text: str) -> str:
        """`text` with every form of the key replaced by ********."""
        return text if self._text is None else self._text.sub(REDACTED, text)

    def scrub_bytes(self, data: bytes) -> bytes:
        """`data` (a body as received) with every form of the key replaced by ********."""
        if self._bytes is None or self._probe is None or not self._probe.search(data.lower()):
            return data  # the probe is a superset of the pattern, 3-4x quicker on a body
        return self._bytes.sub(REDACTED.encode(), data)

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("the API key cannot be pickled")


REDACTED = "********"
_MIN_SCRUBBED = 8  # characters: a shorter key is no secret worth mangling text for


class Bearer(str):
    """An Authorization header value: sent as it is, but its repr (in a traceback's frame
    locals, a headers dict) shows no key."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'Bearer ********'"


def _scrubbers(
    key: str,
) -> tuple[re.Pattern[str] | None, re.Pattern[bytes] | None, re.Pattern[bytes] | None]:
    """Patterns matching every form of `key` that `Secret.scrub` removes (as text, as
    bytes), and the probe: every form lowercased, to search a lowercased body. A body the
    probe finds nothing in holds no form (bytes fold case in ASCII only, both ways), and
    one alternation with no case folding scans a body 3-4x quicker than the pattern."""
    if len(key) < _MIN_SCRUBBED:
        return None, None, None
    raw = key.encode()
    plain = {key, quote(key, safe=""), quote_plus(key), json.dumps(key)[1:-1]}
    plain.add(key.replace("/", "\\/"))  # JSON encoders that escape the slash
    plain.add(raw.hex())
    encoded: set[str] = set()
    for data in (raw, b"Bearer " + raw, raw + b":", b":" + raw):
        for offset in range(3):  # base64 of the key wherever it starts in a longer text
            padded = b"\0" * offset + data
            text = base64.b64encode(padded).decode()
            core = text[4 if offset else 0 : 4 * (len(padded) // 3)]
            full = text if offset == 0 else core
            for piece in {core, full, full.rstrip("=")}:
                if len(piece) >= _MIN_SCRUBBED:
                    encoded.add(piece)
                    encoded.add(piece.replace("+", "-").replace("/", "_"))
                    encoded.add(quote(piece, safe=""))
    folded = "|".join(re.escape(p) for p in sorted(plain, key=len, reverse=True))
    exact = "|".join(re.escape(p) for p in sorted(encoded, key=len, reverse=True))
    source = f"(?i:{folded})|{exact}"
    lowered = sorted({p.lower() for p in plain | encoded}, key=len, reverse=True)
    probe = "|".join(re.escape(p) for p in lowered).encode()
    return re.compile(source), re.compile(source.encode()), re.compile(probe)


_TOKEN_CHARS = re.compile(r"^[\x21-\x7e]+$")


def resolve_api_key(api_key: str | None, environ: Mapping[str, str]) -> Secret:
    """The key passed in, else RUNCOMFY_API_KEY, else RUNCOMFY_API_TOKEN."""
    if api_key is None:
        api_key = next((environ[name] for name in KEY_ENV_VARS if environ.get(name)), None)
    if api_key is None or not api_key.strip():
        raise ConfigurationError(
            "no API key: pass api_key=... or set RUNCOMFY_API_KEY "
            "(for the local simulator any non-empty string works)"
        )
    api_key = api_key.strip()
    if not _TOKEN_CHARS.match(api_key):
        # Do not echo it: the value may be a real key with a stray character.
        raise ConfigurationError("the API key contains spaces or non-printable characters")
    return Secret(api_key)


def resolve_base_url(base_url: str | None, environ: Mapping[str, str]) -> str:
    """The API base URL, checked: https, or http only to a loopback host; no userinfo."""
    url = base_url or environ.get(BASE_URL_ENV_VAR) or DEFAULT_BASE_URL
    shown = _redacted(url)  # what error messages may say: never a user name or password
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigurationError(f"base_url is not a valid URL: {shown!r}") from None
    if parts.scheme not in ("https", "http") or not host:
        raise ConfigurationError(f"base_url must be an https URL, got {shown!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError("base_url must not contain a user name or password")
    if parts.query or parts.fragment:
        raise ConfigurationError("base_url must not have a query or fragment")
    if parts.scheme == "http" and not is_loopback(host):
        raise ConfigurationError(
            f"base_url {shown!r} uses plain http: only https is allowed, except to loopback "
            "(the local simulator)"
        )
    return url.rstrip("/")


def _redacted(url: str) -> str:
    """`url` with anything between the scheme and an '@' replaced: it may hold a password."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<not a URL>" if "@" in url else url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    return f"{scheme}://{authority}{slash}{path}"


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def environ() -> Mapping[str, str]:
    """The process environment, read when a Client is built (never at import)."""
    return os.environ
