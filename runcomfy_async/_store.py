"""Object stores (S3, GCS, Azure) through obstore, the `[storage]` extra: input uploads and
outputs streamed into a bucket, never replacing a different object."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import AsyncIterable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ._errors import ConfigurationError

__all__ = ["StoreSink", "StoreUploader", "is_store_url", "open_store"]

SMALL = 8 * 1024 * 1024  # bytes: an output up to this is put whole (conditional PUT)
PART = 8 * 1024 * 1024  # bytes per multipart part (S3's minimum is 5 MiB)
PARTS_IN_FLIGHT = 2  # parts uploaded at once: memory stays near PART * (PARTS_IN_FLIGHT + 1)

SCHEMES = frozenset({"s3", "s3a", "gs", "az", "azure", "abfs", "abfss"})
_QUERY = re.compile(r"\?\S*")


def is_store_url(text: object) -> bool:
    """Whether `text` names an object-store prefix (`s3://bucket/prefix/`, `gs://…`, `az://…`)."""
    return isinstance(text, str) and urlsplit(text).scheme.lower() in SCHEMES


def open_store(url: str) -> Any:
    """An obstore store rooted at `url`. Credentials, region and endpoint come only from the
    store's own standard configuration (AWS_*, GOOGLE_*, AZURE_* environment variables,
    instance roles, an AWS_PROFILE through boto3): the SDK never takes, logs or forwards
    them."""
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
    # S3 has no conditional multipart put; "copy if not exists" makes the final step of a
    # large object conditional (a multipart copy completed with If-None-Match).
    config: Any = None
    if parts.scheme.lower() in ("s3", "s3a") and not os.environ.get("AWS_COPY_IF_NOT_EXISTS"):
        config = {"copy_if_not_exists": "multipart"}
    provider: Any = None
    if parts.scheme.lower() in ("s3", "s3a") and _wants_profile():
        try:  # obstore reads AWS_* variables and instance roles; a profile goes through boto3
            from obstore.auth.boto3 import Boto3CredentialProvider
        except ImportError:
            raise ConfigurationError(
                "AWS_PROFILE is set: reading AWS profiles needs boto3 (pip install boto3)"
            ) from None
        provider = Boto3CredentialProvider()
    try:
        return from_url(url, config=config, credential_provider=provider)
    except Exception as exc:  # obstore's configuration errors
        raise ConfigurationError(f"cannot use {url}: {reason(exc)}") from None


def _wants_profile() -> bool:
    """An AWS profile names the credentials (AWS_PROFILE) and no key is in the environment."""
    return bool(os.environ.get("AWS_PROFILE")) and not os.environ.get("AWS_ACCESS_KEY_ID")


def reason(exc: BaseException) -> str:
    """An obstore error in one line, without query strings (a presigned URL's signature)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = _QUERY.sub("", first)[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Prefix:
    """An object-store prefix: its URL and the extra checked at once, opened on first use."""

    def __init__(self, url: str) -> None:
        self.location = url if url.endswith("/") else url + "/"
        self._store: Any = None
        open_store(self.location)

    def _open(self) -> Any:
        if self._store is None:
            self._store = open_store(self.location)
        return self._store


class StoreUploader(_Prefix):
    """Uploads local file inputs under an object-store prefix; objects are named by content
    hash, so a file already there (same name and size) is not sent again, by any run."""

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


class ObjectExistsError(Exception):
    """Internal: a different object is at the name; its words go into a DownloadError."""


class StoreSink(_Prefix):
    """Outputs into an object-store prefix (`s3://bucket/renders/`): streamed from the output
    URL, hashed on the way, put only if no object has the name (an identical one is kept,
    a different one refused), multipart past `SMALL` bytes through a staging object that is
    then copied into place only if the name is still free."""

    async def put(
        self,
        name: str,
        chunks: AsyncIterable[bytes],
        content_type: str | None,
        *,
        overwrite: bool = False,
    ) -> tuple[str, int, str]:
        """Store the stream as object `name`: (its URL, size in bytes, sha256 in hex)."""
        import obstore
        from obstore.exceptions import AlreadyExistsError

        store = self._open()
        stream = aiter(chunks)
        head, ended = bytearray(), False
        while len(head) <= SMALL:
            chunk = await anext(stream, None)
            if chunk is None:
                ended = True
                break
            head += chunk
        attributes = {"Content-Type": content_type or "application/octet-stream"}
        if ended:
            data = bytes(head)
            digest = hashlib.sha256(data).hexdigest()
            attributes["sha256"] = digest
            if overwrite:
                await obstore.put_async(store, name, data, attributes=attributes)
            elif not await self._kept(name, len(data), digest):
                try:  # If-None-Match: *: another writer's object is never replaced
                    await obstore.put_async(store, name, data, mode="create", attributes=attributes)
                except AlreadyExistsError:
                    await self._kept(name, len(data), digest, raced=True)
            return self.location + name, len(data), digest
        hasher, total = hashlib.sha256(), 0
        staging = f".{name}.{secrets.token_hex(6)}.part"
        try:
            # A buffered writer, not put_async(async iterator): that form of obstore 0.12
            # aborts the interpreter at exit.
            writer = obstore.open_writer_async(
                store,
                staging,
                attributes=attributes,
                buffer_size=PART,
                max_concurrency=PARTS_IN_FLIGHT,
            )
            async with writer:
                hasher.update(head)
                total += len(head)
                await writer.write(bytes(head))
                head.clear()
                async for chunk in stream:
                    hasher.update(chunk)
                    total += len(chunk)
                    await writer.write(chunk)
            digest = hasher.hexdigest()
            if overwrite:
                await obstore.copy_async(store, staging, name)
            elif not await self._kept(name, total, digest):
                try:
                    await obstore.copy_async(store, staging, name, overwrite=False)
                except AlreadyExistsError:
                    await self._kept(name, total, digest, raced=True)
        finally:
            with contextlib.suppress(Exception):  # a staging object left costs storage only
                await obstore.delete_async(store, staging)
        return self.location + name, total, digest

    async def _kept(self, name: str, size: int, digest: str, *, raced: bool = False) -> bool:
        """True if `name` holds exactly these bytes (keep it), False if absent; a different
        object raises ObjectExistsError."""
        import obstore
        from obstore.exceptions import NotFoundError

        store = self._open()
        try:
            found = await obstore.get_async(store, name, options={"head": True})
        except (FileNotFoundError, NotFoundError):
            if raced:
                raise ObjectExistsError(f"{name} appeared and vanished while it was put") from None
            return False
        meta, attrs = found.meta, found.attributes
        same = meta["size"] == size
        if same:
            recorded = attrs.get("sha256")
            if recorded is None:  # a copied (multipart) object: hash what is there
                hasher = hashlib.sha256()
                async for chunk in await obstore.get_async(store, name):
                    hasher.update(chunk)
                recorded = hasher.hexdigest()
            same = recorded == digest
        if not same:
            raise ObjectExistsError(
                f"a different {name} exists in {self.location}; it is not overwritten"
            )
        return True

    async def holds(self, location: str, size: int) -> bool:
        """Whether the object an earlier run recorded at `location` is there with `size`."""
        import obstore

        if not location.startswith(self.location):
            return False
        try:
            meta = await obstore.head_async(self._open(), location[len(self.location) :])
        except Exception:  # absent, or the store cannot say: save it again
            return False
        return bool(meta["size"] == size)
