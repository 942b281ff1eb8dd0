"""Generate an image for every prompt in a file, concurrently, and print the URLs.

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


async def main(path: str, concurrency: int = 8) -> int:
    text = await anyio.Path(path).read_text(encoding="utf-8")
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    async with contextlib.AsyncExitStack() as stack:
        if os.environ.get("RUNCOMFY_API_KEY"):
            client = await stack.enter_async_context(rc.Client())
        else:
            print("RUNCOMFY_API_KEY is not set: using the local simulator (no cost)")
            sim = await stack.enter_async_context(Simulator(SimulatorConfig(time_scale=0.25)))
            client = await stack.enter_async_context(rc.Client("sim", base_url=sim.url))
        limit, failed, started = anyio.CapacityLimiter(concurrency), 0, time.monotonic()

        async def generate(n: int, prompt: str) -> None:
            nonlocal failed
            async with limit:
                try:
                    result = await client.run(models.Wan22TextToImage(prompt=prompt))
                except rc.RunComfyError as exc:
                    failed += 1
                    print(f"[{n:>3}] FAILED {prompt!r}: {exc}")
                    return
            urls = " ".join(result.output.urls) if result.output else "(no output)"
            print(f"[{n:>3}] {time.monotonic() - started:5.1f}s {prompt[:40]!r} -> {urls}")

        async with anyio.create_task_group() as tg:
            for n, prompt in enumerate(prompts, 1):
                tg.start_soon(generate, n, prompt)
    ok = len(prompts) - failed
    print(f"{ok} succeeded, {failed} failed in {time.monotonic() - started:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "examples/prompts.txt"))
