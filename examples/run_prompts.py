"""Generate an image for every prompt in a file through `client.map`, printing as they finish.

    python examples/run_prompts.py examples/prompts.txt

With RUNCOMFY_API_KEY set it calls RunComfy (and spends credits); without it, it runs
against the SDK's local simulator: no key, no network, no cost.
"""

import contextlib
import os
import sys
import time

import anyio

import runcomfy_async as rc
from runcomfy_async import models
from runcomfy_async.simulator import Simulator, SimulatorConfig


async def main(path: str) -> int:
    lines = (await anyio.Path(path).read_text(encoding="utf-8")).splitlines()
    inputs = [models.Wan22TextToImage(prompt=line.strip()) for line in lines if line.strip()]
    async with contextlib.AsyncExitStack() as stack:
        if os.environ.get("RUNCOMFY_API_KEY"):
            client = await stack.enter_async_context(rc.Client())
        else:
            print("RUNCOMFY_API_KEY is not set: using the local simulator (no cost)")
            sim = await stack.enter_async_context(Simulator(SimulatorConfig(time_scale=0.25)))
            client = await stack.enter_async_context(rc.Client("sim", base_url=sim.url))
        started = time.monotonic()
        batch = client.map(inputs, max_in_flight=8)
        taken = 0
        async for item in batch:
            taken += 1
            where = f"{taken:>3}/{len(inputs)} ({batch.progress.running} running)"
            if item.ok and item.result is not None and item.result.output is not None:
                print(f"{where} {item.input.prompt[:36]!r} -> {item.result.output.urls[0]}")
            else:
                print(f"{where} FAILED {item.input.prompt[:36]!r}: {item.error}")
    p = batch.progress
    print(
        f"{p.succeeded} succeeded, {p.failed + p.cancelled} failed in "
        f"{time.monotonic() - started:.1f}s"
    )
    return 0 if p.succeeded == len(inputs) else 1


if __name__ == "__main__":
    sys.exit(anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "examples/prompts.txt"))
