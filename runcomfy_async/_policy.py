"""When to poll next: a pure interval policy and the run times it learns per model."""

from __future__ import annotations

import bisect
import math
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["PollPolicy"]


@dataclass(frozen=True)
class PollPolicy:
    """When to poll a request next. Every duration is in seconds.

    Cold (nothing learnt about the model yet): first poll `first_interval` after submit,
    then intervals grow by `growth` up to `max_dense_interval`. While queued, polls are held back
    by `seconds_per_queue_position` per request ahead (up to `max_queue_interval`).
    Once `min_samples` runs of a model have been timed, a running request is looked in on
    `max_interval` after it started (a bad input fails at once, and a request still queued
    shows when it starts), then at gaps of four times the time it has run (within
    [`max_interval`, `max_skip_interval`]), until the model's short runs finish; then
    densely (every `latency_fraction` of the middle of the learnt run times, within
    [`min_interval`, `max_dense_interval`]) until its long runs finish; then backing off
    by `backoff_per_second` per second beyond. Every interval is jittered by ±`jitter`,
    and the first poll of the window falls anywhere in its first dense interval.
    Run times remembered from an earlier process (Client `run_times`) count as learnt at
    once; until `min_samples` runs of this process confirm them, its first `probes`
    requests of the model are polled as if nothing were known, and a run outside the
    remembered window drops them, so stale knowledge costs no latency.
    """

    first_interval: float = 0.5
    growth: float = 1.5
    max_interval: float = 10.0
    min_interval: float = 0.2
    latency_fraction: float = 0.1
    max_dense_interval: float = 2.0
    backoff_per_second: float = 0.03
    seconds_per_queue_position: float = 0.5
    max_queue_interval: float = 15.0
    max_skip_interval: float = 60.0
    min_samples: int = 5
    jitter: float = 0.1
    probes: int = 5

    def __post_init__(self) -> None:
        durations = (
            "first_interval",
            "max_interval",
            "min_interval",
            "max_dense_interval",
            "backoff_per_second",
            "seconds_per_queue_position",
            "max_queue_interval",
            "max_skip_interval",
        )
        for name in durations:  # an infinite interval would leave a request unpolled
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be a finite number >= 0")
        if not 0 < self.min_interval <= self.first_interval <= self.max_interval:
            raise ValueError("need 0 < min_interval <= first_interval <= max_interval")
        if not (self.growth >= 1 and 0 < self.latency_fraction <= 1):
            raise ValueError("need growth >= 1 and 0 < latency_fraction <= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter is a fraction in [0, 1)")
        if self.max_dense_interval < self.min_interval or self.min_samples < 1:
            raise ValueError("need max_dense_interval >= min_interval and min_samples >= 1")
        if self.probes < 0:
            raise ValueError("probes must be >= 0")

    def next_interval(self, polls: int, queue_position: int | None, rng: random.Random) -> float:
        """Seconds to the next poll of a request nothing is known about, after `polls` polls.

        Until a model's run times are learnt, polls grow no sparser than
        `max_dense_interval` (2 s by default: the pace of RunComfy's own CLI).
        """
        ceiling = max(self.first_interval, self.max_dense_interval)
        try:
            grown = self.first_interval * self.growth ** min(polls, 64)
        except OverflowError:  # a huge growth: the ceiling is reached at once
            grown = ceiling
        interval = min(ceiling, grown)
        if queue_position:
            held = min(self.max_queue_interval, self.seconds_per_queue_position * queue_position)
            interval = max(interval, held)
        return self._jittered(interval, rng)

    def first_delay(self, window: RunWindow | None, rng: random.Random) -> float:
        """Seconds from submit to the first poll."""
        if window is None:
            return self._jittered(self.first_interval, rng)
        reach = min(self.max_interval + self.dense_interval(window), self.max_skip_interval)
        if window.early <= max(self.max_interval, reach):  # a look-in would be in the window
            return self._landing(max(self.first_interval, window.early), window, rng)
        return self._jittered(self.max_interval, rng)

    def dense_interval(self, window: RunWindow) -> float:
        """Seconds between polls while the model's runs usually end (before jitter).

        A fraction of the middle of the window, not of its median: while a batch runs, its
        runs finish shortest first, and their samples pull the median down (the dense pace
        with it) long before the window's bounds move.
        """
        middle = (window.early + window.late) / 2
        dense = max(self.min_interval, self.latency_fraction * middle)
        return min(self.max_dense_interval, dense)

    def running_delay(
        self, running_for: float, polls: int, window: RunWindow | None, rng: random.Random
    ) -> float:
        """Seconds to the next poll of a request that has been running `running_for` s."""
        if window is None:
            return self.next_interval(polls, None, rng)
        dense = self.dense_interval(window)
        if running_for < window.early - dense:
            # Nothing usually finishes this early: skip ahead, but look in now and then, as
            # failures can come early. The gaps grow with the time run (a failure is seen
            # within about five times the time it took), so a long model's requests cost a
            # look-in or two, not one every `max_interval`.
            skip = window.early - running_for
            grown = min(self.max_skip_interval, _LOOK_IN_GROWTH * running_for)
            gap = max(self.max_interval, grown)
            return self._landing(skip, window, rng) if skip <= gap else gap
        if running_for <= window.late:
            return self._jittered(dense, rng)
        # A long run, or a window learnt from the first (shortest) runs only: back off gently,
        # but no denser than the dense pace of a model whose runs take as long as this one
        # has run (a batch's first runs to finish are its shortest).
        beyond = running_for - window.late
        floor = min(self.max_dense_interval, self.latency_fraction * running_for)
        backing_off = max(floor, dense + self.backoff_per_second * beyond)
        return self._jittered(min(self.max_interval, backing_off), rng)

    def _landing(self, seconds: float, window: RunWindow, rng: random.Random) -> float:
        """`seconds` to the start of the window, jittered only later and by at most one
        dense interval. Polls at the window's very start find next to nothing (few runs end
        before it), so this costs no latency beyond the dense pace; and it spreads requests
        submitted together, which landing all at once would queue for the pollers."""
        spread = min(self.jitter * seconds, self.dense_interval(window))
        return max(0.0, seconds + spread * rng.random())

    def _jittered(self, seconds: float, rng: random.Random) -> float:
        return max(0.0, seconds * rng.uniform(1 - self.jitter, 1 + self.jitter))


