"""Run times kept between processes (the cache file), in virtual time: written, read,
corrupt, stale, disabled."""

from __future__ import annotations

import json
import logging
import math
import random
import statistics
from collections import Counter
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

import runcomfy_async as rc
from runcomfy_async._poll import Scheduler
from runcomfy_async._runtimes import RunTimesFile, cache_path, run_times_file
from runcomfy_async._track import Tracker, TrackSettings
from runcomfy_async._wire import CancelOutcome, Output, Result, State, Status

MODEL = "wan-ai/wan-2-2/text-to-image"


class Time:
    """A clock that moves only when the poller pool's one sleeper (its dispatcher) naps,
    after letting the polls it handed out finish (the fake API answers in a checkpoint)."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        for _ in range(8):
            await anyio.lowlevel.checkpoint()
        self.now += max(0.0, seconds)


class FakeRunComfy:
    """RunComfy's status and result in virtual time: each request runs its run time from
    submit. Counts the polls: the calls that tell a request's state (/status, and /result
    while the request is not done: the client reads it directly once it saw it running),
    so that a poll every 2 s (a /status call each, and a /result at the end) is compared
    like for like."""

    def __init__(self, time: Time) -> None:
        self.time = time
        self.ends: dict[str, float] = {}
        self.model_of: dict[str, str] = {}
        self.polls: Counter[str] = Counter()  # per model
        self.polling: set[str] = set()  # requests a poll of is in flight
        self.overlaps = 0  # polls that began while another of the same request was in flight

    def submit(self, run_time: float) -> str:
        rid = f"r{len(self.ends)}"
        self.ends[rid] = self.time.now + run_time
        return rid

    def _done(self, rid: str) -> bool:
        return self.time.now >= self.ends[rid]

    async def _answer(self, rid: str) -> None:
        self.overlaps += rid in self.polling
        self.polling.add(rid)
        try:
            await anyio.lowlevel.checkpoint()
        finally:
            self.polling.discard(rid)

    async def status(self, rid: str, /) -> Status:
        await self._answer(rid)
        self.polls[self.model_of[rid]] += 1
        return Status(rid, State.COMPLETED if self._done(rid) else State.IN_PROGRESS)

    async def result(self, rid: str, /) -> Result:
        await anyio.lowlevel.checkpoint()
        return Result(rid, State.SUCCEEDED, output=Output({"image": "https://x/y.png"}))

    async def try_result(self, rid: str, /) -> Result | None:
        await self._answer(rid)
        self.polls[self.model_of[rid]] += 1  # this poll finds it done, or not
        if not self._done(rid):
            return Result(rid, State.IN_PROGRESS)
        return await self.result(rid)

    async def cancel(self, rid: str, /) -> CancelOutcome:
        raise AssertionError("nothing is cancelled here")


async def run_batch(
    cache: RunTimesFile | None, run_times: list[float], *, seed: int = 0
) -> tuple[float, float]:
    """One new "process" (a poller pool) that starts from `cache`, runs the requests
    (submitted together) and saves what it learnt: (status calls per request, p95 latency)."""
    by_model = await run_mix(cache, [(MODEL, seconds) for seconds in run_times], seed=seed)
    calls, latencies = by_model[MODEL]
    return calls / len(run_times), statistics.quantiles(latencies, n=20)[-1]


async def run_mix(
    cache: RunTimesFile | None, jobs: list[tuple[str, float]], *, seed: int = 0
) -> dict[str, tuple[int, list[float]]]:
    """`run_batch` for requests of several models (model id, run time in seconds): per
    model, (status calls, detection latencies in seconds)."""
    time = Time()
    api = FakeRunComfy(time)
    scheduler = Scheduler(
        api,
        policy=rc.PollPolicy(),
        settings=TrackSettings(not_found_grace=15.0, cancel_grace=5.0),
        workers=50,
        clock=time.clock,
        sleep=time.sleep,
        rng=random.Random(seed),
    )
    if cache is not None:
        scheduler.seed(cache.load())
    latencies: dict[str, list[float]] = {model: [] for model, _ in jobs}

    def done(tracker: Tracker) -> None:
        assert tracker.model_id is not None
        latencies[tracker.model_id].append(time.now - api.ends[tracker.request_id])

    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        trackers = []
        for model, seconds in jobs:
            tracker = Tracker(api.submit(seconds), model_id=model, submitted_at=time.now)
            api.model_of[tracker.request_id] = model
            tracker.on_done = done
            scheduler.track(tracker)
            trackers.append(tracker)
        for tracker in trackers:
            assert isinstance(await tracker.wait(), Result)
        group.cancel_scope.cancel()
    if cache is not None:
        cache.save(scheduler.learnt())
    # a re-plan once pushed the requests being polled too: two polls of one at once
    assert api.overlaps == 0, f"{api.overlaps} polls began while one of the same was out"
    return {model: (api.polls[model], seen) for model, seen in latencies.items()}


def runs(low: float, high: float, n: int = 100, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(low, high) for _ in range(n)]


def fixed_poll(run_times: list[float], interval: float = 2.0) -> tuple[float, float]:
    """(status calls per request, p95 latency) of a poll every `interval` s from submit."""
    polls = [math.floor(t / interval) + 1 for t in run_times]
    waits = [(math.floor(t / interval) + 1) * interval - t for t in run_times]
    return statistics.fmean(polls), statistics.quantiles(waits, n=20)[-1]


async def test_a_new_process_polls_warm_from_the_cache_an_earlier_one_wrote(
    tmp_path: Path,
) -> None:
    cache = RunTimesFile(tmp_path / "run_times.json")
    images = runs(10.0, 30.0)
    cold_calls, _ = await run_batch(cache, images)
    saved = json.loads(cache.path.read_text())
    assert len(saved["models"][MODEL]["samples"]) == 64  # the newest are kept
    assert all(5.0 <= s <= 31.0 for s in saved["models"][MODEL]["samples"])

    warm_calls, warm_p95 = await run_batch(cache, runs(10.0, 30.0, seed=2), seed=1)
    fixed_calls, fixed_p95 = fixed_poll(runs(10.0, 30.0, seed=2))
    assert warm_calls <= 0.75 * cold_calls  # the polls before the shortest runs are saved
    assert warm_calls <= 0.8 * fixed_calls
    assert warm_p95 <= fixed_p95 * 1.05


IMAGES, VIDEOS = "wan-ai/wan-2-2/text-to-image", "runway/gen-4/image-to-video"


def image_and_video_mix(seed: int) -> list[tuple[str, float]]:
    """bench_realistic.py's batch: 100 images of 10-30 s and 100 videos of 45-135 s."""
    rng = random.Random(seed)
    images = [(IMAGES, rng.uniform(10.0, 30.0)) for _ in range(100)]
    return images + [(VIDEOS, rng.uniform(45.0, 135.0)) for _ in range(100)]


