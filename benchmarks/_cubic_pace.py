"""The pace law issue #11.7 started from (AWS-adaptive-like CUBIC), kept verbatim as the
benchmark's baseline: `bench_ratelimit.py --law cubic` and the "cubic" rows of its table."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import anyio

from runcomfy_async._retry import Clock, Sleep


class Ticket:
    """What `AdaptiveRate.acquire` hands a call: its scope and the pace it was sent under."""

    __slots__ = ("epoch", "scope")

    def __init__(self, scope: _Pace, epoch: int) -> None:
        self.scope = scope
        self.epoch = epoch


class _Pace:
    """One scope's learnt pace (see AdaptiveRate)."""

    __slots__ = (
        "before",
        "changed_at",
        "epoch",
        "last",
        "lock",
        "move",
        "ok",
        "ok_since",
        "sent",
        "w_max",
    )

    def __init__(self) -> None:
        self.w_max: float | None = None  # None: not throttled
        self.changed_at = -math.inf
        self.epoch = 0  # bumped by every change of pace
        self.move = 0  # the last change: -1 a cut, +1 a raise
        self.before = 0.0  # admitted calls/s measured before the last change
        self.ok_since = 0  # calls admitted since the last change
        self.last = -math.inf  # when the last call was let through
        self.lock = anyio.Lock()
        self.sent: deque[float] = deque()  # when calls were let through, the last second
        self.ok: deque[float] = deque()  # when answers other than 429 came, the last second


class CubicRate:
    """The client-wide pace learnt from 429s: every call of a scope passes through it.

    Not throttled until a 429 comes. Then, as in AWS SDKs' adaptive retry mode (a CUBIC
    rate): the pace is cut to `beta` times the rate sent at, and grows back along a cubic
    curve, reaching the old rate after `recovery` seconds, then probing past it (doubling
    every `recovery / 2` seconds). A change is
    judged only by calls sent under it (429s of calls already on the wire do not cut
    again), and at least `dwell` seconds (or 8 calls) after it. A cut that cost admitted
    calls (the admitted rate fell with the pace: the refusals were not about the pace) is
    undone and the pace raised instead, while raising pays; so the pace settles at what the
    server admits, never collapsing. The pace never exceeds twice the rate calls were sent
    at in the last second (growth is not banked while idle), and throttling ends once it
    has run well past that. Calls are let through one by one, in slots; a call waiting for
    its turn sees a change of pace at once.

    Scopes are independent paces: RunComfy may limit submits apart from polls.
    """

    WINDOW = 1.0  # seconds over which send and admit rates are measured

    def __init__(
        self,
        *,
        clock: Clock,
        sleep: Sleep,
        min_rate: float = 0.5,
        beta: float = 0.85,
        recovery: float = 1.0,
        dwell: float = 0.2,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._min_rate = min_rate
        self._beta = beta
        self._recovery = recovery
        self._dwell = dwell
        self._scale = (1.0 - beta) / recovery**3
        self._paces: dict[str, _Pace] = {}

    def rate(self, scope: str) -> float | None:
        """Calls per second now allowed in `scope`; None when it is not throttled."""
        pace = self._paces.get(scope)
        return None if pace is None else self._rate(pace, self._clock())

    async def acquire(self, scope: str) -> Ticket:
        """Wait for this call's turn in `scope`'s pace; the ticket goes to `answered`."""
        pace = self._paces.get(scope)
        if pace is None:
            pace = self._paces[scope] = _Pace()
        if pace.w_max is not None or pace.lock.locked():
            async with pace.lock:  # in arrival order; the head waits for the pace
                while True:
                    now = self._clock()
                    rate = self._rate(pace, now)
                    if rate is None:
                        break
                    # The gap is measured with the pace as it is now, not as it was when
                    # the wait began: a cut or a regrowth meanwhile counts at once.
                    due = pace.last + 1.0 / rate
                    if due <= now:
                        break
                    await self._sleep(min(due - now, 0.05))
        now = self._clock()
        pace.last = now
        pace.sent.append(now)
        _forget(pace.sent, now - self.WINDOW)
        return Ticket(pace, pace.epoch)

    def answered(self, ticket: Ticket, *, rate_limited: bool, **_: Any) -> None:
        """The call holding `ticket` was answered: with a 429 (`rate_limited`) or otherwise."""
        pace, now = ticket.scope, self._clock()
        if not rate_limited:
            pace.ok.append(now)
            _forget(pace.ok, now - self.WINDOW)
            pace.ok_since += 1
            return
        if ticket.epoch != pace.epoch:
            return  # sent under an earlier pace: already answered for
        since = now - pace.changed_at
        throttled = pace.w_max is not None
        current = self._rate(pace, now) if throttled else None
        if current is None:  # the first 429: start from the rate calls went at
            current = max(self._min_rate, len(pace.sent) / self.WINDOW)
            admitted = len(pace.ok) / self.WINDOW
            move = -1
        else:
            if since < max(self._dwell, 8.0 / current):
                return  # too soon to judge the last change
            admitted = pace.ok_since / since
            if pace.move < 0 and admitted < 0.85 * pace.before:
                move = +1  # the cut cost admitted calls: these 429s are not about the pace
            elif pace.move > 0 and admitted > 1.25 * pace.before:
                move = +1  # raising paid: the server admits more
            else:
                move = -1
        new = current * (self._beta if move < 0 else 1.0 / self._beta)
        pace.w_max = max(self._min_rate, new) / self._beta  # the cubic starts at `new`
        pace.changed_at, pace.move, pace.before, pace.ok_since = now, move, admitted, 0
        pace.epoch += 1

    def _rate(self, pace: _Pace, now: float) -> float | None:
        if pace.w_max is None:
            return None
        t = now - pace.changed_at
        if t <= self._recovery:  # concave: back to the rate refused, slowing near it
            rate = pace.w_max * (1.0 + self._scale * (t - self._recovery) ** 3)
        else:  # past it, probe for more: doubling every `recovery / 2` seconds
            rate = pace.w_max * 2.0 ** (min(t - self._recovery, 60.0) * 2.0 / self._recovery)
        _forget(pace.sent, now - self.WINDOW)
        ceiling = 2.0 * len(pace.sent) / self.WINDOW
        if rate > ceiling and t > 2.0 * self._recovery:
            pace.w_max = None  # well past the pace calls go at, and no 429: stop pacing
            return None
        return max(self._min_rate, min(rate, max(ceiling, pace.w_max * self._beta)))


def _forget(times: deque[float], before: float) -> None:
    while times and times[0] < before:
        times.popleft()
