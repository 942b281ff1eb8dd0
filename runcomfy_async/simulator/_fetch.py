"""The simulator fetching file inputs as RunComfy does, and recording the bytes it got."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any, NamedTuple

import aiohttp

MAX_BYTES = 100 * 1024 * 1024  # RunComfy's recommended limit for videos
_DATA = re.compile(r"data:(?P<type>[^,]*?)(?P<b64>;base64)?,(?P<data>.*)", re.I | re.S)


class Fetched(NamedTuple):
    """One file input the simulator read: `field` (`promptImage`, `images[1]`), `url` without
    its query string (a signature), `size` in bytes and `sha256` (hex) of what it got, or
    `error` saying why it got nothing."""

    model_id: str
    field: str
    url: str
    size: int | None
    sha256: str | None
    error: str | None


def file_fields(schema: Mapping[str, Any]) -> list[str]:
    """The properties whose `format` is a file URI (`image_uri`, `video_uris`, `uri`, ...),
    or that carry media `validations` (the runway seed's `promptImage` has no format)."""
    properties = schema.get("properties", {})
    return [
        name
        for name, spec in properties.items()
        if isinstance(spec, Mapping)
        and (str(spec.get("format", "")).rstrip("s").endswith("uri") or "validations" in spec)
    ]


async def fetch_inputs(
    model_id: str, schema: Mapping[str, Any], inputs: Mapping[str, Any]
) -> list[Fetched]:
    """Read every file input of `inputs` (https or loopback http URLs, data: URIs)."""
    jobs: list[tuple[str, str]] = []
    for name in file_fields(schema):
        value = inputs.get(name)
        if isinstance(value, str):
            jobs.append((name, value))
        elif isinstance(value, list):
            jobs += [(f"{name}[{n}]", v) for n, v in enumerate(value) if isinstance(v, str)]
    if not jobs:
        return []
    async with aiohttp.ClientSession(trust_env=False) as session:
        return [await _fetch(session, model_id, field, value) for field, value in jobs]


async def _fetch(session: aiohttp.ClientSession, model_id: str, field: str, value: str) -> Fetched:
    if value[:5].lower() == "data:":
        shown = value[: value.find(",") + 1][:80]
        found = _DATA.fullmatch(value)
        if found is None:
            return Fetched(model_id, field, shown, None, None, "not a data: URI")
        try:
            data = (
                base64.b64decode(found["data"], validate=True)
                if found["b64"]
                else urllib.parse.unquote_to_bytes(found["data"])
            )
        except (binascii.Error, ValueError):
            return Fetched(model_id, field, shown, None, None, "bad base64 in data: URI")
        return Fetched(model_id, field, shown, len(data), hashlib.sha256(data).hexdigest(), None)
    shown = value.split("?")[0][:300]
    try:
        async with session.get(value, timeout=aiohttp.ClientTimeout(total=60)) as response:
            if response.status != 200:
                return Fetched(model_id, field, shown, None, None, f"HTTP {response.status}")
            digest, size = hashlib.sha256(), 0
            async for chunk in response.content.iter_chunked(256 * 1024):
                size += len(chunk)
                if size > MAX_BYTES:
                    return Fetched(model_id, field, shown, None, None, "over 100 MB")
                digest.update(chunk)
            return Fetched(model_id, field, shown, size, digest.hexdigest(), None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return Fetched(model_id, field, shown, None, None, type(exc).__name__)
