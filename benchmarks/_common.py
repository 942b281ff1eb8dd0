"""Shared by the benchmarks: simulator subprocess, ledger, contender runs, statistics, tables."""

from __future__ import annotations

import json
import math
import os
import select
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WAN = "wan-ai/wan-2-2/text-to-image"
RUNWAY = "runwayml/runway-gen-3-alpha/turbo/image-to-video"
API_ENDPOINTS = ("submit", "status", "result", "cancel")
KEY = "rk-bench-5f0c2a9e7d1b4c3a8e6f9d2b"  # as _contenders.KEY: a real key's length


@dataclass(frozen=True)
class SimSpec:
    """How to start the simulator: model -> run time range (s, before scaling), and knobs."""

    models: dict[str, tuple[float, float]]
    time_scale: float = 1.0
    queue_delay: float = 0.0
    concurrency: int | None = None
    seed: int = 0
    submit_rate: float | None = None  # submits admitted per second (429 for the rest)
    submit_burst: float = 1.0  # submits the bucket admits at once
    retry_after: bool = True  # a 429 tells when the next token comes

    def argv(self) -> list[str]:
        argv = [sys.executable, str(HERE / "_simserver.py")]
        for model_id, (low, high) in self.models.items():
            argv += ["--model", f"{model_id}={low},{high}"]
        argv += ["--time-scale", str(self.time_scale), "--queue-delay", str(self.queue_delay)]
        argv += ["--seed", str(self.seed)]
        if self.concurrency is not None:
            argv += ["--concurrency", str(self.concurrency)]
        if self.submit_rate is not None:
            argv += ["--submit-rate", str(self.submit_rate)]
            argv += ["--submit-burst", str(self.submit_burst)]
            if not self.retry_after:
                argv.append("--no-retry-after")
        return argv


class SimProcess:
    """A running simulator subprocess: its URL and its CPU time."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url

    def cpu_seconds(self) -> float:
        """user + system CPU seconds the simulator process has used so far."""
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: `finally` blocks stop the child processes


@contextmanager
def simulator(spec: SimSpec, *, start_timeout: float = 30.0) -> Iterator[SimProcess]:
    """Start the simulator in its own process; always stop it (SIGTERM, then SIGKILL)."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    process = subprocess.Popen(spec.argv(), stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], start_timeout)
        line = process.stdout.readline() if ready else ""
        if "http://" not in line:
            raise RuntimeError(f"the simulator did not start: {line!r}")
        yield SimProcess(process, line.rsplit(" ", 1)[-1].strip())
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()


def http_json(method: str, url: str, *, timeout: float = 120.0) -> Any:
    """One admin call to the simulator, its JSON answer."""
    call = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(call, timeout=timeout) as answer:
        return json.loads(answer.read())


def reset(url: str) -> None:
    http_json("POST", f"{url}/_sim/reset")


def ledger(url: str) -> dict[str, Any]:
    return dict(http_json("GET", f"{url}/_sim/ledger"))


