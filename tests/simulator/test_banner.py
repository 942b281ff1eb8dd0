"""`runcomfy simulator` says any key works and prints the lines that point the CLI at it; its
catalog speaks English."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import runcomfy_async as rc
from runcomfy_async.simulator import Simulator
from tests.cli.conftest import CLI, RUNWAY, WAN, lines_of

SPANISH = re.compile(r"\b(esquema|entrada|una|sola|solo|vídeo|varias|imagen)\b", re.IGNORECASE)


def test_the_banner_says_any_key_works_and_its_export_line_works_as_printed() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCOMFY_")}
    command = [sys.executable, *CLI, "simulator", "--port", "0", "--time-scale", "0.05"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        lines = lines_of(process.stdout)
        banner = [lines.get(timeout=30) for _ in range(6)]
        url = banner[0].removeprefix("runcomfy simulator: ").strip()
        assert banner[1].strip().startswith("Any API key works against it.")
        [export] = [line for line in banner if line.strip().startswith("export ")]
        assert export.split() == ["export", f"RUNCOMFY_BASE_URL={url}", "RUNCOMFY_API_KEY=any"]
        pointed = dict(word.split("=", 1) for word in shlex.split(export)[1:])
        listed = subprocess.run(
            [sys.executable, *CLI, "models", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, **pointed},
            check=False,
        )
        ran = subprocess.run(
            [sys.executable, *CLI, "run", WAN, "-i", "prompt=a fox"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, **pointed},
            check=False,
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert listed.returncode == 0, listed.stderr
    assert WAN in listed.stdout
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith(f"{url}/files/")


async def test_the_catalog_titles_and_descriptions_are_english() -> None:
    async with Simulator() as sim, rc.Client("any", base_url=sim.url) as client:
        entries = [info async for info in client.models()]
    words: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key in ("title", "description") and isinstance(inner, str):
                    words.append(inner)
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk([info.input_schema for info in entries] + [info.output_schema for info in entries])
    assert len(words) > 20
    assert [text for text in words if SPANISH.search(text)] == []
    for info in entries:
        if info.model_id in (WAN, RUNWAY):
            schema = info.input_schema or {}
            assert schema["title"] == "Input schema"
            assert all(spec["description"] for spec in schema["properties"].values())
