"""Quickstart: one image and one video with typed inputs, run at the same time, downloaded.

    python examples/quickstart.py

With RUNCOMFY_API_KEY set it calls RunComfy (and spends credits); without it, it runs
against the SDK's local simulator: no key, no network, no cost.
"""

import anyio
from _backend import connect

import runcomfy_async as rc
from runcomfy_async import models

# Any public https image (or a data: URI): under 8000 px a side, 1:2 to 2:1, under 16 MB.
DICE = "https://upload.wikimedia.org/wikipedia/commons/4/47/PNG_transparency_demonstration_1.png"

IMAGE = models.Wan22TextToImage(
    prompt="a red fox in fresh snow, golden hour", aspect_ratio="1024:1024 (1:1)"
)
VIDEO = models.RunwayGen3TurboImageToVideo(
    prompt_text="the dice tumble slowly across the table", prompt_image=DICE, duration=5
)


async def generate(client: rc.Client, inputs: rc.ModelInput) -> None:
    # Inputs are checked before anything is sent; run() raises if the request fails.
    result = await client.run(inputs, timeout=900)
    urls = result.output.urls if result.output else []
    print(f"{inputs.model_id}: {' '.join(urls)}")
    for file in await client.download(result, "out/quickstart"):
        print(f"  saved {file.path} ({file.size:,} bytes)")


async def main() -> None:
    async with connect() as client, anyio.create_task_group() as tasks:
        tasks.start_soon(generate, client, IMAGE)
        tasks.start_soon(generate, client, VIDEO)


if __name__ == "__main__":
    anyio.run(main)