def run_worker(spec: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """Run one contender (_contenders.py) in a fresh process; its JSON answer."""
    argv = [sys.executable, str(HERE / "_contenders.py"), json.dumps(spec)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{spec['kind']} did not finish within {timeout} s") from exc
    if done.returncode != 0:
        raise RuntimeError(f"{spec['kind']} failed:\n{done.stderr[-3000:]}")
    if done.stderr.strip():
        print(f"[{spec['kind']} stderr] {done.stderr.strip()[-1500:]}", file=sys.stderr)
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


@dataclass
class Run:
    """One contender's run: what its process measured, the simulator's ledger and CPU."""

    name: str
    worker: dict[str, Any]
    ledger: dict[str, Any]
    sim_cpu: float
    calls: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.calls = Counter({k: int(v) for k, v in self.ledger.get("calls", {}).items()})

    @property
    def offset(self) -> float:
        """Seconds to add to this client's time.monotonic() to read the simulator clock:
        0 when the measured offset is within the round trip (one shared CLOCK_MONOTONIC)."""
        clock = self.worker["clock"]
        return 0.0 if abs(clock["offset"]) <= clock["rtt"] else float(clock["offset"])

    def per_request(self, endpoint: str | None = None) -> float:
        """API calls (of one endpoint, or all) per submitted request."""
        jobs = max(1, len(self.ledger["jobs"]))
        if endpoint is not None:
            return self.calls[endpoint] / jobs
        return sum(self.calls[e] for e in API_ENDPOINTS) / jobs

    def polls_per_request(self, model_id: str | None = None) -> float:
        """Polls per submitted request (of one model, or all): the /status and /result
        calls that looked at a request, less the one /result each finished request needs
        for its outcome. A poller that reads /result until it is done and one that reads
        /status until it is done, then /result, compare like for like."""
        jobs = [j for j in self.ledger["jobs"] if model_id is None or j["model_id"] == model_id]
        ids = {job["request_id"] for job in jobs}
        looks = sum(
            1
            for call in self.ledger["call_log"]
            if call["endpoint"] in ("status", "result") and call["subject"] in ids
        )
        finished = sum(1 for job in jobs if job["finished_at"] is not None)
        return (looks - finished) / max(1, len(jobs))

    def latencies(self, model_id: str | None = None) -> list[float]:
        """Seconds from the simulator marking each request finished to the client having its
        result, on the simulator clock (optionally for one model only)."""
        received: dict[str, float] = self.worker.get("received", {})
        out = []
        for job in self.ledger["jobs"]:
            at = received.get(job["request_id"])
            if at is None or job["finished_at"] is None:
                continue
            if model_id is None or job["model_id"] == model_id:
                out.append(at + self.offset - job["finished_at"])
        return out

    def ideal_wall(self) -> tuple[float, float]:
        """(submit span, longest run): seconds from the client's start to the last submit
        the simulator accepted, and the longest run time of any request."""
        jobs = self.ledger["jobs"]
        start = self.worker["start"] + self.offset
        submit = max(job["created_at"] for job in jobs) - start
        longest = max(
            job["finished_at"] - job["started_at"]
            for job in jobs
            if job["finished_at"] is not None and job["started_at"] is not None
        )
        return submit, longest


def run_contender(
    name: str, sim: SimSpec, spec: dict[str, Any], *, timeout: float, resets: int = 1
) -> Run:
    """Start a fresh simulator, reset it, run the contender, read the ledger, stop it.

    A fresh simulator per contender, reset once, draws from the same seeded stream for every
    contender (the i-th submit to arrive gets the same random draws) and starts with empty
    counters. A contender that resets the simulator itself after a warm-up passes `resets=0`.
    """
    print(f"... running {name}", file=sys.stderr, flush=True)
    with simulator(sim) as process:
        for _ in range(resets):
            reset(process.url)
        cpu = process.cpu_seconds()
        worker = run_worker({**spec, "url": process.url}, timeout=timeout)
        sim_cpu = process.cpu_seconds() - cpu
        book = ledger(process.url)
    dump = os.environ.get("BENCH_DUMP")  # a folder: keep the raw figures for investigation
    if dump:
        path = Path(dump) / f"{name.replace(' ', '_')}.json"
        path.write_text(json.dumps({"worker": worker, "ledger": book, "sim_cpu": sim_cpu}))
    return Run(name, worker, book, sim_cpu)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def mib(kib: float) -> float:
    return kib / 1024


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table: the first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def _calls_total(run: Run) -> int:
    return sum(run.calls[e] for e in API_ENDPOINTS)


def _ok(run: Run) -> str:
    return f"{len(run.worker['received'])}/{run.worker['errors']}"


def standard_rows(runs: Sequence[Run], requests: int) -> list[list[object]]:
    """The figures every fan-out scenario prints, one row per metric, a column per run."""
    metrics: list[tuple[str, str, Callable[[Run], object]]] = [
        ("requests ok / errors", "{}", _ok),
        ("wall (s)", "{:.2f}", lambda r: r.worker["wall"]),
        ("client CPU (s)", "{:.2f}", lambda r: r.worker["cpu"]),
        ("client CPU per request (ms)", "{:.2f}", lambda r: 1000 * r.worker["cpu"] / requests),
        (
            "client CPU per HTTP call (ms)",
            "{:.3f}",
            lambda r: 1000 * r.worker["cpu"] / max(1, _calls_total(r)),
        ),
        ("peak RSS (MiB)", "{:.1f}", lambda r: mib(r.worker["rss_peak_kb"])),
        ("RSS before the work (MiB)", "{:.1f}", lambda r: mib(r.worker["rss_before_kb"])),
        ("HTTP calls per request", "{:.2f}", lambda r: r.per_request()),
        ("  status calls per request", "{:.2f}", lambda r: r.per_request("status")),
        ("  polls per request (status + result - 1)", "{:.2f}", lambda r: r.polls_per_request()),
        ("  result calls per request", "{:.2f}", lambda r: r.per_request("result")),
        ("detection latency p50 (s)", "{:.3f}", lambda r: percentile(r.latencies(), 50)),
        ("detection latency p95 (s)", "{:.3f}", lambda r: percentile(r.latencies(), 95)),
        ("detection latency max (s)", "{:.3f}", lambda r: percentile(r.latencies(), 100)),
        ("simulator CPU (s)", "{:.2f}", lambda r: r.sim_cpu),
        ("clock offset sim-client (ms)", "{}", clock_text),
        ("submit span (s)", "{:.2f}", lambda r: r.ideal_wall()[0]),
        ("longest run (s)", "{:.2f}", lambda r: r.ideal_wall()[1]),
        ("wall / (submit span + longest run)", "{:.3f}", wall_ratio),
    ]
    return [[label, *(fmt.format(get(run)) for run in runs)] for label, fmt, get in metrics]


def wall_ratio(run: Run) -> float:
    """Wall time over its floor: the time to submit everything plus the longest run."""
    submit, longest = run.ideal_wall()
    return float(run.worker["wall"]) / (submit + longest)


def clock_text(run: Run) -> str:
    clock = run.worker["clock"]
    shared = "shared" if abs(clock["offset"]) <= clock["rtt"] else "APPLIED"
    return f"{1000 * clock['offset']:+.3f} (rtt {1000 * clock['rtt']:.3f}, {shared})"


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def command() -> str:
    """The command line that is running, to print under its figures."""
    return shlex.join([sys.executable, *sys.argv])


def header(title: str) -> None:
    print(f"{title}\n{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, {command()}\n")


def ratio_targets(
    sdk: Run,
    raw: Run,
    *,
    wall: float | None = None,
    p95: float | None = None,
    rss: float | None = None,
) -> bool:
    """Print the SDK's targets as ratios to the raw loop of the same run (submit span <= 1.1x,
    CPU per HTTP call <= 1.1x, and the optional wall / p95 (s) / peak RSS ones); all met?"""
    checks: list[tuple[str, float, float, str]] = []
    span, raw_span = sdk.ideal_wall()[0], raw.ideal_wall()[0]
    checks.append(("submit span", span / raw_span, 1.1, f"{span:.2f} s vs {raw_span:.2f} s"))
    cpu = sdk.worker["cpu"] / max(1, _calls_total(sdk))
    raw_cpu = raw.worker["cpu"] / max(1, _calls_total(raw))
    checks.append(
        ("CPU per HTTP call", cpu / raw_cpu, 1.1, f"{1e3 * cpu:.3f} ms vs {1e3 * raw_cpu:.3f} ms")
    )
    if wall is not None:
        w, rw = sdk.worker["wall"], raw.worker["wall"]
        checks.append(("wall", w / rw, wall, f"{w:.2f} s vs {rw:.2f} s"))
    if rss is not None:
        r, rr = sdk.worker["rss_peak_kb"], raw.worker["rss_peak_kb"]
        checks.append(("peak RSS", r / rr, rss, f"{mib(r):.1f} MiB vs {mib(rr):.1f} MiB"))
    print(f"targets ({sdk.name} vs {raw.name}, same run):")
    met = True
    for name, ratio, target, text in checks:
        met &= ratio <= target
        print(
            f"  {name} = {text} ({ratio:.2f}x; target <= {target:g}x): {verdict(ratio <= target)}"
        )
    if p95 is not None:
        got = percentile(sdk.latencies(), 95)
        met &= got <= p95
        print(f"  detection latency p95 = {got:.3f} s (target <= {p95:g} s): {verdict(got <= p95)}")
    return met