@dataclass(frozen=True)
class RunWindow:
    """Where a model's run times fall, in seconds: early and late quantiles and the median."""

    early: float
    typical: float
    late: float


class RunTimes:
    """Run times of one model learnt online from the runs the client saw finish.

    Keeps the last `size` samples; the window is the (`low`, 0.5, `high`) quantiles widened
    by `margin` (a fraction of the median) so estimates from few samples err on the side of
    polling early. Samples inherited from an earlier process (`seed`) count until this
    process's own runs contradict them (`inherited`, `forget_inherited`).
    """

    def __init__(
        self, size: int = 256, low: float = 0.02, high: float = 0.98, margin: float = 0.1
    ) -> None:
        self._recent: deque[float] = deque(maxlen=size)
        self._sorted: list[float] = []
        self._low, self._high, self._margin = low, high, margin
        self.count = 0  # samples of this process's own runs
        self.inherited = 0  # samples seeded from an earlier process, still held

    def seed(self, samples: Iterable[float]) -> None:
        """Take run times (seconds, oldest first) learnt by an earlier process, before any
        of this one's own: they shape the window until own runs confirm or refute them."""
        if self.count:
            return  # this process has seen runs of its own: they are fresher
        self._recent.clear()
        self._sorted.clear()
        for seconds in samples:
            self._put(seconds)
        self.inherited = len(self._recent)

    def forget_inherited(self) -> None:
        """Drop the inherited samples: the model no longer runs as it did."""
        own = list(self._recent)[self.inherited :]
        self._recent.clear()
        self._sorted.clear()
        for seconds in own:
            self._put(seconds)
        self.inherited = 0

    def samples(self, at_most: int = 64) -> list[float]:
        """Up to `at_most` of the samples held (seconds, oldest first), evenly spread over
        them: runs that start together finish shortest first, so the newest alone would
        forget the short runs."""
        held = list(self._recent)
        n = len(held)
        if n <= at_most:
            return held
        return [held[round(i * (n - 1) / (at_most - 1))] for i in range(at_most)]

    def add(self, seconds: float) -> None:
        """Record one run time (seconds); negative or non-finite values are ignored."""
        if self._put(seconds):
            self.count += 1

    def _put(self, seconds: float) -> bool:
        if not (seconds >= 0 and math.isfinite(seconds)):
            return False
        if len(self._recent) == self._recent.maxlen:
            old = self._recent[0]
            del self._sorted[bisect.bisect_left(self._sorted, old)]
            self.inherited = max(0, self.inherited - 1)
        self._recent.append(seconds)
        bisect.insort(self._sorted, seconds)
        return True

    def window(self, min_samples: int) -> RunWindow | None:
        """The learnt window, or None with fewer than `min_samples` samples."""
        n = len(self._sorted)
        if n < min_samples:
            return None
        typical = self._sorted[n // 2]
        pad = self._margin * typical * _pad_share(n, min_samples)
        early = self._sorted[int(self._low * (n - 1))]
        late = self._sorted[math.ceil(self._high * (n - 1))]
        return RunWindow(early=max(0.0, early - pad), typical=typical, late=late + pad)


def _pad_share(samples: int, few: int) -> float:
    """How much of the margin pads a window estimated from `samples` run times: all of it
    from `few`, shrinking as the estimate of the quantiles firms up."""
    return min(1.0, math.sqrt(few / samples))


# Before a learnt window opens, a running request is looked in on `max_interval` after it
# started, then at gaps of this many times the time it has run.
_LOOK_IN_GROWTH = 4.0
