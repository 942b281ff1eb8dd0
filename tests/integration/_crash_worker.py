"""A journaled batch run as its own process, for the kill-and-rerun tests."""

import sys

import anyio

import runcomfy_async as rc
from runcomfy_async import models


async def main(url: str, journal: str, count: int) -> None:
    inputs = [models.Wan22TextToImage(prompt=f"prompt {i}") for i in range(count)]
    poll = rc.PollPolicy(first_interval=0.02, min_interval=0.01, max_interval=0.1)
    async with rc.Client("crash-test", base_url=url, poll=poll) as client:
        async for item in client.map(inputs, journal=journal, max_in_flight=10):
            print(item.key, "ok" if item.ok else type(item.error).__name__, flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
