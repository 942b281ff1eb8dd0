"""Shared by the reliability tests: a simulator process with its admin endpoints, seeds, checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterable
from typing import Any

WAN = "wan-ai/wan-2-2/text-to-image"


def seed(default: int) -> int:
    """The run's seed: $RELIABILITY_SEED when set, else the test's fixed `default`."""
    return int(os.environ.get("RELIABILITY_SEED", default))


class SimProcess:
    """`python -m runcomfy_async.simulator` on a free port, as a real RunComfy would be: a
    process of its own, so its load does not share the client's event loop."""

    def __init__(
        self, *options: str, faults: Iterable[dict[str, Any]] = (), key: str | None = None
    ) -> None:
        env = dict(os.environ)
        env.pop("RUNCOMFY_SIMULATOR_API_KEY", None)
        if key is not None:
            env["RUNCOMFY_SIMULATOR_API_KEY"] = key
        command = [sys.executable, "-m", "runcomfy_async.simulator", "--port", "0", *options]
        for rule in faults:
            command += ["--fault", json.dumps(rule)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("runcomfy simulator: "):
            self.stop()
            raise RuntimeError(f"the simulator did not start: {line!r}")
        self.url = line.split(": ", 1)[1].strip()

    def _admin(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as answer:
            result: dict[str, Any] = json.load(answer)
            return result

    def ledger(self) -> dict[str, Any]:
        """GET /_sim/ledger: jobs, calls (call_log), cancels and the simulator's `now`."""
        return self._admin("GET", "/_sim/ledger")

    def add_faults(self, *rules: dict[str, Any]) -> None:
        """POST /_sim/faults: append fault rules."""
        self._admin("POST", "/_sim/faults", list(rules))

    def clear_faults(self) -> None:
        """DELETE /_sim/faults: the simulator behaves again."""
        self._admin("DELETE", "/_sim/faults")

    def stop(self) -> None:
        """End the process (it was started here, so only it is ended)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def peak_in_window(times: Iterable[float], width: float) -> int:
    """The most timestamps (seconds) falling in any window `width` seconds wide."""
    ordered = sorted(times)
    peak, start = 0, 0
    for end, t in enumerate(ordered):
        while t - ordered[start] > width:
            start += 1
        peak = max(peak, end - start + 1)
    return peak
