"""Child process of the memory test: stream SIZE MiB into StoreSink, print peak RSS growth."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from collections.abc import AsyncIterator

from runcomfy_async._store import StoreSink


def peak_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as file:
        for line in file:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")


async def one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def main(url: str, mib: int) -> None:
    sink = StoreSink(url)
    digest = hashlib.sha256()

    async def chunks() -> AsyncIterator[bytes]:
        block = bytes(range(256)) * 1024  # 256 KiB
        for n in range(mib * 4):
            chunk = n.to_bytes(4, "big") + block[4:]
            digest.update(chunk)
            yield chunk

    await sink.put("warm-up.bin", one(b"x" * 1024), "video/mp4")  # the store's client, loaded
    before = peak_kib()
    location, size, sha256 = await sink.put("big.mp4", chunks(), "video/mp4")
    grown = peak_kib() - before
    print(location, size, sha256, digest.hexdigest(), grown)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    # obstore's Tokio threads can abort the interpreter's shutdown (SIGABRT) after the work
    # is done, as the `runcomfy` script knows (runcomfy_async._cli.console): end as it does.
    sys.stdout.flush()
    os._exit(0)
