"""Object stores (S3, GCS, Azure) through obstore, the `[storage]` extra: input uploads."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ._errors import ConfigurationError

__all__ = ["StoreUploader", "is_store_url", "open_store"]

SCHEMES = frozenset({"s3", "s3a", "gs", "az", "azure", "abfs", "abfss"})
_QUERY = re.compile(r"\?\S*")


def is_store_url(text: object) -> bool:
    """Whether `text` names an object-store prefix (`s3://bucket/prefix/`, `gs://…`, `az://…`)."""
    return isinstance(text, str) and urlsplit(text).scheme.lower() in SCHEMES


def open_store(url: str) -> Any:
    """An obstore store rooted at `url`. Credentials, region and endpoint come only from the
    store's own standard configuration (AWS_*, GOOGLE_*, AZURE_* environment variables,
    instance roles): the SDK never takes, logs or forwards them."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise ConfigurationError(f"{url!r} is not an object-store URL (s3://, gs:// or az://)")
    if "@" in parts.netloc or parts.query or parts.fragment or not parts.netloc:
        raise ConfigurationError(
            "an object-store URL is scheme://bucket/prefix/, with no user, password or query: "
            "credentials come from the store's environment"
        )
    try:
        from obstore.store import from_url
    except ImportError:
        raise ConfigurationError(
            f"{url.split('://')[0]}:// needs the storage extra: "
            "pip install 'runcomfy-async[storage]'"
        ) from None
    try:
        return from_url(url)
    except Exception as exc:  # obstore's configuration errors
        raise ConfigurationError(f"cannot use {url}: {reason(exc)}") from None


def reason(exc: BaseException) -> str:
    """An obstore error in one line, without query strings (a presigned URL's signature)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = _QUERY.sub("", first)[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class StoreUploader:
    """Uploads local file inputs under an object-store prefix; objects are named by content
    hash, so a file already there (same name and size) is not sent again, by any run."""

    def __init__(self, url: str) -> None:
        self.location = url
        self._store: Any = None
        open_store(url)  # the URL and the extra are checked when the client is built

    def _open(self) -> Any:
        if self._store is None:
            self._store = open_store(self.location)
        return self._store

    async def upload(self, name: str, path: Path, *, size: int, sha256: str, mime: str) -> bool:
        import obstore
        from obstore.exceptions import NotFoundError

        store = self._open()
        try:
            meta = await obstore.head_async(store, name)
        except (NotFoundError, FileNotFoundError):  # obstore raises the builtin for a 404
            meta = None
        if meta is not None and meta["size"] == size:
            return False
        # Streamed from the file; multipart past 5 MiB parts (obstore's chunk size).
        await obstore.put_async(
            store, name, path, attributes={"Content-Type": mime, "sha256": sha256}
        )
        return True

    async def url(self, name: str, *, expires: float) -> str:
        import obstore

        signed: str = await obstore.sign_async(
            self._open(), "GET", name, timedelta(seconds=expires)
        )
        return signed
