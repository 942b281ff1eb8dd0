"""Issue 11, point 5, at the command line: a key the server echoes (the CLI read it from
RUNCOMFY_API_KEY) is in no stderr line, manifest or journal."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.cli.conftest import WAN, SimProcess, cli_process

KEY = "rk-cli-echo-canary-0d9e3a7b51c4"


def test_a_key_echoed_by_the_server_never_reaches_the_cli_output_or_files(tmp_path: Path) -> None:
    echo = {"error_message": f"rejected credentials Bearer {KEY}"}
    faults = [
        {"action": "status", "endpoint": "submit", "status_code": 403, "times": 1, "body": echo},
        {
            "action": "status_after_read",
            "endpoint": "submit",
            "status_code": 530,
            "times": 1,
            "body": echo,
        },
        {"action": "status", "endpoint": "status", "status_code": 401, "body": echo},
    ]
    sim = SimProcess(*(arg for rule in faults for arg in ("--fault", json.dumps(rule))))
    try:
        env = {**os.environ, "RUNCOMFY_API_KEY": KEY}
        status = cli_process("status", "r1", "--base-url", sim.url, env=env)
        out, err = status.communicate(timeout=60)
        assert status.returncode == 3
        assert "rejected credentials Bearer ********" in err
        prompts = tmp_path / "prompts.txt"
        prompts.write_text("a red fox\na lighthouse\na bowl of ramen\n", encoding="utf-8")
        batch = cli_process(
            "batch", WAN, prompts, "--out", tmp_path / "out", "--base-url", sim.url, env=env
        )
        batch_out, batch_err = batch.communicate(timeout=120)
    finally:
        sim.stop()
    files = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for text in (out, err, batch_out, batch_err, files.decode("utf-8", "replace")):
        assert KEY not in text
    assert "********" in batch_err + batch_out + files.decode("utf-8", "replace")