async def test_a_new_process_from_the_cache_polls_images_and_videos_at_0_6x_the_fixed_poll(
    tmp_path: Path,
) -> None:
    # The targets: a new process from the cache makes <= 0.6x the status calls of
    # RunComfy's fixed 2 s poll at <= 1.05x its p95 latency; without a cache, <= 1.1x.
    cold_calls = cached_calls = fixed_calls = 0.0
    cached_latencies: list[float] = []
    fixed_waits: list[float] = []
    for seed in range(4):  # over several batches: the figures of one are noisy
        cache = RunTimesFile(tmp_path / f"run_times_{seed}.json")
        earlier = image_and_video_mix(100 + seed)
        cold = await run_mix(cache, earlier, seed=seed)
        cold_calls += sum(calls for calls, _ in cold.values()) / fixed_poll_calls(earlier)
        batch = image_and_video_mix(200 + seed)
        cached = await run_mix(cache, batch, seed=seed + 50)
        cached_calls += sum(calls for calls, _ in cached.values())
        cached_latencies += [seen for _, latencies in cached.values() for seen in latencies]
        fixed_calls += fixed_poll_calls(batch)
        fixed_waits += [2.0 * (math.floor(t / 2.0) + 1) - t for _, t in batch]
    p95, fixed_p95 = (statistics.quantiles(x, n=20)[-1] for x in (cached_latencies, fixed_waits))
    assert cached_calls <= 0.6 * fixed_calls
    assert p95 <= 1.05 * fixed_p95
    assert cold_calls / 4 <= 1.1


def fixed_poll_calls(jobs: list[tuple[str, float]]) -> float:
    """Status calls of a poll every 2 s from submit for all of `jobs`."""
    return sum(math.floor(seconds / 2.0) + 1 for _, seconds in jobs)


async def test_runs_as_long_as_remembered_keep_the_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RunTimesFile(tmp_path / "run_times.json")
    cache.save({MODEL: runs(10.0, 30.0, n=64)})
    with caplog.at_level(logging.INFO, logger="runcomfy_async"):
        for seed in range(3):  # the runs found over at the window's first poll included
            await run_batch(cache, runs(10.0, 30.0, seed=10 + seed), seed=seed)
    assert not [r for r in caplog.records if "learning its run times anew" in r.getMessage()]
    assert min(cache.load()[MODEL]) >= 9.0  # nor did they teach it shorter runs


async def test_stale_run_times_are_corrected_without_costing_latency(tmp_path: Path) -> None:
    cache = RunTimesFile(tmp_path / "run_times.json")
    cache.save({MODEL: runs(10.0, 30.0, n=64)})  # learnt when the model took 10-30 s
    now = runs(2.0, 5.0, seed=3)  # ... and now it takes 2-5 s
    _calls, p95 = await run_batch(cache, now)
    _, fixed_p95 = fixed_poll(now)
    assert p95 <= fixed_p95  # the fixed 2 s poll's latency, despite the stale knowledge
    samples = cache.load()[MODEL]
    assert max(samples) < 6.0  # what was saved is what runs take now, the old is gone


