"""Where a keyless fetch may go: the URL and address policy, and redirects followed by hand."""

from __future__ import annotations

import ipaddress
import re
import socket

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from ._config import is_loopback

__all__ = ["GuardedResolver", "Refused", "follow", "redact", "url_refusal"]

REDIRECTS = frozenset({301, 302, 303, 307, 308})

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def address_refusal(address: Address, *, allow_loopback: bool) -> str | None:
    """Why a connection to `address` is refused, or None if it is a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:  # before the rest: ::1 also counts as reserved
        return None if allow_loopback else f"{address} is a loopback address"
    checks = (
        ("unspecified", address.is_unspecified),
        ("multicast", address.is_multicast),
        ("link-local", address.is_link_local),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("not globally routable", not address.is_global),
    )
    return next((f"{address} is a {kind} address" for kind, hit in checks if hit), None)


def url_refusal(url: URL, *, allow_loopback: bool) -> str | None:
    """Why `url` may not be fetched, or None: https (http only to an allowed loopback host),
    no user info, and a literal IP address must be public (or loopback when allowed)."""
    scheme = url.scheme.lower()
    if scheme == "data":
        return "data: URLs are refused (the content is in the URL; decode it yourself)"
    if scheme not in ("https", "http"):
        return f"{scheme or 'a relative'}: URLs are refused: only https is downloaded"
    host = url.host
    if not host:
        return "the URL has no host"
    if "@" in (url.raw_authority or ""):
        return "URLs with a user name or password are refused"
    loopback_name = is_loopback(host)
    if scheme == "http" and not (allow_loopback and loopback_name):
        return "plain http is refused: only https (http only to loopback when allowed)"
    if loopback_name and not allow_loopback:
        return f"{host} is a loopback host"
    if ":" in host or host.replace(".", "").isdigit():  # a literal IP: the resolver is skipped
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return f"{host} is not a canonical IP address"
        return address_refusal(address, allow_loopback=allow_loopback)
    return None


class BlockedAddressError(OSError):
    """A host name resolved only to addresses downloads may not reach."""


class GuardedResolver(AbstractResolver):
    """Resolves with `inner`, then drops refused addresses at connect time (DNS rebinding)."""

    def __init__(self, inner: AbstractResolver, *, allow_loopback: bool) -> None:
        self._inner = inner
        self._allow_loopback = allow_loopback

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The addresses of `host` that may be reached; BlockedAddressError if none."""
        kept: list[ResolveResult] = []
        refused: list[str] = []
        for info in await self._inner.resolve(host, port, family):
            reason = self._refusal(host, info["host"])
            if reason is None:
                kept.append(info)
            else:
                refused.append(reason)
        if not kept:
            detail = "; ".join(refused) or "no addresses"
            raise BlockedAddressError(f"{host} resolves only to refused addresses ({detail})")
        return kept

    def _refusal(self, host: str, resolved: str) -> str | None:
        try:
            address = ipaddress.ip_address(resolved)
        except ValueError:
            return f"{resolved} is not an IP address"
        if is_loopback(host) and not address.is_loopback:
            return f"{address} is not loopback, though {host} names loopback"
        return address_refusal(address, allow_loopback=self._allow_loopback)

    async def close(self) -> None:
        await self._inner.close()


def redact(url: str) -> str:
    """`url` without query string, fragment or user info, for messages."""
    try:
        parsed = URL(url)
        if parsed.absolute:
            return str(parsed.with_query(None).with_fragment(None).with_user(None))
    except (ValueError, TypeError):
        pass
    return re.sub(r"[?#].*", "", url, flags=re.S)


class Refused(Exception):
    """Internal: a download refused for `reason`; fetch turns it into DownloadError."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(
        exc.os_error, BlockedAddressError
    ):
        return str(exc.os_error)
    text = re.sub(r"\?[^\s'\"\]>]*", "", str(exc))  # no query strings (signatures)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def follow(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    *,
    allow_loopback: bool,
    max_redirects: int,
    headers: dict[str, str] | None = None,
) -> tuple[URL, aiohttp.ClientResponse]:
    """Call `url` on a keyless session, following up to `max_redirects` redirects by hand,
    each hop refused as url_refusal() says; the final URL and its (open) response."""
    current = url
    for hop in range(max_redirects + 1):
        reason = url_refusal(current, allow_loopback=allow_loopback)
        if reason is not None:
            raise Refused(reason if hop == 0 else f"redirect to {redact(str(current))}: {reason}")
        try:
            response = await session.request(
                method, current, headers=headers, allow_redirects=False
            )
        except aiohttp.ClientConnectorError as exc:
            if hop == 0:
                raise
            raise Refused(f"redirect to {redact(str(current))}: {describe(exc)}") from exc
        if response.status not in REDIRECTS:
            return current, response
        response.release()
        location = response.headers.get("Location")
        if not location:
            raise Refused(f"HTTP {response.status} redirect without a Location")
        current = response.url.join(URL(location))
    raise Refused(f"more than {max_redirects} redirects")
