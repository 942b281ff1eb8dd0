"""`runcomfy models list` / `models info` and unknown model ids, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.cli.conftest import CLI, WAN, SimProcess


def runcomfy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *CLI, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_models_list_prints_id_category_price_and_unit_one_line_each() -> None:
    done = runcomfy("models", "list", "--simulate")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 9
    wan = next(line for line in lines if line.startswith(WAN + " "))
    assert wan.split() == [WAN, "text-to-image", "$0.0400", "per", "output"]
    flux = runcomfy("models", "list", "--simulate", "--search", "flux").stdout.splitlines()
    assert [line.split()[0] for line in flux] == [
        "blackforestlabs/flux-1-dev/text-to-image",
        "blackforestlabs/flux-1-dev/lora/text-to-image",
    ]
    video = runcomfy("models", "list", "--simulate", "--category", "text-to-video", "--json")
    [entry] = [json.loads(line) for line in video.stdout.splitlines()]
    assert entry["model_id"] == "kling/kling-2-1/master/text-to-video"
    assert (entry["base_price_usd"], entry["price_unit"]) == (0.28, "second")


def test_models_list_of_nothing_says_so() -> None:
    done = runcomfy("models", "list", "--simulate", "--search", "no such thing")
    assert done.returncode == 5
    assert done.stdout == ""
    assert "no model in the catalog matches --search 'no such thing'" in done.stderr


def test_a_mistyped_model_id_is_refused_before_any_submit_with_the_closest_id() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCOMFY_")}
    for style in ("400001", "404"):
        sim = SimProcess("--time-scale", "0.05", "--unknown-model", style)
        try:
            done = subprocess.run(
                [
                    sys.executable,
                    *CLI,
                    "run",
                    "wan-ai/wan-2-2/text-to-imag",
                    "-i",
                    "prompt=x",
                    "--base-url",
                    sim.url,
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                env={**env, "RUNCOMFY_API_KEY": "any"},
            )
            assert sim.submits() == 0
        finally:
            sim.stop()
        assert done.returncode == 5, done.stderr
        assert done.stdout == ""
        assert "unknown model wan-ai/wan-2-2/text-to-imag" in done.stderr
        assert "(did you mean wan-ai/wan-2-2/text-to-image?)" in done.stderr
        assert "unchecked" not in done.stderr


def test_models_info_shows_nested_fields_limits_enums_defaults_files_and_price(cli: Any) -> None:
    lora = cli("models", "info", "blackforestlabs/flux-1-dev/lora/text-to-image", "--simulate")
    assert lora.code == 0
    assert "price: $0.0350 per output" in lora.out
    assert "  loras           up to 3 of {path*: file URL, scale: number 0 to 4}, default []\n" in (
        lora.out
    )
    assert "  prompt*         string of at most 2000 characters\n" in lora.out
    kling = cli("models", "info", "kling/kling-2-1/master/text-to-video", "--simulate").out
    assert "camera_control   {motion*, strength}" in kling
    assert '"static" | "pan_left" | "pan_right" | "zoom_in" | "zoom_out"' in kling
    assert "strength  number -10 to 10, default 5" in kling
    assert "duration         one of 5 | 10, default 5" in kling
    runway = cli("models", "info", "runwayml/runway-gen-3-alpha/turbo/image-to-video", "--simulate")
    assert "promptImage*  image file (https URL or data: URI)" in runway.out
    assert "rule: width/height < 2 (The aspect ratio range should be 1:2 to 2:1.)" in runway.out
    assert "price: $0.0500 per second" in runway.out
    edit = cli("models", "info", "bytedance/seedream-4/edit", "--simulate").out
    assert "image_urls*  1 to 10 of image files (https URLs or data: URIs)" in edit
    upscale = cli("models", "info", "philz1337x/clarity-upscaler/image-upscale", "--simulate").out
    assert "creativity    number > 0, ≤ 1, default 0.35" in upscale
    assert "prompt        string of at most 500 characters or null, default null" in upscale
