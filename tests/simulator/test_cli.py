"""`python -m runcomfy_async.simulator` serves, announces its URL, and stops on SIGTERM."""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import urllib.request

import pytest

from runcomfy_async.simulator import (
    WAN_TEXT_TO_IMAGE,
    FaultRule,
    Quirks,
    add_arguments,
    config_from_args,
    main,
)


def test_the_command_serves_until_sigterm() -> None:
    command = [sys.executable, "-m", "runcomfy_async.simulator", "--port", "0"]
    command += ["--time-scale", "0.01", "--concurrency", "2", "--not-ready", "400005"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(r"runcomfy simulator: (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        url = match.group(1)
        request = urllib.request.Request(
            f"{url}/v1/models/{WAN_TEXT_TO_IMAGE}",
            data=json.dumps({"prompt": "a cat"}).encode(),
            headers={"Authorization": "Bearer t", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
            request_id = json.load(response)["request_id"]
        with urllib.request.urlopen(f"{url}/_sim/ledger", timeout=5) as response:
            ledger = json.load(response)
        assert [job["request_id"] for job in ledger["jobs"]] == [request_id]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_options_map_onto_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNCOMFY_SIMULATOR_API_KEY", "secret")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--port=0",
            "--time-scale=0.5",
            "--concurrency=3",
            "--failure-rate=0.25",
            "--seed=9",
            "--failed-status=failed",
            "--submit-style=minimal",
            "--errors-as-200",
            "--fresh-404=1.5",
            "--balance=2",
            '--fault={"action": "latency", "seconds": 0.5, "endpoint": "status"}',
        ]
    )
    config = config_from_args(args)
    assert (config.port, config.time_scale, config.concurrency) == (0, 0.5, 3)
    assert (config.failure_rate, config.seed, config.balance_usd) == (0.25, 9, 2.0)
    assert config.quirks == Quirks(
        failed_status="failed", submit_style="minimal", errors_as_200=True, fresh_404_seconds=1.5
    )
    assert config.faults == (FaultRule("latency", endpoint="status", seconds=0.5),)
    assert config.api_key == "secret"


def test_a_malformed_fault_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--fault", "{not json"])
    assert exc.value.code == 2
    assert "--fault" in capsys.readouterr().err


def test_the_program_name_can_be_borrowed_by_another_cli(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"], prog="runcomfy simulator")
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage: runcomfy simulator")