async def test_runs_longer_than_remembered_are_relearnt(tmp_path: Path) -> None:
    cache = RunTimesFile(tmp_path / "run_times.json")
    cache.save({MODEL: runs(2.0, 5.0, n=64)})
    now = runs(10.0, 30.0, seed=4)
    _, p95 = await run_batch(cache, now)
    _, fixed_p95 = fixed_poll(now)
    # 0.976x on this batch (1.92 s vs 1.97), and 0.89-0.98x over scheduler seeds 0-7. The
    # 1.03x once seen on CI was not this batch's figure: the poller's schedule hung on the
    # memory addresses of its trackers (a set's order), so it moved with the tests before.
    assert p95 <= fixed_p95
    assert min(cache.load()[MODEL]) > 8.0


async def test_a_batch_is_polled_the_same_wherever_its_trackers_sit_in_memory(
    tmp_path: Path,
) -> None:
    # Virtual time and seeded jitter make a batch's polls a function of its inputs; an
    # iteration in memory-address order (a set of trackers) would let the allocator in.
    # This case relearns its run times, which re-plans the polls of every tracker.
    seen = []
    for junk in (0, 33, 1000):
        ballast = [object() for _ in range(junk)]  # moves where the trackers are allocated
        cache = RunTimesFile(tmp_path / f"run_times_{junk}.json")
        cache.save({MODEL: runs(2.0, 5.0, n=64)})
        seen.append(await run_mix(cache, [(MODEL, s) for s in runs(10.0, 30.0, seed=4)]))
        del ballast
    assert seen[1] == seen[0]
    assert seen[2] == seen[0]


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\x00\xff\xfe binary",
        b'{"format": "someone-else", "version": 1, "models": {}}',
        b'{"format": "runcomfy_async/run-times", "version": 99, "models": {}}',
        b'{"format": "runcomfy_async/run-times", "version": 1, "models": []}',
        b"[1, 2, 3]",
    ],
)
async def test_a_corrupt_or_foreign_cache_is_ignored_with_a_log_line_and_replaced(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RunTimesFile(tmp_path / "run_times.json")
    cache.path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="runcomfy_async"):
        calls, _ = await run_batch(cache, runs(10.0, 30.0))
    assert any("run times not read from" in r.getMessage() for r in caplog.records)
    cold_calls, _ = await run_batch(None, runs(10.0, 30.0))
    # Polled as a new client would (nothing was taken from it), not ~0.75x as a warm one.
    assert calls >= 0.97 * cold_calls
    assert MODEL in cache.load()  # and the file now holds what was learnt


async def test_odd_entries_in_the_cache_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "run_times.json"
    models = {
        MODEL: {"samples": [1.0, "x", -2.0, None, True, 3.0, 1e999]},
        "other/model": {"samples": "nope"},
        "third/model": [],
    }
    path.write_text(
        json.dumps({"format": "runcomfy_async/run-times", "version": 1, "models": models})
    )
    assert RunTimesFile(path).load() == {MODEL: [1.0, 3.0]}


async def test_saving_keeps_other_models_and_writes_atomically(tmp_path: Path) -> None:
    cache = RunTimesFile(tmp_path / "deep" / "run_times.json")
    cache.save({"a/model": [1.0, 2.0]})
    cache.save({"b/model": [3.0]})
    assert cache.load() == {"a/model": [1.0, 2.0], "b/model": [3.0]}
    assert sorted(p.name for p in cache.path.parent.iterdir()) == ["run_times.json"]


async def test_an_unwritable_cache_is_a_warning_not_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = RunTimesFile(blocker / "run_times.json")  # its folder is a file
    with caplog.at_level(logging.WARNING, logger="runcomfy_async"):
        cache.save({MODEL: [1.0]})
    assert any("run times not saved" in r.getMessage() for r in caplog.records)


def test_the_cache_lives_in_the_platform_cache_folder() -> None:
    home = {"HOME": "/home/u"}
    assert cache_path(home, "linux") == Path("/home/u/.cache/runcomfy_async/run_times.json")
    assert cache_path({**home, "XDG_CACHE_HOME": "/xdg"}, "linux") == Path(
        "/xdg/runcomfy_async/run_times.json"
    )
    assert cache_path({**home, "XDG_CACHE_HOME": "relative"}, "linux").is_relative_to("/home/u")
    assert cache_path(home, "darwin") == Path(
        "/home/u/Library/Caches/runcomfy_async/run_times.json"
    )
    windows = cache_path({"USERPROFILE": "C:/Users/u", "LOCALAPPDATA": "C:/Local"}, "win32")
    assert windows == Path("C:/Local/runcomfy_async/Cache/run_times.json")


def test_run_times_can_be_turned_off_or_pointed_elsewhere(tmp_path: Path) -> None:
    assert run_times_file(False, {}) is None
    assert run_times_file(True, {"RUNCOMFY_RUN_TIMES": "off"}) is None
    named = run_times_file(True, {"RUNCOMFY_RUN_TIMES": str(tmp_path / "x.json")})
    assert named is not None
    assert named.path == tmp_path / "x.json"
    mine = run_times_file(tmp_path / "mine.json", {"RUNCOMFY_RUN_TIMES": "off"})
    assert mine is not None
    assert mine.path == tmp_path / "mine.json"
    default = run_times_file(True, {"HOME": "/home/u"})
    assert default is not None
    assert default.path.name == "run_times.json"
